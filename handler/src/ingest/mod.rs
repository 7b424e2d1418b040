//! Ingest: an Event Hub batch becomes data objects (one per route and hour), dead-letter
//! objects for undecodable events, and finally a receipt — all create-only.
//!
//! One pass per stage: [`event`] decodes every body, [`partition`] assigns each event
//! to an object, [`objects`] builds each object's records and encodes them, and
//! [`Ingestor::ingest`] writes the objects, then the receipt.

mod cores;
mod error;
pub mod event;
pub mod objects;
pub mod partition;

#[cfg(test)]
mod fixtures;

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tracing::Instrument;

use crate::config::Settings;
use crate::host::EventHubBatch;
use crate::lake::encode::decode_object;
use crate::lake::layout;
use crate::lake::receipt::{ObjectKind, Receipt, ReceiptObject};
use crate::lake::{digest_hex, Lake, LakeError, ObjectAttributes, PutOutcome};
use crate::time::format_time;
pub use error::IngestError;
use objects::{BatchContext, BuiltObject};

/// What a successful batch wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IngestReport {
    pub partition_id: String,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
    pub events: u64,
    pub records: u64,
    pub dead_letters: u64,
    pub body_bytes: u64,
    pub stored_bytes: u64,
    pub objects_created: u64,
    /// Objects that were already there from an earlier delivery of the same batch.
    pub objects_existing: u64,
    pub receipt_path: String,
    /// Wall time of the storage calls (uploads, read-back checks, the receipt): the
    /// rest of an invocation's time is the handler's own.
    pub storage_time: std::time::Duration,
}

/// Writes Event Hub batches into the lake.
#[derive(Clone, Debug)]
pub struct Ingestor {
    settings: Arc<Settings>,
    lake: Lake,
}

impl Ingestor {
    pub fn new(settings: Arc<Settings>, lake: Lake) -> Self {
        Self { settings, lake }
    }

    pub fn lake(&self) -> &Lake {
        &self.lake
    }

    /// Writes one batch. Returns only once every event is in a data or dead-letter
    /// object and the receipt is written: the caller may then answer 2xx.
    pub async fn ingest(&self, batch: EventHubBatch) -> Result<IngestReport, IngestError> {
        let Some((first, last)) = batch.sequence_range() else {
            return Ok(IngestReport::default());
        };
        let now = Utc::now();
        let settings = self.settings.clone();
        let batch = Arc::new(batch);
        // Decoding and compression are CPU work: keep them off the async workers.
        let PreparedBatch {
            partition_id,
            objects: pending,
        } = {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || prepare_batch(&settings, &batch, now))
                .await
                .map_err(|e| IngestError::Internal(format!("encoding task failed: {e}")))??
        };

        let mut report = IngestReport {
            partition_id: partition_id.clone(),
            first_sequence_number: first,
            last_sequence_number: last,
            events: batch.events.len() as u64,
            body_bytes: batch.body_bytes() as u64,
            ..IngestReport::default()
        };
        for p in &pending {
            match p.entry.kind {
                ObjectKind::Data => report.records += p.entry.records,
                ObjectKind::DeadLetter => report.dead_letters += p.entry.records,
            }
            report.stored_bytes += p.entry.bytes;
        }

        let storage_started = std::time::Instant::now();
        let written: Vec<(PutOutcome, ReceiptObject)> = futures::stream::iter(pending.into_iter().map(|p| {
            let span = object_span(&p.entry);
            self.put_verified(p, &partition_id).instrument(span)
        }))
        .buffered(self.settings.upload_concurrency)
        .try_collect()
        .await?;
        let (outcomes, entries): (Vec<PutOutcome>, Vec<ReceiptObject>) = written.into_iter().unzip();
        report.objects_created = outcomes.iter().filter(|o| **o == PutOutcome::Created).count() as u64;
        report.objects_existing = outcomes.len() as u64 - report.objects_created;

        // The receipt is the commit record: written only after every object is durable.
        let receipt = build_receipt(&batch, &partition_id, first, last, &report, entries, now);
        report.receipt_path =
            layout::receipt_path(&receipt.eventhub, &receipt.consumer_group, &partition_id, first, last);
        self.put_receipt(&report.receipt_path, &receipt).await?;
        report.storage_time = storage_started.elapsed();
        Ok(report)
    }

    /// Create-only upload; an existing object must hold exactly this batch's events.
    /// Returns the receipt entry describing what is stored: for an object an earlier
    /// delivery wrote, its own checksum and sizes (its `processed_timestamp`s differ
    /// from this delivery's, so this delivery's bytes would not match it).
    async fn put_verified(
        &self,
        p: BuiltObject,
        partition_id: &str,
    ) -> Result<(PutOutcome, ReceiptObject), IngestError> {
        let mut entry = p.entry;
        let outcome = self.lake.put_new(&entry.path, p.bytes, &p.attrs).await?;
        if outcome == PutOutcome::AlreadyExists {
            let existing = self.lake.get(&entry.path).await?;
            let uncompressed = verify_existing(&entry.path, &existing, partition_id, &p.sequence_numbers)?;
            entry.sha256 = digest_hex(&existing);
            entry.bytes = existing.len() as u64;
            entry.uncompressed_bytes = uncompressed;
            tracing::info!(path = %entry.path, "object already written by an earlier delivery; verified");
        }
        Ok((outcome, entry))
    }

    async fn put_receipt(&self, path: &str, receipt: &Receipt) -> Result<(), IngestError> {
        let body = serde_json::to_vec_pretty(receipt).map_err(|e| IngestError::Internal(e.to_string()))?;
        let attrs = ObjectAttributes {
            content_type: "application/json",
            content_encoding: None,
            metadata: vec![
                ("partition_id", receipt.partition_id.clone()),
                ("first_sequence_number", receipt.first_sequence_number.to_string()),
                ("last_sequence_number", receipt.last_sequence_number.to_string()),
                ("writer_version", crate::WRITER_VERSION.to_string()),
            ],
        };
        if self.lake.put_new(path, Bytes::from(body), &attrs).await? == PutOutcome::AlreadyExists {
            let existing = self.lake.get(path).await?;
            let old: Receipt = serde_json::from_slice(&existing).map_err(|e| LakeError::Conflict {
                path: path.to_string(),
                reason: format!("existing receipt does not parse: {e}"),
            })?;
            if old.event_count != receipt.event_count || old.partition_id != receipt.partition_id {
                return Err(LakeError::Conflict {
                    path: path.to_string(),
                    reason: format!(
                        "existing receipt records {} events of partition {}, this batch has {} of {}",
                        old.event_count, old.partition_id, receipt.event_count, receipt.partition_id
                    ),
                }
                .into());
            }
        }
        Ok(())
    }
}

