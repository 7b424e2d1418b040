//! A minimal NCRONTAB parser: the six-field schedules (with seconds) of Azure Functions
//! timer triggers, e.g. `0 */5 * * * *`.
//!
//! Fields: second (0-59), minute (0-59), hour (0-23), day of month (1-31), month (1-12 or
//! JAN-DEC), day of week (0-6 with 0 = Sunday, or SUN-SAT; 7 is also Sunday). Each field
//! is `*`, a number, a range `a-b`, a step `*/n`, `a-b/n` or `a/n`, or a comma list of
//! those. As in NCrontab (which the Functions host uses), day of month and day of week
//! must *both* match; times are UTC.
//!
//! Own code rather than the `cron` crate: that crate numbers weekdays 1-7 from Sunday,
//! so `0 0 9 * * 1` would mean Sunday there and Monday in Azure.

use chrono::{DateTime, Datelike, Duration as TimeDelta, NaiveDate, TimeZone, Timelike, Utc};

/// A schedule that does not parse; names the field and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid NCRONTAB schedule {schedule:?}: {problem}")]
pub struct ScheduleError {
    pub schedule: String,
    pub problem: String,
}

/// A parsed NCRONTAB schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    text: String,
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// Value of the first name (1 for months, 0 for weekdays).
    names_from: u32,
}

const FIELDS: [Field; 6] = [
    Field {
        name: "second",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "day",
        min: 1,
        max: 31,
        names: &[],
        names_from: 0,
    },
    Field {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTHS,
        names_from: 1,
    },
    Field {
        name: "day of week",
        min: 0,
        max: 6,
        names: &WEEKDAYS,
        names_from: 0,
    },
];

impl Schedule {
    /// Parses a six-field NCRONTAB expression.
    pub fn parse(text: &str) -> Result<Self, ScheduleError> {
        let err = |problem: String| ScheduleError {
            schedule: text.to_string(),
            problem,
        };
        let parts: Vec<&str> = text.split_whitespace().collect();
        if parts.len() != 6 {
            return Err(err(format!(
                "needs 6 fields (second minute hour day month day-of-week), found {}",
                parts.len()
            )));
        }
        let mut masks = [0u64; 6];
        for (i, (part, field)) in parts.iter().zip(FIELDS.iter()).enumerate() {
            masks[i] = parse_field(part, field).map_err(|p| err(format!("{} field {part:?}: {p}", field.name)))?;
        }
        if masks[5] & (1 << 7) != 0 {
            masks[5] = (masks[5] & !(1 << 7)) | 1;
        }
        Ok(Self {
            text: parts.join(" "),
            seconds: masks[0],
            minutes: masks[1],
            hours: masks[2],
            days: masks[3],
            months: masks[4],
            weekdays: masks[5],
        })
    }

    /// The expression as parsed (whitespace normalised).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The first occurrence strictly after `after` (whole seconds), within ten years.
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let start = after.with_nanosecond(0)? + TimeDelta::seconds(1);
        let limit = start + TimeDelta::days(366 * 10);
        let mut t = start;
        while t <= limit {
            if !bit(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = midnight(NaiveDate::from_ymd_opt(y, m, 1)?);
                continue;
            }
            if !bit(self.days, t.day()) || !bit(self.weekdays, t.weekday().num_days_from_sunday()) {
                t = midnight(t.date_naive().succ_opt()?);
                continue;
            }
            if !bit(self.hours, t.hour()) {
                t = t.with_minute(0)?.with_second(0)? + TimeDelta::hours(1);
                continue;
            }
            if !bit(self.minutes, t.minute()) {
                t = t.with_second(0)? + TimeDelta::minutes(1);
                continue;
            }
            if !bit(self.seconds, t.second()) {
                t += TimeDelta::seconds(1);
                continue;
            }
            return Some(t);
        }
        None
    }

    /// Every occurrence in `[from, to]`.
    pub fn occurrences(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        let mut cursor = from - TimeDelta::seconds(1);
        std::iter::from_fn(move || {
            let next = self.next_after(cursor)?;
            if next > to {
                return None;
            }
            cursor = next;
            Some(next)
        })
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::str::FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

fn midnight(date: NaiveDate) -> DateTime<Utc> {
    Utc.from_utc_datetime(&date.and_time(chrono::NaiveTime::MIN))
}

fn bit(mask: u64, n: u32) -> bool {
    mask & (1u64 << n) != 0
}

fn parse_field(text: &str, field: &Field) -> Result<u64, String> {
    let mut mask = 0u64;
    for item in text.split(',') {
        if item.is_empty() {
            return Err("empty list item".into());
        }
        let (range, step) = match item.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s.parse().map_err(|_| format!("step {s:?} is not a number"))?;
                if step == 0 {
                    return Err("step must be at least 1".into());
                }
                (r, Some(step))
            }
            None => (item, None),
        };
        let (lo, hi) = if range == "*" {
            (field.min, field.max)
        } else if let Some((a, b)) = range.split_once('-') {
            (value(a, field)?, value(b, field)?)
        } else {
            let v = value(range, field)?;
            // `a/n` means from a to the end of the field, every n.
            (v, if step.is_some() { field.max } else { v })
        };
        if lo > hi {
            return Err(format!("range {lo}-{hi} is backwards"));
        }
        let step = step.unwrap_or(1);
        let mut v = lo;
        while v <= hi {
            mask |= 1u64 << v;
            v += step;
        }
    }
    Ok(mask)
}

