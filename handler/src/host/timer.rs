//! Timer trigger requests.

use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::invocation::{unwrap_json, Invocation, RequestError};

/// What the seal function needs to know about a timer invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TimerInfo {
    pub is_past_due: bool,
    /// The previous run (absent with `useMonitor: false` or on the first run ever).
    pub last: Option<DateTime<Utc>>,
    /// This occurrence, as scheduled.
    pub next: Option<DateTime<Utc>>,
}

#[derive(Deserialize)]
struct Wire {
    #[serde(rename = "IsPastDue", alias = "isPastDue", default)]
    is_past_due: bool,
    #[serde(rename = "ScheduleStatus", alias = "scheduleStatus", default)]
    status: Option<StatusWire>,
}

#[derive(Deserialize)]
struct StatusWire {
    #[serde(rename = "Last", alias = "last")]
    last: Option<String>,
    #[serde(rename = "Next", alias = "next")]
    next: Option<String>,
}

impl TimerInfo {
    /// Decodes a timer invocation; the binding name is whatever holds the timer object.
    pub fn from_invocation(inv: &Invocation<'_>) -> Result<Self, RequestError> {
        let raw = inv
            .data
            .values()
            .find(|v| {
                let t = v.get();
                t.starts_with('{') || t.starts_with('"')
            })
            .ok_or_else(|| RequestError::new("Data has no timer object (expected Data.<binding>.IsPastDue …)"))?;
        let wire: Wire =
            unwrap_json(raw.get()).map_err(|e| RequestError::new(format!("Data holds no TimerInfo object: {e}")))?;
        let time = |s: Option<String>| {
            s.as_deref()
                .and_then(super::eventhub::parse_host_time)
                // The first run ever reports 0001-01-01: that is "never".
                .filter(|t| t.timestamp() > 0)
        };
        let (last, next) = match wire.status {
            Some(s) => (time(s.last), time(s.next)),
            None => (None, None),
        };
        Ok(Self {
            is_past_due: wire.is_past_due,
            last,
            next,
        })
    }
}
