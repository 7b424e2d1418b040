//! Hour ranges for `--from` / `--to`.
//!
//! The lake is partitioned by hour, so every range is a set of whole hours (UTC):
//!
//! * `--from T`: the first hour is the one that contains `T`.
//! * `--to T`: `YYYY-MM-DD` means through the end of that day, `YYYY-MM-DDTHH` through
//!   the end of that hour, and an instant (RFC 3339, `now`, `now-3h`) means up to that
//!   instant: the hour containing it is included unless the instant is exactly on the
//!   hour (`--to 2025-01-16T00:00:00Z` ends with hour 23 of the 15th).
//!
//! Accepted forms: `2025-01-15`, `2025-01-15T10` (also `2025-01-15 10`, a trailing `Z`
//! is allowed), RFC 3339 (`2025-01-15T10:30:00Z`, `2025-01-15T12:30:00+02:00`), `now`
//! and `now-<N>h` / `now-<N>d`.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeDelta, Utc};

/// The hour truncation and the `YYYY-MM-DDTHH` display are the handler's own, so an
/// hour the operator tools print or select is the hour folder the handler wrote.
pub use hub2lake::time::{format_hour, hour_of};

/// A `--from`/`--to` value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {flag} {value:?}: {problem}")]
pub struct RangeError {
    pub flag: &'static str,
    pub value: String,
    pub problem: String,
}

/// The forms `--from`/`--to` accept, for error messages and `--help`.
pub const ACCEPTED_FORMS: &str = "expected YYYY-MM-DD, YYYY-MM-DDTHH, an RFC 3339 time \
     (2025-01-15T10:30:00Z), now, or now-<N>h / now-<N>d (UTC)";

/// An inclusive range of hours; `None` ends are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HourRange {
    /// Start of the first hour.
    pub first: Option<DateTime<Utc>>,
    /// Start of the last hour.
    pub last: Option<DateTime<Utc>>,
}

/// How precise a parsed time is: decides what `--to` includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Precision {
    Day,
    Hour,
    Instant,
}

impl HourRange {
    /// Every hour.
    pub fn all() -> Self {
        Self::default()
    }

    /// Parses `--from` and `--to` as of `now` (for the `now` forms).
    pub fn parse(from: Option<&str>, to: Option<&str>, now: DateTime<Utc>) -> Result<Self, RangeError> {
        let first = from
            .map(|raw| parse_time("--from", raw, now).map(|(t, _)| hour_of(t)))
            .transpose()?;
        let last = to.map(|raw| parse_to(raw, now)).transpose()?;
        if let (Some(f), Some(l)) = (first, last) {
            if f > l {
                return Err(RangeError {
                    flag: "--to",
                    value: to.unwrap_or_default().to_string(),
                    problem: format!(
                        "the range is empty: --from starts at hour {} and --to ends before it (last hour {})",
                        format_hour(f),
                        format_hour(l)
                    ),
                });
            }
        }
        Ok(Self { first, last })
    }

    /// A range of the hours from `first` through `last` (both hour starts or any time in them).
    pub fn hours(first: DateTime<Utc>, last: DateTime<Utc>) -> Self {
        Self {
            first: Some(hour_of(first)),
            last: Some(hour_of(last)),
        }
    }

    /// Whether the hour starting at (or containing) `hour` is in the range.
    pub fn contains(&self, hour: DateTime<Utc>) -> bool {
        let hour = hour_of(hour);
        self.first.is_none_or(|f| hour >= f) && self.last.is_none_or(|l| hour <= l)
    }

    /// Whether the range has no ends.
    pub fn is_all(&self) -> bool {
        self.first.is_none() && self.last.is_none()
    }
}

impl std::fmt::Display for HourRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let end = |t: Option<DateTime<Utc>>| t.map(format_hour).unwrap_or_else(|| "…".into());
        if self.is_all() {
            f.write_str("all hours")
        } else {
            write!(f, "hours {} .. {} (UTC)", end(self.first), end(self.last))
        }
    }
}