/// The span of one object's write: its route and hour reach every log line (and the
/// log stream's records) written inside it.
fn object_span(entry: &ReceiptObject) -> tracing::Span {
    let route = match (&entry.database, &entry.collection) {
        (Some(db), Some(coll)) => format!("{db}/{coll}"),
        _ => "_deadletter".to_string(),
    };
    tracing::info_span!("object", route = %route, hour = %entry.hour)
}

/// Checks that an object found in place of ours holds the same events.
/// Returns the object's uncompressed size.
fn verify_existing(path: &str, bytes: &[u8], partition_id: &str, expected: &[i64]) -> Result<u64, LakeError> {
    #[derive(Deserialize)]
    struct Key<'a> {
        #[serde(borrow)]
        partition_id: std::borrow::Cow<'a, str>,
        sequence_number: i64,
    }
    let conflict = |reason: String| LakeError::Conflict {
        path: path.to_string(),
        reason,
    };
    let text = decode_object(bytes).map_err(|e| conflict(format!("existing object does not decompress: {e}")))?;
    let mut found = Vec::with_capacity(expected.len());
    for (i, line) in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()).enumerate() {
        let key: Key = serde_json::from_slice(line).map_err(|e| conflict(format!("line {}: {e}", i + 1)))?;
        if key.partition_id != partition_id {
            return Err(conflict(format!(
                "line {} is from partition {}",
                i + 1,
                key.partition_id
            )));
        }
        found.push(key.sequence_number);
    }
    if found != expected {
        return Err(conflict(format!(
            "holds {} events ({:?}..{:?}), this batch has {} for it",
            found.len(),
            found.first(),
            found.last(),
            expected.len()
        )));
    }
    Ok(text.len() as u64)
}

/// A batch decoded, partitioned, built into objects and encoded, ready to upload.
pub struct PreparedBatch {
    /// The partition id used in names.
    pub partition_id: String,
    objects: Vec<BuiltObject>,
}

impl PreparedBatch {
    /// The objects to write, data objects in path order then dead letters.
    pub fn objects(&self) -> impl Iterator<Item = &ReceiptObject> {
        self.objects.iter().map(|p| &p.entry)
    }

    /// Each object with its bytes as they would be stored.
    pub fn contents(&self) -> impl Iterator<Item = (&ReceiptObject, &[u8])> {
        self.objects.iter().map(|p| (&p.entry, &p.bytes[..]))
    }
}

/// The CPU-bound half of [`Ingestor::ingest`], one pass per stage: decode every body,
/// partition the events into objects, build each object's records and encode them.
/// Public so benchmarks can measure it without storage.
pub fn prepare_batch(
    settings: &Settings,
    batch: &EventHubBatch,
    now: DateTime<Utc>,
) -> Result<PreparedBatch, IngestError> {
    let texts = event::body_texts(batch);
    let decoded = event::decode_batch(&texts);
    let groups = partition::partition(settings, batch, &decoded, now)?;
    let partition_id = objects::naming_partition(batch);
    let processed = format_time(now);
    let ctx = BatchContext {
        batch,
        partition_id: &partition_id,
        processed: &processed,
    };
    let objects = objects::build_objects(settings, ctx, &decoded, groups)?;
    Ok(PreparedBatch { partition_id, objects })
}

fn build_receipt(
    batch: &EventHubBatch,
    partition_id: &str,
    first: i64,
    last: i64,
    report: &IngestReport,
    objects: Vec<ReceiptObject>,
    now: DateTime<Utc>,
) -> Receipt {
    let times = batch.events.iter().filter_map(|e| e.enqueued_time);
    Receipt {
        receipt_version: Receipt::VERSION,
        writer: crate::WRITER_VERSION.to_string(),
        namespace: batch.partition.namespace.clone(),
        eventhub: batch.partition.eventhub.clone(),
        consumer_group: batch.partition.consumer_group.clone(),
        partition_id: partition_id.to_string(),
        first_sequence_number: first,
        last_sequence_number: last,
        event_count: report.events,
        dead_letter_count: report.dead_letters,
        first_enqueued_time: times.clone().min().map(format_time),
        last_enqueued_time: times.max().map(format_time),
        written_at: format_time(now),
        objects,
    }
}