fn value(text: &str, field: &Field) -> Result<u32, String> {
    if let Some(i) = field.names.iter().position(|n| n.eq_ignore_ascii_case(text)) {
        return Ok(i as u32 + field.names_from);
    }
    let v: u32 = text.parse().map_err(|_| format!("{text:?} is not a number"))?;
    // 7 is another name for Sunday (folded into 0 after parsing).
    let max = if field.names == WEEKDAYS { 7 } else { field.max };
    if v < field.min || v > max {
        return Err(format!("{v} is outside {}-{max}", field.min));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn every_five_minutes() {
        let s = Schedule::parse("0 */5 * * * *").unwrap();
        assert_eq!(s.next_after(t("2025-01-15T10:32:53Z")), Some(t("2025-01-15T10:35:00Z")));
        assert_eq!(s.next_after(t("2025-01-15T10:35:00Z")), Some(t("2025-01-15T10:40:00Z")));
        assert_eq!(s.next_after(t("2025-01-15T23:59:59Z")), Some(t("2025-01-16T00:00:00Z")));
        let n = s
            .occurrences(t("2025-01-15T10:00:00Z"), t("2025-01-15T11:00:00Z"))
            .count();
        assert_eq!(n, 13, "both ends included");
    }

    #[test]
    fn lists_ranges_names_and_weekdays() {
        // 09:30 on weekdays (Monday-Friday), Sunday = 0 as in NCRONTAB.
        let s = Schedule::parse("0 30 9 * * 1-5").unwrap();
        // 2025-01-18 is a Saturday.
        assert_eq!(s.next_after(t("2025-01-17T10:00:00Z")), Some(t("2025-01-20T09:30:00Z")));
        let s = Schedule::parse("0 30 9 * Jan Mon").unwrap();
        assert_eq!(s.next_after(t("2025-01-01T00:00:00Z")), Some(t("2025-01-06T09:30:00Z")));
        let s = Schedule::parse("15,45 0 0 1 * *").unwrap();
        assert_eq!(s.next_after(t("2025-01-01T00:00:15Z")), Some(t("2025-01-01T00:00:45Z")));
        assert_eq!(s.next_after(t("2025-01-01T00:00:45Z")), Some(t("2025-02-01T00:00:15Z")));
        let s = Schedule::parse("0 0 0 * * 7").unwrap();
        assert_eq!(s.next_after(t("2025-01-15T00:00:00Z")), Some(t("2025-01-19T00:00:00Z")));
        let s = Schedule::parse("10/20 0 12 * * *").unwrap();
        assert_eq!(
            s.occurrences(t("2025-01-15T12:00:00Z"), t("2025-01-15T12:01:00Z"))
                .count(),
            3
        );
    }

    #[test]
    fn bad_schedules_name_the_field() {
        for (bad, needle) in [
            ("0 */5 * * *", "6 fields"),
            ("0 61 * * * *", "minute"),
            ("0 */0 * * * *", "step"),
            ("0 5-1 * * * *", "backwards"),
            ("0 0 0 0 * *", "day"),
            ("x * * * * *", "second"),
            ("0 0 0 * FOO *", "month"),
        ] {
            let e = Schedule::parse(bad).unwrap_err();
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }

    #[test]
    fn impossible_dates_end() {
        let s = Schedule::parse("0 0 0 31 2 *").unwrap();
        assert_eq!(s.next_after(t("2025-01-01T00:00:00Z")), None);
    }
}
