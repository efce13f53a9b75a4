//! Dates on the command line: `YYYY-MM-DD` (00:00 UTC that day) or an RFC 3339 time, as Unix
//! seconds.

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::TimeZone;

/// Parses `YYYY-MM-DD` (the start of that day, UTC) or an RFC 3339 time into Unix seconds.
pub fn parse_date(text: &str) -> Result<i64, String> {
    if let Ok(timestamp) = text.parse::<Timestamp>() {
        return Ok(timestamp.as_second());
    }
    let date: Date = text.parse().map_err(|_| {
        format!("`{text}` is neither a date (YYYY-MM-DD) nor an RFC 3339 time (2027-01-31T12:00:00Z)")
    })?;
    date.to_zoned_datetime(TimeZone::UTC)
        .map(|zoned| zoned.timestamp().as_second())
        .map_err(|error| format!("`{text}`: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_is_midnight_utc_and_a_time_is_exact() {
        assert_eq!(parse_date("2027-01-01"), Ok(1_798_761_600));
        assert_eq!(parse_date("2027-01-01T01:00:00Z"), Ok(1_798_765_200));
        assert_eq!(parse_date("2027-01-01T01:00:00+01:00"), Ok(1_798_761_600));
    }

    #[test]
    fn other_text_is_refused_with_the_accepted_forms() {
        let error = parse_date("next tuesday").expect_err("refused");
        assert!(error.contains("YYYY-MM-DD"), "{error}");
        assert!(parse_date("2027-02-30").is_err());
    }
}