fn parse_to(raw: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, RangeError> {
    let (t, precision) = parse_time("--to", raw, now)?;
    let last = match precision {
        Precision::Day => t + TimeDelta::hours(23),
        Precision::Hour => t,
        Precision::Instant if hour_of(t) == t => t - TimeDelta::hours(1),
        Precision::Instant => hour_of(t),
    };
    Ok(last)
}

fn parse_time(flag: &'static str, raw: &str, now: DateTime<Utc>) -> Result<(DateTime<Utc>, Precision), RangeError> {
    let err = |problem: String| RangeError {
        flag,
        value: raw.to_string(),
        problem,
    };
    let s = raw.trim();
    if s.is_empty() {
        return Err(err(format!("empty; {ACCEPTED_FORMS}")));
    }
    if let Some(rest) = s.strip_prefix("now") {
        return parse_relative(rest, now).map(|t| (t, Precision::Instant)).map_err(err);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok((t.with_timezone(&Utc), Precision::Instant));
    }
    let bare = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    if let Ok(day) = NaiveDate::parse_from_str(bare, "%Y-%m-%d") {
        return Ok((day.and_time(NaiveTime::MIN).and_utc(), Precision::Day));
    }
    for format in ["%Y-%m-%dT%H", "%Y-%m-%d %H"] {
        if let Some(t) = parse_hour(bare, format) {
            return Ok((t, Precision::Hour));
        }
    }
    if NaiveDateTime::parse_from_str(bare, "%Y-%m-%dT%H:%M:%S").is_ok()
        || NaiveDateTime::parse_from_str(bare, "%Y-%m-%dT%H:%M").is_ok()
    {
        return Err(err(format!(
            "a time with minutes needs a zone (add Z for UTC, e.g. {bare}Z… as RFC 3339); {ACCEPTED_FORMS}"
        )));
    }
    Err(err(ACCEPTED_FORMS.to_string()))
}

/// `YYYY-MM-DDTHH` with a two-digit hour 00-23.
fn parse_hour(s: &str, format: &str) -> Option<DateTime<Utc>> {
    let (day, hour) = s.split_at_checked(10)?;
    let sep = if format.contains('T') { 'T' } else { ' ' };
    let hour = hour.strip_prefix(sep)?;
    if hour.len() != 2 || !hour.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let h: u32 = hour.parse().ok()?;
    let day = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    Some(day.and_time(NaiveTime::from_hms_opt(h, 0, 0)?).and_utc())
}

/// `""`, `-3h`, `-2d` after `now`.
fn parse_relative(rest: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if rest.is_empty() {
        return Ok(now);
    }
    let bad = || format!("relative times look like now, now-3h or now-2d; {ACCEPTED_FORMS}");
    let amount = rest.strip_prefix('-').ok_or_else(bad)?;
    let (digits, unit) = amount
        .split_at_checked(amount.len().saturating_sub(1))
        .ok_or_else(bad)?;
    let n: i64 = digits.parse().map_err(|_| bad())?;
    let delta = match unit {
        "h" | "H" => TimeDelta::try_hours(n),
        "d" | "D" => TimeDelta::try_days(n),
        _ => None,
    }
    .ok_or_else(bad)?;
    now.checked_sub_signed(delta)
        .ok_or_else(|| format!("{rest} reaches before the earliest representable time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use proptest::prelude::*;

    fn at(y: i32, m: u32, d: u32, h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).unwrap()
    }

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, 10, 42, 7).unwrap()
    }

    fn range(from: Option<&str>, to: Option<&str>) -> Result<HourRange, RangeError> {
        HourRange::parse(from, to, now())
    }

    #[test]
    fn days_and_hours_are_inclusive() {
        let r = range(Some("2025-01-15"), Some("2025-01-15")).unwrap();
        assert_eq!(r, HourRange::hours(at(2025, 1, 15, 0), at(2025, 1, 15, 23)));
        let r = range(Some("2025-01-15T10"), Some("2025-01-15T12")).unwrap();
        assert_eq!(r, HourRange::hours(at(2025, 1, 15, 10), at(2025, 1, 15, 12)));
        let r = range(Some("2025-01-15 10"), Some("2025-01-15T12Z")).unwrap();
        assert_eq!(r, HourRange::hours(at(2025, 1, 15, 10), at(2025, 1, 15, 12)));
        assert!(r.contains(at(2025, 1, 15, 12) + TimeDelta::minutes(59)));
        assert!(!r.contains(at(2025, 1, 15, 13)));
        assert!(!r.contains(at(2025, 1, 15, 9)));
    }

    #[test]
    fn instants_end_before_an_exact_hour() {
        let r = range(Some("2025-01-15T10:30:00Z"), Some("2025-01-16T00:00:00Z")).unwrap();
        assert_eq!(r, HourRange::hours(at(2025, 1, 15, 10), at(2025, 1, 15, 23)));
        let r = range(None, Some("2025-01-15T13:00:01+02:00")).unwrap();
        assert_eq!(r.last, Some(at(2025, 1, 15, 11)));
        assert_eq!(r.first, None);
    }

    #[test]
    fn relative_times_count_from_now() {
        let r = range(Some("now-3h"), Some("now")).unwrap();
        assert_eq!(r, HourRange::hours(at(2025, 1, 15, 7), at(2025, 1, 15, 10)));
        let r = range(Some("now-2d"), None).unwrap();
        assert_eq!(r.first, Some(at(2025, 1, 13, 10)));
    }

    #[test]
    fn bad_values_say_what_is_accepted() {
        for (from, to) in [
            (Some("yesterday"), None),
            (Some("2025-13-01"), None),
            (Some("2025-01-15T24"), None),
            (Some("2025-01-15T1"), None),
            (None, Some("now+3h")),
            (None, Some("now-h")),
            (None, Some("now-3w")),
            (Some(""), None),
            (Some("2025-01-15T10:30"), None),
        ] {
            let e = range(from, to).unwrap_err();
            assert!(e.to_string().contains("expected YYYY-MM-DD"), "{e}");
            assert_eq!(e.flag, if from.is_some() { "--from" } else { "--to" });
        }
        let e = range(Some("2025-01-15T10:30"), None).unwrap_err();
        assert!(e.problem.contains("needs a zone"), "{e}");
    }

    #[test]
    fn an_empty_range_is_refused() {
        let e = range(Some("2025-01-16"), Some("2025-01-15")).unwrap_err();
        assert!(e.problem.contains("empty"), "{e}");
        let e = range(Some("2025-01-15T10:00:00Z"), Some("2025-01-15T10:00:00Z")).unwrap_err();
        assert!(e.problem.contains("empty"), "{e}");
    }

    #[test]
    fn display_names_the_hours() {
        assert_eq!(HourRange::all().to_string(), "all hours");
        let r = range(Some("2025-01-15T10"), None).unwrap();
        assert_eq!(r.to_string(), "hours 2025-01-15T10 .. … (UTC)");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(from in ".{0,40}", to in ".{0,40}") {
            let _ = HourRange::parse(Some(&from), Some(&to), now());
        }

        #[test]
        fn an_hour_round_trips(secs in 0i64..4_000_000_000) {
            let t = hour_of(Utc.timestamp_opt(secs, 0).unwrap());
            let s = format_hour(t);
            let r = HourRange::parse(Some(&s), Some(&s), now()).unwrap();
            prop_assert_eq!(r, HourRange::hours(t, t));
        }
    }
}
