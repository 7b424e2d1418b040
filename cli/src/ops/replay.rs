//! `hub2lake replay`: re-publish the recorded original events of a range, in order per
//! partition, in batches under the service's size limit, resumably.
//!
//! Each record's `raw_event` becomes the body again: JSON bodies as compact JSON text
//! (byte for byte what was recorded), text bodies as the string. The partition key and
//! the application properties are sent as recorded. Where each event goes is a
//! [`PartitionMode`]; per destination the order of the source partition is kept.
//!
//! Sending sits behind [`EventSink`]: the Event Hubs client ([`hub2lake::eventhub`]), a
//! folder of JSON Lines ([`FileSink`], what would be sent, per source partition) and a
//! dry run ([`DryRunSink`]).
//!
//! Resuming: with a position file, after every *window* of batches (up to
//! [`ReplayOptions::window_targets`] destinations, each batch under the size limit)
//! the highest sent sequence number of the source partition is saved; a new run skips
//! what is at or below it. An interrupted window is sent again in full: replay is
//! at-least-once, with repeats bounded by one window.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::inventory::Inventory;
use super::merge::{SortOptions, Sorter};
use super::range::HourRange;
use super::{blocking, OpsError};
use hub2lake::eventhub::{EventSink, OutEvent, SinkError, Target};
use hub2lake::lake::encode::minify_json;
use hub2lake::lake::Lake;

/// How recorded events choose their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PartitionMode {
    /// Events with a partition key are sent with it; events without one go to the
    /// partition id they were read from (the destination needs at least as many
    /// partitions).
    #[default]
    Auto,
    /// Every event goes to the partition id it was read from (keys are not sent: the
    /// service takes a key or a partition, not both).
    Same,
    /// Events with a key are sent with it, events without one to any partition.
    Any,
}

impl PartitionMode {
    pub fn target(self, event: &OutEvent) -> Target {
        match (self, &event.partition_key) {
            (Self::Same, _) => Target::Partition(event.source_partition.clone()),
            (Self::Auto | Self::Any, Some(k)) => Target::Key(k.clone()),
            (Self::Auto, None) => Target::Partition(event.source_partition.clone()),
            (Self::Any, None) => Target::Any,
        }
    }
}

/// The fields of a record replay needs.
#[derive(Debug, Deserialize)]
struct ReplayRecord<'a> {
    partition_id: String,
    sequence_number: i64,
    #[serde(borrow)]
    raw_event: Option<&'a RawValue>,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    properties: Option<Value>,
}

/// Rebuilds the event a record was made from.
pub fn out_event(line: &[u8]) -> Result<OutEvent, String> {
    let r: ReplayRecord<'_> = serde_json::from_slice(line).map_err(|e| format!("not a record: {e}"))?;
    let raw = r
        .raw_event
        .ok_or_else(|| format!("record {}/{} has no raw_event", r.partition_id, r.sequence_number))?;
    let body = match raw.get().trim_start() {
        text if text.starts_with('"') => serde_json::from_str::<String>(text)
            .map_err(|e| format!("raw_event string: {e}"))?
            .into_bytes(),
        "null" => Vec::new(),
        text => minify_json(text).into_bytes(),
    };
    let properties = match r.properties {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(OutEvent {
        body,
        partition_key: r.partition_key,
        properties,
        source_partition: r.partition_id,
        source_sequence_number: r.sequence_number,
    })
}

/// Prints one line per batch that would be sent; sends nothing.
pub struct DryRunSink {
    out: Mutex<Box<dyn Write + Send>>,
}

impl DryRunSink {
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self { out: Mutex::new(out) }
    }
}

impl EventSink for DryRunSink {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return Ok(());
        };
        let bytes: usize = events.iter().map(OutEvent::estimated_size).sum();
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        writeln!(
            out,
            "would send {} events (~{}) from partition {} seq {}..{} to {target}",
            events.len(),
            super::ls::human_bytes(bytes as u64),
            first.source_partition,
            first.source_sequence_number,
            last.source_sequence_number
        )
        .map_err(|source| SinkError::Io {
            path: PathBuf::from("<stdout>"),
            source,
        })
    }

    fn describe(&self) -> String {
        "dry-run".into()
    }

    fn records_position(&self) -> bool {
        false
    }
}

