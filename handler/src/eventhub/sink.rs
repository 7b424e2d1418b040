//! The event-sink contract shared by everything that sends events to an Event Hub
//! (`replay`, and next the Redis bridge and the log stream): one batch at a time to one
//! [`Target`], with [`SinkError`] saying whether the operator must change something.
//! Implementations: [`super::EventHubSink`] (the service) and [`FileSink`] (JSON Lines
//! on disk, for development and tests).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::error::SinkError;
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

    /// Sends several batches (each to its own target), with one result per batch in the
    /// same order: a caller such as the Redis bridge acknowledges what was accepted and
    /// retries the rest. By default one after the other; sinks override it to send
    /// them together.
    fn send_batches(&self, batches: &[(Target, Vec<OutEvent>)]) -> impl Future<Output = Vec<Result<(), SinkError>>> {
        async move {
            let mut results = Vec::with_capacity(batches.len());
            for (target, events) in batches {
                results.push(self.send_batch(target, events).await);
            }
            results
        }
    }
}

/// Writes what would be sent as JSON Lines, one file per source partition (or Redis
/// stream: `<dir>/<source>.jsonl`, appended), one line per event.
///
/// Crash-safe for readers: each batch goes to a file in one `write`, so a crash leaves at
/// most a cut-off last line; a write to a file that does not end in a newline (what such
/// a crash leaves) starts with one, so a later line is never glued to the cut-off one.
pub struct FileSink {
    dir: PathBuf,
    state: Mutex<FileSinkState>,
}

#[derive(Default)]
struct FileSinkState {
    batches: u64,
    /// Files opened for appending.
    open: HashMap<PathBuf, File>,
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
            state: Mutex::new(FileSinkState::default()),
        })
    }

    /// The file of a source partition.
    pub fn file_of(&self, partition: &str) -> PathBuf {
        self.dir.join(format!("{}.jsonl", sanitize_segment(partition)))
    }

    /// Appends the lines of `batch` (numbered `number`) to `by_file`.
    fn encode(
        &self,
        number: u64,
        target: &Target,
        events: &[OutEvent],
        by_file: &mut BTreeMap<PathBuf, Vec<u8>>,
    ) -> Result<(), SinkError> {
        for e in events {
            let (body, body_base64) = match std::str::from_utf8(&e.body) {
                Ok(text) => (Some(text.to_string()), None),
                Err(_) => {
                    use base64::Engine as _;
                    (None, Some(base64::engine::general_purpose::STANDARD.encode(&e.body)))
                }
            };
            let line = FileSinkLine {
                batch: number,
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
        Ok(())
    }

    /// Writes several batches: all lines of one file in one `write`.
    fn write(&self, batches: &[(&Target, &[OutEvent])]) -> Result<(), SinkError> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let mut by_file: BTreeMap<PathBuf, Vec<u8>> = BTreeMap::new();
        for (target, events) in batches {
            state.batches += 1;
            self.encode(state.batches, target, events, &mut by_file)?;
        }
        for (path, bytes) in by_file {
            let io = |source| SinkError::Io {
                path: path.clone(),
                source,
            };
            let file = match state.open.entry(path.clone()) {
                Entry::Occupied(open) => open.into_mut(),
                Entry::Vacant(slot) => slot.insert(open_for_append(&path).map_err(io)?),
            };
            if let Err(e) = append_lines(file, &bytes) {
                // Open the file again next time rather than trust this handle.
                state.open.remove(&path);
                return Err(io(e));
            }
        }
        Ok(())
    }
}

/// Opens `path` for appending (and reading, to look at its last byte).
fn open_for_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).read(true).open(path)
}

/// Appends `bytes` (whole lines); when the file ends in a cut-off line (a crash
/// mid-write, of this process or another writing the same file), ends that line first,
/// in the same `write`.
fn append_lines(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::FileExt as _;
    let len = file.metadata()?.len();
    let mut last = [b'\n'];
    if len > 0 {
        file.read_exact_at(&mut last, len - 1)?;
    }
    if last[0] == b'\n' {
        return file.write_all(bytes);
    }
    let mut ended = Vec::with_capacity(bytes.len() + 1);
    ended.push(b'\n');
    ended.extend_from_slice(bytes);
    file.write_all(&ended)
}

