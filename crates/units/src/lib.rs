//! Durations and byte sizes as people write them in flags and environment variables (`90s`,
//! `10m`, `500ms`; `4700M`, `4Gi`, `1MiB`): one parser each, for the installer's flags and the
//! platform's settings alike, each with an error that says what it expected.

use std::time::Duration;

/// The longest duration [`parse_duration`] accepts: a year, far beyond any wait, probe or idle
/// timeout (and far from overflowing a deadline computed from it).
pub const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 3600);

/// Parses `500ms`, `90s`, `10m`, `2h` or a bare number of seconds (surrounding spaces ignored),
/// up to [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 90s, 10m or 1h"))?;
    let duration = match unit {
        "ms" => Some(Duration::from_millis(value)),
        "" | "s" => Some(Duration::from_secs(value)),
        "m" => value.checked_mul(60).map(Duration::from_secs),
        "h" => value.checked_mul(3600).map(Duration::from_secs),
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    duration
        .filter(|duration| *duration <= MAX_DURATION)
        .ok_or_else(|| format!("{text:?} is too long: at most {}h", MAX_DURATION.as_secs() / 3600))
}

/// [`parse_duration`] for a timeout or a period: zero is refused.
pub fn parse_nonzero_duration(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!("{text:?}: must be more than zero")),
        duration => Ok(duration),
    }
}

/// Parses a size in bytes: a whole number, optionally with a unit (surrounding spaces
/// ignored). `K`, `M`, `G`, `T` (or `KB`, ...) are powers of 1000, as media are labelled (a
/// 4.7 GB DVD: `4700M`); `Ki`, `Mi`, `Gi`, `Ti` (or `KiB`, ...) powers of 1024 (FAT32's largest
/// file is `4Gi` less a byte; memory is `384Mi`).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let (number, unit) = split_number(text);
    let value: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a size like 4700M, 4Gi or 1048576"))?;
    if unit.starts_with(['.', ',']) {
        return Err(format!(
            "{text:?}: sizes are whole numbers; use a smaller unit (4700M, not 4.7G)"
        ));
    }
    let unit = unit.strip_suffix(['B', 'b']).unwrap_or(unit).to_ascii_uppercase();
    let (unit, base) = match unit.strip_suffix('I') {
        Some(binary) => (binary, 1024u64),
        None => (unit.as_str(), 1000),
    };
    let exponent = match unit {
        "" => 0,
        "K" => 1,
        "M" => 2,
        "G" => 3,
        "T" => 4,
        _ => {
            return Err(format!(
                "{text:?}: the unit must be K, M, G, T (powers of 1000) or Ki, Mi, Gi, Ti (powers of 1024)"
            ));
        }
    };
    value
        .checked_mul(base.pow(exponent))
        .ok_or_else(|| format!("{text:?} is too large"))
}

/// [`parse_size`] for a size held in memory (`usize`).
pub fn parse_memory_size(text: &str) -> Result<usize, String> {
    let bytes = parse_size(text)?;
    usize::try_from(bytes).map_err(|_| format!("{text:?} is more than this machine can address"))
}

/// The leading digits of `text` and the rest.
fn split_number(text: &str) -> (&str, &str) {
    text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_ms_s_m_h_or_seconds_up_to_a_year() {
        for (text, expected) in [
            ("250ms", Duration::from_millis(250)),
            ("45", Duration::from_secs(45)),
            (" 90s ", Duration::from_secs(90)),
            ("10m", Duration::from_secs(600)),
            ("2h", Duration::from_secs(7200)),
            ("8784h", MAX_DURATION),
        ] {
            assert_eq!(parse_duration(text), Ok(expected), "{text}");
        }
        for bad in ["", "h", "1d", "-1s", "1.5h", "8785h", "99999999999999999999h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        for huge in [
            "18446744073709551615h",
            "5124095576030432h",
            "9999999999m",
            "99999999999s",
        ] {
            let error = parse_duration(huge).expect_err(huge);
            assert!(error.contains("too long"), "{error}");
        }
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        for (text, expected) in [
            ("1048576", 1 << 20),
            ("4700M", 4_700_000_000),
            ("4700MB", 4_700_000_000),
            ("650m", 650_000_000),
            ("2K", 2000),
            ("2Ki", 2048),
            ("4Gi", 4 << 30),
            ("4GiB", 4 << 30),
            ("1Mi", 1 << 20),
            ("256ki", 256 << 10),
            ("1T", 1_000_000_000_000),
            (" 2Ti ", 2 << 40),
        ] {
            assert_eq!(parse_size(text), Ok(expected), "{text}");
        }
        for bad in [
            "",
            "M",
            "4.7G",
            "1X",
            "4Gii",
            "-1",
            "99999999999999999999",
            "99999999999T",
        ] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_memory_size("384Mi"), Ok(384 << 20));
    }

    #[test]
    fn a_timeout_of_zero_is_refused() {
        assert_eq!(parse_nonzero_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_nonzero_duration("0s").is_err());
        assert!(parse_nonzero_duration("0ms").is_err());
    }
}
