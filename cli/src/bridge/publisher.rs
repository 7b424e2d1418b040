//! `hub2lake bridge publish`: test data for the bridge. The simulator's MongoDB change
//! events go into a stream as entries with two fields, `data` (the event's JSON) and
//! `key` (its document key), so `bridge --body-field data --partition-key-field key`
//! turns them back into the events the handler expects.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde::Serialize;

use super::link::{is_transient, Request};
use super::{BridgeError, RedisLink};
use crate::simulator::{ChangeStreamConfig, EventSource, Hub};

/// The field holding the event's JSON.
pub const DATA_FIELD: &str = "data";
/// The field holding the document key (the partition key in the hub).
pub const KEY_FIELD: &str = "key";

/// Entries per pipelined round trip.
const CHUNK: u64 = 500;

/// What to publish.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishOptions {
    pub stream: String,
    pub count: u64,
    /// Entries per second; `None`: as fast as Redis takes them.
    pub rate: Option<f64>,
    /// Approximate size of one event's JSON in bytes.
    pub event_size: usize,
    /// The same seed gives the same events.
    pub seed: u64,
}

/// What was published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PublishReport {
    pub stream: String,
    pub entries: u64,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
    pub seconds: f64,
}

/// The document key of a change event: its `documentKey._id` (the hex of an ObjectId,
/// else the JSON text). Events about no document (drop, rename, invalidate) have none.
pub fn document_key(body: &[u8]) -> Option<String> {
    let event: serde_json::Value = serde_json::from_slice(body).ok()?;
    let id = event.get("documentKey")?.get("_id")?;
    Some(match id.get("$oid").and_then(|o| o.as_str()) {
        Some(hex) => hex.to_string(),
        None => id.to_string(),
    })
}

/// Appends `options.count` change events to the stream (XADD, pipelined), paced to
/// `options.rate` when given.
pub async fn publish(link: &mut RedisLink, options: &PublishOptions) -> Result<PublishReport, BridgeError> {
    let hub = Hub::new(
        EventSource::ChangeStream(ChangeStreamConfig {
            events: options.count,
            event_size: options.event_size,
            seed: options.seed,
        }),
        1,
        0,
        Utc::now(),
        Duration::from_secs(3600),
    );
    let started = Instant::now();
    let chunk = match options.rate {
        // Small chunks at low rates keep the pace even.
        Some(rate) => ((rate / 20.0) as u64).clamp(1, CHUNK),
        None => CHUNK,
    };
    let mut report = PublishReport {
        stream: options.stream.clone(),
        entries: 0,
        first_id: None,
        last_id: None,
        seconds: 0.0,
    };
    while report.entries < options.count {
        let n = chunk.min(options.count - report.entries);
        let mut pipe = redis::pipe();
        for index in report.entries..report.entries + n {
            let event = hub.event(0, index);
            let key = document_key(&event.body).or(event.partition_key).unwrap_or_default();
            pipe.cmd("XADD")
                .arg(&options.stream)
                .arg("*")
                .arg(DATA_FIELD)
                .arg(event.body)
                .arg(KEY_FIELD)
                .arg(key);
        }
        let ids: Vec<String> = link.run(&Request::Pipe(pipe)).await.map_err(|e| {
            let url = link.url().to_string();
            if is_transient(&e) {
                BridgeError::Unreachable {
                    url,
                    reason: e.to_string(),
                }
            } else {
                BridgeError::Redis {
                    url,
                    what: format!("XADD to {}", options.stream),
                    message: e.to_string(),
                }
            }
        })?;
        if report.first_id.is_none() {
            report.first_id = ids.first().cloned();
        }
        report.last_id = ids.last().cloned().or(report.last_id);
        report.entries += n;
        if let Some(rate) = options.rate {
            let due = Duration::from_secs_f64(report.entries as f64 / rate);
            tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_the_documents_id() {
        let insert = br#"{"operationType":"insert","documentKey":{"_id":{"$oid":"6af12bb4c8e8f7711d0002a6"}}}"#;
        assert_eq!(document_key(insert).as_deref(), Some("6af12bb4c8e8f7711d0002a6"));
        let numeric = br#"{"documentKey":{"_id":42}}"#;
        assert_eq!(document_key(numeric).as_deref(), Some("42"));
        assert_eq!(document_key(br#"{"operationType":"drop"}"#), None);
    }
}