impl EventSink for FileSink {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        self.write(&[(target, events)])
    }

    async fn send_batches(&self, batches: &[(Target, Vec<OutEvent>)]) -> Vec<Result<(), SinkError>> {
        let refs: Vec<(&Target, &[OutEvent])> = batches.iter().map(|(t, e)| (t, e.as_slice())).collect();
        match self.write(&refs) {
            Ok(()) => batches.iter().map(|_| Ok(())).collect(),
            // Which files got their lines is unknown: every batch counts as not accepted.
            Err(e) => {
                let message = e.to_string();
                let path = match &e {
                    SinkError::Io { path, .. } => path.clone(),
                    _ => self.dir.clone(),
                };
                batches
                    .iter()
                    .map(|_| {
                        Err(SinkError::Io {
                            path: path.clone(),
                            source: std::io::Error::other(message.clone()),
                        })
                    })
                    .collect()
            }
        }
    }

    fn describe(&self) -> String {
        format!("file://{}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(source: &str, n: i64, body: &[u8]) -> OutEvent {
        OutEvent {
            body: body.to_vec(),
            partition_key: None,
            properties: Map::new(),
            source_partition: source.to_string(),
            source_sequence_number: n,
        }
    }

    fn lines(path: &Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }

    #[tokio::test]
    async fn a_cut_off_last_line_is_ended_before_the_next_runs_lines() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path()).unwrap();
        sink.send_batch(&Target::Any, &[event("orders", 1, b"one")])
            .await
            .unwrap();
        let path = sink.file_of("orders");
        // A crash in the middle of the next write.
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"batch":2,"target":"an"#).unwrap();
        drop(sink);

        let sink = FileSink::new(dir.path()).unwrap();
        sink.send_batch(&Target::Any, &[event("orders", 2, b"two")])
            .await
            .unwrap();
        sink.send_batch(&Target::Any, &[event("orders", 3, b"three")])
            .await
            .unwrap();
        let lines = lines(&path);
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert_eq!(lines[1], r#"{"batch":2,"target":"an"#);
        for (line, body) in [(&lines[2], "two"), (&lines[3], "three")] {
            let parsed: FileSinkLine = serde_json::from_str(line).unwrap();
            assert_eq!(parsed.body.as_deref(), Some(body));
        }
    }

    #[tokio::test]
    async fn a_line_cut_off_by_another_writer_is_ended_too() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path()).unwrap();
        sink.send_batch(&Target::Any, &[event("s", 1, b"one")]).await.unwrap();
        let path = sink.file_of("s");
        // A second bridge writing to the same file dies mid-line.
        OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"cut")
            .unwrap();
        sink.send_batch(&Target::Any, &[event("s", 2, b"two")]).await.unwrap();
        let lines = lines(&path);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert_eq!(lines[1], "{\"cut");
        assert!(serde_json::from_str::<FileSinkLine>(&lines[2]).is_ok());
    }

    #[tokio::test]
    async fn a_file_ending_in_a_newline_gets_no_empty_line() {
        let dir = tempfile::tempdir().unwrap();
        for n in 0..2 {
            let sink = FileSink::new(dir.path()).unwrap();
            sink.send_batch(&Target::Any, &[event("p", n, b"x")]).await.unwrap();
        }
        let text = std::fs::read_to_string(dir.path().join("p.jsonl")).unwrap();
        assert_eq!(text.matches('\n').count(), 2);
        assert!(!text.contains("\n\n"));
    }

    #[tokio::test]
    async fn several_batches_are_numbered_and_written_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let sink = FileSink::new(dir.path()).unwrap();
        let batches = vec![
            (Target::Key("a".into()), vec![event("s", 1, b"1"), event("s", 2, b"2")]),
            (Target::Key("b".into()), vec![event("s", 3, b"\xff")]),
        ];
        let results = sink.send_batches(&batches).await;
        assert!(results.iter().all(Result::is_ok));
        let parsed: Vec<FileSinkLine> = lines(&sink.file_of("s"))
            .iter()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let seen: Vec<(u64, i64)> = parsed.iter().map(|l| (l.batch, l.source_sequence_number)).collect();
        assert_eq!(seen, [(1, 1), (1, 2), (2, 3)]);
        assert_eq!(parsed[2].body, None);
        assert_eq!(parsed[2].body_base64.as_deref(), Some("/w=="));
    }
}
