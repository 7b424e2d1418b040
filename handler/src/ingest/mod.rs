//! Ingest: an Event Hub batch becomes data objects (one per route and hour), dead-letter
//! objects for undecodable events, and finally a receipt — all create-only.

pub mod event;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::Deserialize;
use tracing::Instrument;

use crate::config::{Compression, Settings, TimeSource};
use crate::host::{EventData, EventHubBatch};
use crate::lake::encode::{decode_object, JsonLinesEncoder};
use crate::lake::layout::{self, PathValues, Token};
use crate::lake::receipt::{ObjectKind, Receipt, ReceiptObject};
use crate::lake::{digest_hex, Lake, LakeError, ObjectAttributes, PutOutcome};
use event::{Body, DeadLetter, Decoded, Parsed, Record, DEFAULT_ROUTE, NO_ROUTE};

/// Why a batch was not written.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch cannot be written as sent (answered 400).
    #[error("{0}")]
    BadBatch(String),
    /// Storage failed (answered 500 so the host retries the batch).
    #[error(transparent)]
    Lake(#[from] LakeError),
    /// A bug or a crashed worker task (answered 500).
    #[error("internal error: {0}")]
    Internal(String),
}

impl IngestError {
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::BadBatch(_) => false,
            Self::Lake(e) => e.is_retryable(),
            Self::Internal(_) => true,
        }
    }
}

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

