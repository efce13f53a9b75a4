//! Times in licenses: Unix seconds (JWT "NumericDate"), shown to people as RFC 3339 in UTC.

use std::time::{SystemTime, UNIX_EPOCH};

/// The earliest time a license may name: the Unix epoch.
pub const EARLIEST_LICENSE_TIME: i64 = 0;

/// The latest time a license may name: 9998-12-31T23:59:59Z, so that every time it names can be
/// shown (the calendar library stops just short of year 10000).
pub const LATEST_LICENSE_TIME: i64 = 253_370_764_799;

/// Shows Unix seconds as an RFC 3339 UTC time (`2027-01-31T00:00:00Z`), or as `unix time N` for
/// a number outside the calendar's range.
pub fn format_unix_time(seconds: i64) -> String {
    match jiff::Timestamp::from_second(seconds) {
        Ok(timestamp) => timestamp.to_string(),
        Err(_) => format!("unix time {seconds}"),
    }
}

/// A [`SystemTime`] as Unix seconds (negative before 1970, saturating far outside i64).
pub fn unix_seconds(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |seconds| -seconds),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn times_show_as_rfc3339_utc_and_out_of_range_ones_as_numbers() {
        assert_eq!(format_unix_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_unix_time(LATEST_LICENSE_TIME), "9998-12-31T23:59:59Z");
        assert_eq!(format_unix_time(i64::MAX), format!("unix time {}", i64::MAX));
    }

    #[test]
    fn system_times_convert_on_both_sides_of_the_epoch() {
        assert_eq!(unix_seconds(UNIX_EPOCH + Duration::from_secs(90)), 90);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_secs(90)), -90);
    }
}
