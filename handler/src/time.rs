//! The lake's times: how records, receipts and manifests write them, how they are read
//! back, how a time becomes its hour, and how an hour is shown to people.
//!
//! A leaf module: ingest, seal and the operator tools all use these, so that an hour
//! written by one is the hour read by the others.

use chrono::{DateTime, DurationRound, SecondsFormat, TimeDelta, Utc};

/// RFC 3339 UTC with milliseconds (`2025-01-15T10:32:53.120Z`), the format of every
/// time the handler writes: record fields, receipts, manifests.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
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
