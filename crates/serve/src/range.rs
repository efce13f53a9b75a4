//! `Range` requests on blobs (RFC 9110): a single `bytes=` range is served as 206; several
//! ranges, or a header that does not parse, get the whole blob (200), as the RFC allows; a
//! range that starts past the end is 416.

/// What to send of a blob of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum RangeAnswer {
    /// All of it (200).
    Whole,
    /// `start..=end` (206).
    Part {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
    /// Nothing of it can be sent (416).
    Unsatisfiable,
}

/// Answers a `Range` header value for a blob of `size` bytes.
pub(crate) fn answer(header: Option<&str>, size: u64) -> RangeAnswer {
    let Some(spec) = header.and_then(|header| header.trim().strip_prefix("bytes=")) else {
        return RangeAnswer::Whole;
    };
    if spec.contains(',') {
        return RangeAnswer::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else {
        return RangeAnswer::Whole;
    };
    let number = |text: &str| text.trim().parse::<u64>().ok();
    if first.trim().is_empty() {
        // `bytes=-N`: the last N bytes.
        return match number(last) {
            Some(0) => RangeAnswer::Unsatisfiable,
            Some(_) if size == 0 => RangeAnswer::Unsatisfiable,
            Some(suffix) => RangeAnswer::Part {
                start: size.saturating_sub(suffix),
                end: size - 1,
            },
            None => RangeAnswer::Whole,
        };
    }
    let Some(start) = number(first) else {
        return RangeAnswer::Whole;
    };
    if start >= size {
        return RangeAnswer::Unsatisfiable;
    }
    let end = if last.trim().is_empty() {
        size - 1
    } else {
        match number(last) {
            Some(last) if last >= start => last.min(size - 1),
            _ => return RangeAnswer::Whole,
        }
    };
    RangeAnswer::Part { start, end }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_ranges_are_served_in_part_and_the_rest_whole() {
        let part = |start, end| RangeAnswer::Part { start, end };
        assert_eq!(answer(None, 10), RangeAnswer::Whole);
        assert_eq!(answer(Some("bytes=0-4"), 10), part(0, 4));
        assert_eq!(answer(Some("bytes=5-"), 10), part(5, 9));
        assert_eq!(answer(Some("bytes=5-100"), 10), part(5, 9));
        assert_eq!(answer(Some("bytes=-3"), 10), part(7, 9));
        assert_eq!(answer(Some("bytes=-30"), 10), part(0, 9));
        assert_eq!(answer(Some("bytes=10-"), 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=-0"), 10), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-0"), 0), RangeAnswer::Unsatisfiable);
        assert_eq!(answer(Some("bytes=0-1,4-5"), 10), RangeAnswer::Whole);
        assert_eq!(answer(Some("bytes=5-2"), 10), RangeAnswer::Whole);
        assert_eq!(answer(Some("bytes=x-2"), 10), RangeAnswer::Whole);
        assert_eq!(answer(Some("bytes=1-x"), 10), RangeAnswer::Whole);
        assert_eq!(answer(Some("items=0-4"), 10), RangeAnswer::Whole);
    }
}
