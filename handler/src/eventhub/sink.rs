//! The event-sink contract shared by everything that sends events to an Event Hub
//! (`replay`, and next the Redis bridge and the log stream): one batch at a time to one
//! [`Target`], with [`SinkError`] saying whether the operator must change something.
//! Implementations: [`super::EventHubSink`] (the service) and [`FileSink`] (JSON Lines
//! on disk, for development and tests).

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::lake::layout::sanitize_segment;

/// Where one batch goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The service hashes the key to a partition (the original key).
    Key(String),
    /// A partition by id.
    Partition(String),
    /// Any partition (the service balances; no order between batches).
    Any,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Key(k) => write!(f, "partition key {k:?}"),
            Self::Partition(p) => write!(f, "partition {p}"),
            Self::Any => f.write_str("any partition"),
        }
    }
}

/// One event to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutEvent {
    pub body: Vec<u8>,
    pub partition_key: Option<String>,
    /// Application properties as recorded.
    pub properties: Map<String, Value>,
    pub source_partition: String,
    pub source_sequence_number: i64,
}

impl OutEvent {
    /// A conservative estimate of the event's size in an AMQP batch.
    pub fn estimated_size(&self) -> usize {
        let props: usize = self.properties.iter().map(|(k, v)| k.len() + value_len(v) + 16).sum();
        self.body.len() + props + self.partition_key.as_ref().map_or(0, |k| k.len() + 32) + 64
    }
}

fn value_len(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 9,
        other => other.to_string().len(),
    }
}

/// Why a batch could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Destination flags, connection string or credentials are unusable.
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    ConnectionString(#[from] super::ConnectionStringError),
    #[error("cannot connect to {destination}: {message}")]
    Connect { destination: String, message: String },
    #[error("sending to {target} failed: {message}")]
    Send { target: String, message: String },
    #[error(
        "event {partition}/{sequence_number} is about {bytes} bytes, over the batch limit of {limit} bytes \
         (raise --max-batch-bytes up to the namespace's limit: 1 MB Basic/Standard, 20 MB Premium/Dedicated)"
    )]
    TooLarge {
        partition: String,
        sequence_number: i64,
        bytes: u64,
        limit: u64,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SinkError {
    /// Whether the operator must change flags or credentials (exit code 2).
    pub fn is_configuration(&self) -> bool {
        matches!(
            self,
            Self::Config(_) | Self::ConnectionString(_) | Self::TooLarge { .. }
        )
    }
}

/// Where replayed events go. Batches arrive in order; one call is one batch.
pub trait EventSink {
    /// Sends `events` (in order) to `target` as one batch.
    fn send_batch(&self, target: &Target, events: &[OutEvent]) -> impl Future<Output = Result<(), SinkError>>;

    /// The destination, as recorded in the position file.
    fn describe(&self) -> String;

    /// Whether sending moves the position file (not for a dry run).
    fn records_position(&self) -> bool {
        true
    }
}

/// Writes what would be sent as JSON Lines, one file per source partition
/// (`<dir>/<partition>.jsonl`, appended), one line per event.
pub struct FileSink {
    dir: PathBuf,
    batches: Mutex<u64>,
}

/// A line written by [`FileSink`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSinkLine {
    /// Number of the batch (1-based, across the run).
    pub batch: u64,
    pub target: Target,
    pub source_partition_id: String,
    pub source_sequence_number: i64,
    pub partition_key: Option<String>,
    pub properties: Map<String, Value>,
    /// The body, when it is UTF-8 (always, for bodies rebuilt from records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body as base64 otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

impl FileSink {
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, SinkError> {
        let dir = dir.into();
        std::fs::create_dir_all(&dir).map_err(|source| SinkError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(Self {
            dir,
            batches: Mutex::new(0),
        })
    }

    /// The file of a source partition.
    pub fn file_of(&self, partition: &str) -> PathBuf {
        self.dir.join(format!("{}.jsonl", sanitize_segment(partition)))
    }

    fn write(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        let batch = {
            let mut n = self.batches.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            *n
        };
        let mut by_file: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        for e in events {
            let (body, body_base64) = match std::str::from_utf8(&e.body) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => {
                    use base64::Engine as _;
                    (None, Some(base64::engine::general_purpose::STANDARD.encode(&e.body)))
                }
            };
            let line = FileSinkLine {
                batch,
                target: target.clone(),
                source_partition_id: e.source_partition.clone(),
                source_sequence_number: e.source_sequence_number,
                partition_key: e.partition_key.clone(),
                properties: e.properties.clone(),
                body,
                body_base64,
            };
            let buf = by_file.entry(self.file_of(&e.source_partition)).or_default();
            serde_json::to_writer(&mut *buf, &line).map_err(|e| SinkError::Io {
                path: self.dir.clone(),
                source: e.into(),
            })?;
            buf.push(b'\n');
        }
        for (path, bytes) in by_file {
            let io = |source| SinkError::Io {
                path: path.clone(),
                source,
            };
            let mut f = OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
            f.write_all(&bytes).map_err(io)?;
        }
        Ok(())
    }
}

impl EventSink for FileSink {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        self.write(target, events)
    }

    fn describe(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}