/// The position file: per source partition, the highest sequence number sent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub version: u32,
    pub destination: String,
    pub partitions: BTreeMap<String, i64>,
}

impl Position {
    /// Reads `path` (a missing file is a fresh start) and checks it is for `destination`.
    pub fn load(path: &Path, destination: &str) -> Result<Self, OpsError> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self {
                    version: 1,
                    destination: destination.to_string(),
                    partitions: BTreeMap::new(),
                })
            }
            Err(e) => return Err(OpsError::io(path)(e)),
        };
        let p: Self = serde_json::from_slice(&bytes).map_err(|e| {
            OpsError::Usage(format!(
                "the position file {} does not parse ({e}); delete it to start over",
                path.display()
            ))
        })?;
        if p.destination != destination {
            return Err(OpsError::Usage(format!(
                "the position file {} is for {}, not {destination}; use another --position file or delete it",
                path.display(),
                p.destination
            )));
        }
        Ok(p)
    }

    /// Writes the file whole (temporary name, then rename).
    pub fn save(&self, path: &Path) -> Result<(), OpsError> {
        let tmp = super::merge::partial_name(path);
        let text = serde_json::to_vec_pretty(self).map_err(|e| OpsError::Internal(e.to_string()))?;
        std::fs::write(&tmp, text).map_err(OpsError::io(&tmp))?;
        std::fs::rename(&tmp, path).map_err(OpsError::io(path))
    }

    fn sent(&self, partition: &str, seq: i64) -> bool {
        self.partitions.get(partition).is_some_and(|p| seq <= *p)
    }
}

/// What to replay and how.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    pub range: HourRange,
    pub database: Option<String>,
    pub collection: Option<String>,
    /// Only sealed hours (each event once by construction).
    pub sealed_only: bool,
    pub partition_mode: PartitionMode,
    /// Upper bound of one batch (estimated); the service's limit is 1 MB on
    /// Basic/Standard namespaces.
    pub max_batch_bytes: usize,
    /// Destinations batched together before the position moves.
    pub window_targets: usize,
    pub position: Option<PathBuf>,
    pub sort: SortOptions,
    /// Objects read at once.
    pub concurrency: usize,
}

impl ReplayOptions {
    pub const DEFAULT_MAX_BATCH_BYTES: usize = 1_000_000;
    pub const DEFAULT_WINDOW_TARGETS: usize = 64;
}

/// Progress of a replay, for a progress bar.
pub trait Progress: Send + Sync {
    /// Called once the events are read and sorted: how many there are.
    fn begin(&self, _events: u64) {}
    /// Events handled (sent or skipped by the position file).
    fn advance(&self, _events: u64) {}
    fn finish(&self) {}
}

impl Progress for () {}

/// Per source partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PartitionReplay {
    pub events: u64,
    pub first_sequence_number: Option<i64>,
    pub last_sequence_number: Option<i64>,
}

/// What `replay` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ReplayReport {
    pub lake: String,
    pub range: String,
    pub destination: String,
    pub objects_read: u64,
    /// Records read, copies included.
    pub records_read: u64,
    /// Copies of events dropped (same partition and sequence number).
    pub duplicates_dropped: u64,
    /// Events skipped because the position file says they were sent.
    pub already_sent: u64,
    pub events_sent: u64,
    pub batches_sent: u64,
    pub bytes_sent: u64,
    pub partitions: BTreeMap<String, PartitionReplay>,
}

impl ReplayReport {
    pub fn render(&self) -> String {
        let mut out = format!(
            "replay {} — {} → {}\n  read {} records from {} objects ({} repeated copies dropped)\n  {} {} events in {} \
             batches (~{}), {} already sent earlier\n",
            self.lake,
            self.range,
            self.destination,
            self.records_read,
            self.objects_read,
            self.duplicates_dropped,
            if self.destination == "dry-run" { "would send" } else { "sent" },
            self.events_sent,
            self.batches_sent,
            super::ls::human_bytes(self.bytes_sent),
            self.already_sent
        );
        for (p, r) in &self.partitions {
            if let (Some(first), Some(last)) = (r.first_sequence_number, r.last_sequence_number) {
                out.push_str(&format!("  partition {p}: {} events, seq {first}..{last}\n", r.events));
            }
        }
        out
    }
}