/// An object ready to upload, with what a re-delivery must find in it.
struct PendingObject {
    entry: ReceiptObject,
    bytes: Bytes,
    attrs: ObjectAttributes,
    sequence_numbers: Vec<i64>,
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
        let (partition_id, pending) = {
            let batch = batch.clone();
            tokio::task::spawn_blocking(move || encode_batch(&settings, &batch, now))
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
        p: PendingObject,
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

/// Which object an event's record goes to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct GroupKey {
    hour: DateTime<Utc>,
    database: String,
    collection: String,
    operation: String,
}

struct Group {
    encoder: JsonLinesEncoder,
    sequence_numbers: Vec<i64>,
}

struct DeadGroup {
    lines: JsonLinesEncoder,
    sequence_numbers: Vec<i64>,
}

/// A batch decoded, routed and encoded, ready to upload.
pub struct PreparedBatch {
    /// The partition id used in names.
    pub partition_id: String,
    objects: Vec<PendingObject>,
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

/// Decodes, routes and encodes a batch: the CPU-bound half of [`Ingestor::ingest`],
/// public so benchmarks can measure it without storage.
pub fn prepare_batch(
    settings: &Settings,
    batch: &EventHubBatch,
    now: DateTime<Utc>,
) -> Result<PreparedBatch, IngestError> {
    let (partition_id, objects) = encode_batch(settings, batch, now)?;
    Ok(PreparedBatch { partition_id, objects })
}

fn encode_batch(
    settings: &Settings,
    batch: &EventHubBatch,
    now: DateTime<Utc>,
) -> Result<(String, Vec<PendingObject>), IngestError> {
    let partition_id = naming_partition(batch);
    let processed = event::format_time(now);
    let ctx = &batch.partition;
    let mut groups: Vec<(GroupKey, Group)> = Vec::new();
    let mut dead: BTreeMap<DateTime<Utc>, DeadGroup> = BTreeMap::new();
    let mut line = Vec::with_capacity(4096);
    // Start small: a batch may fan out to many routes; buffers grow as needed.
    let size_hint = (batch.body_bytes() + batch.events.len() * 400).min(1 << 20);
    let mut route_cache: Vec<(GroupKey, usize)> = Vec::new();

    for ev in &batch.events {
        let hour_of = |t: Option<DateTime<Utc>>| -> Result<DateTime<Utc>, IngestError> {
            let t = t.ok_or_else(|| {
                IngestError::BadBatch(format!(
                    "event {} has no enqueued time (Metadata.EnqueuedTimeUtcArray), which \
                     HUB2LAKE_TIME_SOURCE=enqueued needs to pick its hour",
                    ev.sequence_number
                ))
            })?;
            Ok(truncate_to_hour(t))
        };
        // Either step can find the body undecodable; both send it to the dead letters.
        let text = event::body_text(ev);
        let decoded = text.as_ref().map_err(Clone::clone).and_then(|t| event::decode(t));
        let Decoded { body, parsed } = match decoded {
            Ok(decoded) => decoded,
            Err(undecodable) => {
                dead_letter(
                    &mut dead,
                    &mut line,
                    ev,
                    undecodable,
                    batch,
                    &partition_id,
                    &processed,
                    now,
                );
                continue;
            }
        };
        let json_text = match body {
            Body::Json(j) => Some(j),
            Body::Text(_) => None,
        };
        let (database, collection) = route(settings, &parsed, json_text);
        let hour = match settings.time_source {
            TimeSource::Enqueued => hour_of(ev.enqueued_time)?,
            TimeSource::Processed => truncate_to_hour(now),
            TimeSource::ClusterTime => match parsed.cluster_time() {
                Some(t) => truncate_to_hour(t),
                None => hour_of(ev.enqueued_time)?,
            },
        };
        // Split by operation only when the layout asks for it.
        let operation = match settings.path_template.uses(Token::Operation) {
            true => parsed.operation_type.as_deref().unwrap_or(DEFAULT_ROUTE),
            false => "",
        };
        // Most events of a batch share a few routes: find the group by the raw route
        // without sanitising or allocating per event.
        let known = route_cache.iter().find(|(raw, _)| {
            raw.hour == hour && raw.database == database && raw.collection == collection && raw.operation == operation
        });
        let index = match known {
            Some((_, index)) => *index,
            None => {
                let key = GroupKey {
                    hour,
                    database: layout::sanitize_segment(&database),
                    collection: layout::sanitize_segment(&collection),
                    operation: if operation.is_empty() {
                        String::new()
                    } else {
                        layout::sanitize_segment(operation)
                    },
                };
                // Distinct raw values can sanitise alike ("a/b", "a_b"): one group.
                let index = match groups.iter().position(|(k, _)| *k == key) {
                    Some(i) => i,
                    None => {
                        let group = Group {
                            encoder: JsonLinesEncoder::new(settings.compression, size_hint),
                            sequence_numbers: Vec::new(),
                        };
                        groups.push((key, group));
                        groups.len() - 1
                    }
                };
                let raw = GroupKey {
                    hour,
                    database: database.to_string(),
                    collection: collection.to_string(),
                    operation: operation.to_string(),
                };
                route_cache.push((raw, index));
                index
            }
        };
        let group = &mut groups[index].1;
        group
            .encoder
            .push_with(|out| write_record(out, ev, body, &parsed, batch, &partition_id, &processed));
        group.sequence_numbers.push(ev.sequence_number);
    }

    let mut pending = Vec::with_capacity(groups.len() + dead.len());
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    for (key, group) in groups {
        let (first, last) = seq_bounds(&group.sequence_numbers);
        let path = settings.path_template.render(
            &PathValues {
                database: &key.database,
                collection: &key.collection,
                operation: &key.operation,
                eventhub: &ctx.eventhub,
                partition: &partition_id,
                hour: key.hour,
                first_seq: first,
                last_seq: last,
            },
            settings.compression.extension(),
        );
        pending.push(pending_object(
            path,
            ObjectKind::Data,
            Some((key.database, key.collection)),
            key.hour,
            group.encoder,
            group.sequence_numbers,
            settings.compression,
            &partition_id,
        ));
    }
    for (hour, group) in dead {
        let (first, last) = seq_bounds(&group.sequence_numbers);
        let path = layout::deadletter_path(hour, &partition_id, first, last);
        pending.push(pending_object(
            path,
            ObjectKind::DeadLetter,
            None,
            hour,
            group.lines,
            group.sequence_numbers,
            Compression::None,
            &partition_id,
        ));
    }
    check_unique_paths(&pending)?;
    Ok((partition_id, pending))
}

/// Two groups rendering to one path would overwrite each other's promise; a template
/// that drops a routing token while keeping others can do that.
fn check_unique_paths(pending: &[PendingObject]) -> Result<(), IngestError> {
    let mut seen = HashSet::new();
    for p in pending {
        if !seen.insert(p.entry.path.as_str()) {
            return Err(IngestError::BadBatch(format!(
                "two groups of this batch map to the same object {}; HUB2LAKE_PATH_TEMPLATE must \
                 separate routes and hours it does not name (add {{hh}} or the route tokens)",
                p.entry.path
            )));
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn pending_object(
    path: String,
    kind: ObjectKind,
    route: Option<(String, String)>,
    hour: DateTime<Utc>,
    encoder: JsonLinesEncoder,
    sequence_numbers: Vec<i64>,
    compression: Compression,
    partition_id: &str,
) -> PendingObject {
    let (first, last) = seq_bounds(&sequence_numbers);
    let encoded = encoder.finish();
    let sha256 = digest_hex(&encoded.bytes);
    let (database, collection) = route.unzip();
    let entry = ReceiptObject {
        path,
        kind,
        database,
        collection,
        hour: event::format_time(hour),
        records: encoded.records,
        first_sequence_number: first,
        last_sequence_number: last,
        bytes: encoded.bytes.len() as u64,
        uncompressed_bytes: encoded.uncompressed_bytes,
        sha256,
    };
    let attrs = ObjectAttributes {
        content_type: "application/x-ndjson",
        content_encoding: matches!(compression, Compression::Gzip { .. }).then_some("gzip"),
        metadata: vec![
            ("record_count", entry.records.to_string()),
            ("first_sequence_number", first.to_string()),
            ("last_sequence_number", last.to_string()),
            ("partition_id", partition_id.to_string()),
            ("uncompressed_bytes", entry.uncompressed_bytes.to_string()),
            ("stored_bytes", entry.bytes.to_string()),
            ("sha256", entry.sha256.clone()),
            ("writer_version", crate::WRITER_VERSION.to_string()),
        ],
    };
    PendingObject {
        entry,
        bytes: Bytes::from(encoded.bytes),
        attrs,
        sequence_numbers,
    }
}

fn seq_bounds(seqs: &[i64]) -> (i64, i64) {
    (seqs.first().copied().unwrap_or(0), seqs.last().copied().unwrap_or(0))
}

/// The partition id in object names. Without a partition context, a digest of the
/// batch keeps names unique across partitions and stable across re-deliveries.
fn naming_partition(batch: &EventHubBatch) -> String {
    match &batch.partition.partition_id {
        Some(p) => p.clone(),
        None => {
            let mut hasher_input = Vec::new();
            for ev in &batch.events {
                hasher_input.extend_from_slice(&ev.sequence_number.to_le_bytes());
                hasher_input.extend_from_slice(event::raw_bytes(&ev.body));
            }
            format!("unknown~{}", &digest_hex(&hasher_input)[..12])
        }
    }
}

fn truncate_to_hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t)
}

/// (database, collection) of an event, unsanitised.
fn route<'a>(
    settings: &Settings,
    parsed: &'a Parsed<'a>,
    json: Option<&str>,
) -> (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>) {
    use std::borrow::Cow;
    if parsed.is_change_event {
        return (
            parsed.database.clone().unwrap_or(Cow::Borrowed(NO_ROUTE)),
            parsed.collection.clone().unwrap_or(Cow::Borrowed(NO_ROUTE)),
        );
    }
    let by_pointer = |pointer: &Option<String>| -> Cow<'a, str> {
        pointer
            .as_deref()
            .zip(json)
            .and_then(|(p, j)| event::route_by_pointer(j, p))
            .map(Cow::Owned)
            .unwrap_or(Cow::Borrowed(DEFAULT_ROUTE))
    };
    (
        by_pointer(&settings.route_database_pointer),
        by_pointer(&settings.route_collection_pointer),
    )
}

fn write_record(
    out: &mut Vec<u8>,
    ev: &EventData,
    body: Body<'_>,
    parsed: &Parsed<'_>,
    batch: &EventHubBatch,
    partition_id: &str,
    processed: &str,
) {
    let fallback_id;
    let event_id = match &parsed.resume_token {
        Some(token) => token.as_ref(),
        None => {
            fallback_id = format!(
                "{}:{}:{}:{}",
                batch.partition.namespace.as_deref().unwrap_or("-"),
                batch.partition.eventhub,
                partition_id,
                ev.sequence_number
            );
            &fallback_id
        }
    };
    let enqueued = ev.enqueued_time.map(event::format_time);
    Record {
        event_id,
        processed_timestamp: processed,
        partition_id,
        offset: ev.offset.as_deref(),
        sequence_number: ev.sequence_number,
        enqueued_time: enqueued.as_deref(),
        parsed,
        body,
        partition_key: ev.partition_key.as_deref(),
        properties: ev.properties.as_deref(),
    }
    .write(out);
}

#[allow(clippy::too_many_arguments)]
fn dead_letter(
    dead: &mut BTreeMap<DateTime<Utc>, DeadGroup>,
    line: &mut Vec<u8>,
    ev: &EventData,
    event::Undecodable(reason): event::Undecodable,
    batch: &EventHubBatch,
    partition_id: &str,
    processed: &str,
    now: DateTime<Utc>,
) {
    let hour = truncate_to_hour(ev.enqueued_time.unwrap_or(now));
    let group = dead.entry(hour).or_insert_with(|| DeadGroup {
        lines: JsonLinesEncoder::new(Compression::None, 0),
        sequence_numbers: Vec::new(),
    });
    line.clear();
    write_dead_letter(line, ev, reason, batch, partition_id, processed);
    group.lines.push_line(line);
    group.sequence_numbers.push(ev.sequence_number);
}

fn write_dead_letter(
    out: &mut Vec<u8>,
    ev: &EventData,
    reason: String,
    batch: &EventHubBatch,
    partition_id: &str,
    processed: &str,
) {
    let raw = event::raw_bytes(&ev.body);
    let letter = DeadLetter {
        reason,
        eventhub: batch.partition.eventhub.clone(),
        consumer_group: batch.partition.consumer_group.clone(),
        partition_id: partition_id.to_string(),
        sequence_number: ev.sequence_number,
        offset: ev.offset.clone(),
        enqueued_time: ev.enqueued_time.map(event::format_time),
        partition_key: ev.partition_key.clone(),
        properties: ev.properties.clone(),
        processed_timestamp: processed.to_string(),
        raw_body_base64: base64::engine::general_purpose::STANDARD.encode(raw),
        raw_body_text: std::str::from_utf8(raw).ok().map(str::to_string),
    };
    // A struct of strings and raw JSON always serialises.
    let _ = serde_json::to_writer(&mut *out, &letter);
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
        first_enqueued_time: times.clone().min().map(event::format_time),
        last_enqueued_time: times.max().map(event::format_time),
        written_at: event::format_time(now),
        objects,
    }
}
