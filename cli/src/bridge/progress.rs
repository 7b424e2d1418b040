//! What the bridge has done, and the periodic progress line: entries per second, the
//! group's lag and pending count (from XINFO GROUPS), dead letters.

use std::time::{Duration, Instant};

use redis::Value;
use serde::Serialize;

/// Counters of one run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Entries the sink accepted and that were acknowledged (or are about to be).
    pub delivered: u64,
    /// Entries put in the dead-letter stream.
    pub dead_lettered: u64,
    /// Entries taken over from other consumers (XAUTOCLAIM).
    pub claimed: u64,
    /// Entries of this consumer's own pending list sent again (at start, after a reconnect).
    pub resent: u64,
    /// Entries deleted from the stream while pending: acknowledged, nothing to send.
    pub vanished: u64,
}

/// The group as XINFO GROUPS reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupInfo {
    /// Entries not yet delivered to the group (Redis 7+; unknown after some deletions).
    pub lag: Option<u64>,
    /// Entries delivered to a consumer and not acknowledged yet.
    pub pending: Option<u64>,
}

/// `group`'s line of an XINFO GROUPS reply (RESP2 flat lists or RESP3 maps).
pub fn parse_group_info(reply: &Value, group: &str) -> Option<GroupInfo> {
    let Value::Array(groups) = reply else {
        return None;
    };
    groups.iter().find_map(|g| {
        let pairs: Vec<(&Value, &Value)> = match g {
            Value::Array(flat) => flat.chunks_exact(2).map(|c| (&c[0], &c[1])).collect(),
            Value::Map(pairs) => pairs.iter().map(|(k, v)| (k, v)).collect(),
            _ => return None,
        };
        let get = |name: &str| {
            pairs
                .iter()
                .find(|(k, _)| as_text(k).as_deref() == Some(name))
                .map(|(_, v)| *v)
        };
        if get("name").and_then(as_text).as_deref() != Some(group) {
            return None;
        }
        Some(GroupInfo {
            lag: get("lag").and_then(as_u64),
            pending: get("pending").and_then(as_u64),
        })
    })
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn as_u64(v: &Value) -> Option<u64> {
    match v {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => as_text(other).and_then(|t| t.parse().ok()),
    }
}

/// When to print the next line, and the rate since the last one.
#[derive(Debug)]
pub struct Progress {
    pub counters: Counters,
    interval: Duration,
    last_at: Instant,
    delivered_at_last: u64,
}

impl Progress {
    pub fn new(interval: Duration) -> Self {
        Self {
            counters: Counters::default(),
            interval,
            last_at: Instant::now(),
            delivered_at_last: 0,
        }
    }

    pub fn due(&self) -> bool {
        self.last_at.elapsed() >= self.interval
    }

    /// Logs the progress line and starts the next interval.
    pub fn report(&mut self, group: Option<GroupInfo>) {
        let elapsed = self.last_at.elapsed().as_secs_f64().max(1e-3);
        let rate = (self.counters.delivered - self.delivered_at_last) as f64 / elapsed;
        let show = |v: Option<u64>| v.map_or_else(|| "unknown".to_string(), |v| v.to_string());
        let group = group.unwrap_or_default();
        let c = &self.counters;
        tracing::info!(
            entries_per_second = rate.round() as u64,
            delivered = c.delivered,
            lag = %show(group.lag),
            pending = %show(group.pending),
            dead_lettered = c.dead_lettered,
            claimed = c.claimed,
            "progress: {:.0} entries/s, group lag {}, pending {}, dead-lettered {}",
            rate,
            show(group.lag),
            show(group.pending),
            c.dead_lettered,
        );
        self.last_at = Instant::now();
        self.delivered_at_last = self.counters.delivered;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn the_groups_line_is_found_in_either_protocol() {
        let resp2 = Value::Array(vec![
            Value::Array(vec![bulk("name"), bulk("other"), bulk("pending"), Value::Int(9)]),
            Value::Array(vec![
                bulk("name"),
                bulk("bridge"),
                bulk("pending"),
                Value::Int(3),
                bulk("lag"),
                Value::Int(12),
            ]),
        ]);
        assert_eq!(
            parse_group_info(&resp2, "bridge"),
            Some(GroupInfo {
                lag: Some(12),
                pending: Some(3)
            })
        );
        let resp3 = Value::Array(vec![Value::Map(vec![
            (bulk("name"), bulk("bridge")),
            (bulk("pending"), Value::Int(0)),
            (bulk("lag"), Value::Nil),
        ])]);
        assert_eq!(
            parse_group_info(&resp3, "bridge"),
            Some(GroupInfo {
                lag: None,
                pending: Some(0)
            })
        );
        assert_eq!(parse_group_info(&resp3, "missing"), None);
    }
}