/// Batches being filled for one source partition.
#[derive(Default)]
struct Window {
    partition: Option<String>,
    /// Highest sequence number in the window.
    last_seq: Option<i64>,
    batches: Vec<(Target, Vec<OutEvent>, usize)>,
}

/// Sends recorded events to `sink`.
pub async fn replay<S: EventSink>(
    lake: &Lake,
    inv: &Inventory,
    opts: &ReplayOptions,
    sink: &S,
    progress: &dyn Progress,
) -> Result<ReplayReport, OpsError> {
    let mut report = ReplayReport {
        lake: lake.description().to_string(),
        range: opts.range.to_string(),
        destination: sink.describe(),
        ..ReplayReport::default()
    };
    let mut position = match &opts.position {
        Some(path) => Position::load(path, &sink.describe())?,
        None => Position::default(),
    };
    let objects = select(inv, opts);
    report.objects_read = objects.len() as u64;
    let merged = load_sorted(lake, objects, opts).await?;
    report.records_read = merged.records_in;
    progress.begin(merged.records_in);
    let mut sender = Sender {
        sink,
        opts,
        position: &mut position,
        report: &mut report,
        window: Window::default(),
    };
    let mut merged = merged;
    for item in merged.by_ref() {
        let line = item?;
        let event = out_event(&line.line).map_err(|reason| OpsError::Corrupt {
            path: format!("record {}/{}", line.partition.as_str(), line.sequence_number),
            reason,
        })?;
        progress.advance(1);
        sender.push(event).await?;
    }
    sender.flush().await?;
    report.duplicates_dropped = merged.duplicates;
    progress.finish();
    Ok(report)
}

/// The objects to replay: per folder, what holds each event once as far as the lake
/// knows (a sealed hour's manifest objects plus late data; an open hour's raw objects).
fn select(inv: &Inventory, opts: &ReplayOptions) -> Vec<(String, u64)> {
    inv.units_in(&opts.range, opts.database.as_deref(), opts.collection.as_deref())
        .filter(|u| !opts.sealed_only || u.is_sealed())
        .flat_map(|u| {
            if opts.sealed_only {
                u.sealed
                    .iter()
                    .filter_map(|o| o.size.map(|s| (o.entry.path.clone(), s)))
                    .collect()
            } else {
                u.readable_objects()
            }
        })
        .collect()
}

/// Reads the objects and sorts their records by (partition, sequence number).
async fn load_sorted(
    lake: &Lake,
    objects: Vec<(String, u64)>,
    opts: &ReplayOptions,
) -> Result<super::merge::Merged, OpsError> {
    let mut sorter = Sorter::new(opts.sort.clone());
    let mut fetched = futures::stream::iter(objects)
        .map(|(path, _)| async move {
            let bytes = lake.get(&path).await?;
            Ok::<_, OpsError>((path, bytes))
        })
        .buffered(opts.concurrency.max(1));
    while let Some(item) = fetched.next().await {
        let (path, bytes) = item?;
        sorter = blocking(move || {
            sorter.push_reader(&bytes[..], &path)?;
            Ok(sorter)
        })
        .await?;
    }
    blocking(move || sorter.finish()).await
}

struct Sender<'a, S: EventSink> {
    sink: &'a S,
    opts: &'a ReplayOptions,
    position: &'a mut Position,
    report: &'a mut ReplayReport,
    window: Window,
}

