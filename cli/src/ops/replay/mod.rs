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

mod dry_run;
mod event;
mod position;

pub use dry_run::DryRunSink;
pub use event::{out_event, PartitionMode};
pub use position::Position;

use std::collections::BTreeMap;
use std::path::PathBuf;

use futures::StreamExt;
use serde::Serialize;

use super::inventory::Inventory;
use super::merge::{SortOptions, Sorter};
use super::range::HourRange;
use super::{blocking, OpsError};
use hub2lake::eventhub::{EventSink, OutEvent, SinkError, Target};
use hub2lake::lake::Lake;

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
