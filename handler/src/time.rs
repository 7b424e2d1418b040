//! The lake's times: how records, receipts and manifests write them, how they are read
//! back, how a time becomes its hour, and how an hour is shown to people.
//!
//! A leaf module: ingest, seal and the operator tools all use these, so that an hour
//! written by one is the hour read by the others.

use chrono::{DateTime, Datelike, DurationRound, SecondsFormat, TimeDelta, Timelike, Utc};

/// RFC 3339 UTC with milliseconds (`2025-01-15T10:32:53.120Z`), the format of every
/// time the handler writes: record fields, receipts, manifests.
pub fn format_time(t: DateTime<Utc>) -> String {
    let nanos = t.nanosecond();
    // Every record writes one or two times: chrono's general formatter (format items
    // parsed at run time) was ~2 % of the handler's CPU. Four-digit years without a
    // leap second take the direct path; anything else keeps chrono's spelling.
    let Ok(year) = u32::try_from(t.year()) else {
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    };
    if year > 9999 || nanos >= 1_000_000_000 {
        return t.to_rfc3339_opts(SecondsFormat::Millis, true);
    }
    let mut out = [0u8; 24];
    let fields = [
        (0, 4, year),
        (5, 2, t.month()),
        (8, 2, t.day()),
        (11, 2, t.hour()),
        (14, 2, t.minute()),
        (17, 2, t.second()),
        (20, 3, nanos / 1_000_000),
    ];
    for (at, width, mut value) in fields {
        for slot in out[at..at + width].iter_mut().rev() {
            *slot = b'0' + (value % 10) as u8;
            value /= 10;
        }
    }
    for (at, sep) in [
        (4, b'-'),
        (7, b'-'),
        (10, b'T'),
        (13, b':'),
        (16, b':'),
        (19, b'.'),
        (23, b'Z'),
    ] {
        out[at] = sep;
    }
    out.iter().map(|&b| char::from(b)).collect()
}

/// An RFC 3339 time with any offset, as UTC; `None` when `text` is not one.
pub fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text).ok().map(|t| t.with_timezone(&Utc))
}

/// The start of the hour holding `t`: the hour folder an event lands in.
pub fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    // Truncating to an hour cannot fail for times chrono can represent.
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// An hour as people read and type it, `YYYY-MM-DDTHH` (UTC), in logs, seal warnings
/// and the operator tools' tables and flags.
pub fn format_hour(hour: DateTime<Utc>) -> String {
    hour.format("%Y-%m-%dT%H").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn written_times_read_back_to_the_same_millisecond() {
        let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 32, 53).unwrap() + TimeDelta::milliseconds(120);
        assert_eq!(format_time(t), "2025-01-15T10:32:53.120Z");
        assert_eq!(parse_time(&format_time(t)), Some(t));
    }

    proptest::proptest! {
        #[test]
        fn written_times_are_spelled_as_chrono_spells_them(secs in -80_000_000_000i64..300_000_000_000, nanos in 0u32..2_000_000_000) {
            if let Some(t) = DateTime::from_timestamp(secs, nanos) {
                proptest::prop_assert_eq!(format_time(t), t.to_rfc3339_opts(SecondsFormat::Millis, true));
            }
        }
    }

    #[test]
    fn offsets_are_read_as_utc_and_non_times_are_refused() {
        let t = parse_time("2025-01-15T12:00:00+02:00").unwrap();
        assert_eq!(t, Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap());
        assert_eq!(parse_time("2025-01-15T10"), None);
        assert_eq!(parse_time(""), None);
    }

    #[test]
    fn an_hour_starts_at_minute_zero_and_keeps_its_last_instant() {
        let start = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
        assert_eq!(hour_of(start), start);
        let last = start + TimeDelta::hours(1) - TimeDelta::nanoseconds(1);
        assert_eq!(hour_of(last), start);
        assert_eq!(hour_of(start + TimeDelta::hours(1)), start + TimeDelta::hours(1));
        assert_eq!(format_hour(start), "2025-01-15T10");
    }
}