impl<S: EventSink> Sender<'_, S> {
    async fn push(&mut self, event: OutEvent) -> Result<(), OpsError> {
        if self
            .position
            .sent(&event.source_partition, event.source_sequence_number)
        {
            self.report.already_sent += 1;
            return Ok(());
        }
        if self.window.partition.as_deref() != Some(event.source_partition.as_str()) {
            self.flush().await?;
            self.window.partition = Some(event.source_partition.clone());
        }
        let size = event.estimated_size();
        if size > self.opts.max_batch_bytes {
            return Err(SinkError::TooLarge {
                partition: event.source_partition.clone(),
                sequence_number: event.source_sequence_number,
                bytes: size as u64,
                limit: self.opts.max_batch_bytes as u64,
            }
            .into());
        }
        let target = self.opts.partition_mode.target(&event);
        let slot = self.window.batches.iter().position(|(t, _, _)| *t == target);
        let full = slot.is_some_and(|i| self.window.batches[i].2 + size > self.opts.max_batch_bytes);
        let crowded = slot.is_none() && self.window.batches.len() >= self.opts.window_targets.max(1);
        if full || crowded {
            let partition = self.window.partition.clone();
            self.flush().await?;
            self.window.partition = partition;
        }
        let seq = event.source_sequence_number;
        match self.window.batches.iter_mut().find(|(t, _, _)| *t == target) {
            Some((_, events, bytes)) => {
                *bytes += size;
                events.push(event);
            }
            None => self.window.batches.push((target, vec![event], size)),
        }
        self.window.last_seq = Some(self.window.last_seq.map_or(seq, |s| s.max(seq)));
        Ok(())
    }

    /// Sends every batch of the window in order, then moves the position.
    async fn flush(&mut self) -> Result<(), OpsError> {
        let window = std::mem::take(&mut self.window);
        let Some(partition) = window.partition else {
            return Ok(());
        };
        for (target, events, bytes) in &window.batches {
            self.sink.send_batch(target, events).await?;
            tracing::debug!(%target, events = events.len(), bytes, "batch sent");
            self.report.batches_sent += 1;
            self.report.events_sent += events.len() as u64;
            self.report.bytes_sent += *bytes as u64;
            let p = self.report.partitions.entry(partition.clone()).or_default();
            p.events += events.len() as u64;
            for e in events {
                let s = e.source_sequence_number;
                p.first_sequence_number = Some(p.first_sequence_number.map_or(s, |f| f.min(s)));
                p.last_sequence_number = Some(p.last_sequence_number.map_or(s, |l| l.max(s)));
            }
        }
        if let (Some(last), Some(path)) = (window.last_seq, &self.opts.position) {
            if self.sink.records_position() {
                let entry = self.position.partitions.entry(partition).or_insert(last);
                *entry = (*entry).max(last);
                self.position.save(path)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_back_from_raw_event() {
        let line = br#"{"partition_id":"3","sequence_number":7,"raw_event":{"b":1, "a":[ "x y" ]},"partition_key":"k","properties":{"p":1,"q":"v"}}"#;
        let e = out_event(line).unwrap();
        assert_eq!(e.body, br#"{"b":1,"a":["x y"]}"#);
        assert_eq!(e.partition_key.as_deref(), Some("k"));
        assert_eq!(e.properties["q"], "v");
        assert_eq!((e.source_partition.as_str(), e.source_sequence_number), ("3", 7));

        let line = br#"{"partition_id":"3","sequence_number":8,"raw_event":"plain \"text\"\n","partition_key":null,"properties":null}"#;
        let e = out_event(line).unwrap();
        assert_eq!(e.body, b"plain \"text\"\n");
        assert!(e.partition_key.is_none() && e.properties.is_empty());

        assert!(out_event(br#"{"partition_id":"3","sequence_number":8}"#).is_err());
        assert!(out_event(b"nope").is_err());
    }

    #[test]
    fn partition_modes_choose_targets() {
        let mut e =
            out_event(br#"{"partition_id":"3","sequence_number":1,"raw_event":1,"partition_key":"k"}"#).unwrap();
        assert_eq!(PartitionMode::Auto.target(&e), Target::Key("k".into()));
        assert_eq!(PartitionMode::Same.target(&e), Target::Partition("3".into()));
        assert_eq!(PartitionMode::Any.target(&e), Target::Key("k".into()));
        e.partition_key = None;
        assert_eq!(PartitionMode::Auto.target(&e), Target::Partition("3".into()));
        assert_eq!(PartitionMode::Any.target(&e), Target::Any);
    }

    #[test]
    fn position_files_belong_to_one_destination() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pos.json");
        let mut p = Position::load(&path, "eventhub://a/b").unwrap();
        p.partitions.insert("0".into(), 99);
        p.save(&path).unwrap();
        assert_eq!(Position::load(&path, "eventhub://a/b").unwrap(), p);
        let e = Position::load(&path, "eventhub://a/c").unwrap_err();
        assert!(e.to_string().contains("eventhub://a/b"), "{e}");
        std::fs::write(&path, "{").unwrap();
        assert!(Position::load(&path, "eventhub://a/b").is_err());
    }
}
