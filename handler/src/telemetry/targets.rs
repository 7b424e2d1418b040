//! The log stream's two targets, both behind the producer's [`EventSink`] trait so the
//! same queue, batch and circuit code drives them: the Event Hub (through the shared
//! producer, connected lazily on the worker's thread) and a JSON-lines file.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::eventhub::{EventHubSink, EventSink, OutEvent, SinkError, Target};

use super::settings::EventHubTarget;

/// Largest AMQP batch the producer builds: the Basic/Standard tiers' 1 MB limit.
const MAX_BATCH_BYTES: u64 = 1_000_000;

/// The Event Hub target. It connects on the first batch, not at start, so an
/// unreachable namespace never delays start-up; a failed send drops the connection
/// and the next attempt connects again.
pub struct LazyEventHub {
    target: EventHubTarget,
    sink: tokio::sync::Mutex<Option<EventHubSink>>,
}

impl LazyEventHub {
    pub fn new(target: EventHubTarget) -> Self {
        Self {
            target,
            sink: tokio::sync::Mutex::new(None),
        }
    }
}

impl EventSink for LazyEventHub {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        let mut slot = self.sink.lock().await;
        if slot.is_none() {
            let env = |k: &str| std::env::var(k).ok();
            let sink = EventHubSink::connect(
                &self.target.destination,
                self.target.websockets,
                MAX_BATCH_BYTES,
                "logs",
                &env,
            )
            .await?;
            *slot = Some(sink);
        }
        let Some(sink) = slot.as_ref() else {
            return Err(SinkError::Config("no Event Hub connection".into()));
        };
        let sent = sink.send_batch(target, events).await;
        if sent.is_err() {
            // A broken link is not reused; the next batch (or probe) reconnects.
            *slot = None;
        }
        sent
    }

    fn describe(&self) -> String {
        self.target.destination.describe()
    }
}

/// Appends each record as one line to a file (development and tests).
pub struct JsonLinesFile {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl JsonLinesFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            file: Mutex::new(None),
        }
    }

    fn append(&self, events: &[OutEvent]) -> Result<(), SinkError> {
        let io = |source| SinkError::Io {
            path: self.path.clone(),
            source,
        };
        let mut bytes = Vec::with_capacity(events.iter().map(|e| e.body.len() + 1).sum());
        for e in events {
            bytes.extend_from_slice(&e.body);
            bytes.push(b'\n');
        }
        let mut slot = self.file.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(io)?;
            }
            *slot = Some(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.path)
                    .map_err(io)?,
            );
        }
        let Some(file) = slot.as_mut() else {
            return Err(SinkError::Config("no file".into()));
        };
        // One write per batch: lines of a batch are never split by another writer's.
        let written = file.write_all(&bytes).map_err(io);
        if written.is_err() {
            *slot = None;
        }
        written
    }
}

impl EventSink for JsonLinesFile {
    async fn send_batch(&self, _target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        self.append(events)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.path.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::settings::LogStreamSettings;
    use crate::telemetry::stream::{spawn, CircuitState, StreamConfig};
    use std::time::Duration;

    #[test]
    fn the_file_target_gets_every_record_in_order_through_the_worker() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/logs.jsonl");
        let p = path.clone();
        let config = StreamConfig {
            batch_size: 100,
            batch_timeout: Duration::from_millis(50),
            ..StreamConfig::default()
        };
        let pipeline = spawn("file", "test".into(), config, move || JsonLinesFile::new(p)).unwrap();
        for i in 0..250 {
            assert!(pipeline.queue.offer(format!("{{\"message\":\"m{i}\"}}").into_bytes()));
        }
        // The first two batches are full and go at once; the last waits for its timer.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pipeline.queue.health().sent < 200 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(pipeline.queue.health().sent >= 200);
        assert!(pipeline.flush(Duration::from_secs(2)));
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 250);
        for (i, line) in lines.iter().enumerate() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(v["message"], format!("m{i}"));
        }
        let h = pipeline.queue.health();
        assert_eq!(
            (h.state, h.sent, h.dropped, h.failed_batches),
            (CircuitState::Closed, 250, 0, 0)
        );
    }

    #[test]
    fn an_unwritable_file_fails_batches_and_opens_the_circuit() {
        let dir = tempfile::tempdir().unwrap();
        // A directory where the file should be: every open fails.
        let path = dir.path().join("taken");
        std::fs::create_dir(&path).unwrap();
        let p = path.clone();
        let config = StreamConfig {
            batch_size: 5,
            circuit_threshold: 2,
            attempts: 2,
            retry_backoff: Duration::from_millis(1),
            ..StreamConfig::default()
        };
        let pipeline = spawn("file", "test".into(), config, move || JsonLinesFile::new(p)).unwrap();
        for i in 0..20 {
            pipeline.queue.offer(format!("{i}").into_bytes());
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while pipeline.queue.health().state != CircuitState::Open && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let h = pipeline.queue.health();
        assert_eq!(h.state, CircuitState::Open, "{h:?}");
        assert_eq!(h.failed_batches, 2);
        assert!(h.last_error.unwrap().contains("taken"));
        assert!(pipeline.flush(Duration::from_millis(200)));
        assert_eq!(pipeline.queue.health().dropped, 20);
    }

    #[test]
    fn an_unreachable_event_hub_fails_fast_and_never_blocks_the_caller() {
        // A closed port on loopback: connecting is refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cs = format!("Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=send;SharedAccessKey=a2V5");
        let settings =
            LogStreamSettings::from_lookup(|k| (k == super::super::settings::CONNECTION_STRING).then(|| cs.clone()))
                .unwrap();
        let target = settings.eventhub.unwrap();
        let config = StreamConfig {
            batch_size: 2,
            circuit_threshold: 1,
            attempts: 1,
            send_timeout: Duration::from_secs(20),
            ..StreamConfig::default()
        };
        let started = std::time::Instant::now();
        let pipeline = spawn("eventhub", "test".into(), config, move || LazyEventHub::new(target)).unwrap();
        for i in 0..4 {
            assert!(pipeline.queue.offer(format!("{i}").into_bytes()));
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "nothing waits for the network"
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while pipeline.queue.health().state != CircuitState::Open && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let h = pipeline.queue.health();
        assert_eq!(h.state, CircuitState::Open, "{h:?}");
        assert!(h.last_error.is_some());
        assert!(pipeline.flush(Duration::from_millis(200)));
    }
}
