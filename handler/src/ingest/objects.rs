//! The object builder: groups of a batch's events become the objects to upload, each
//! with its records encoded, its name, its receipt entry and its attributes. Pure: no
//! storage. Records are built one line at a time and handed to the encoder.

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};

use super::cores::EncodingThreads;
use super::error::IngestError;
use super::event::{self, Body, DeadLetter, Decoded, Parsed, Record, Undecodable};
use super::partition::{DataGroup, DeadGroup, Groups};
use crate::config::{Compression, Settings};
use crate::host::{EventData, EventHubBatch};
use crate::lake::encode::{EncodedObject, JsonLinesEncoder};
use crate::lake::layout::{self, PathValues};
use crate::lake::receipt::{ObjectKind, ReceiptObject};
use crate::lake::{digest_hex, ObjectAttributes};
use crate::time::format_time;

/// An object ready to upload, with what a re-delivery must find in it.
#[derive(Debug, Clone)]
pub struct BuiltObject {
    /// What the receipt records about it (its path first).
    pub entry: ReceiptObject,
    pub bytes: Bytes,
    pub attrs: ObjectAttributes,
    /// The sequence numbers of its events, in record order.
    pub sequence_numbers: Vec<i64>,
}

/// What every record and object of one batch shares.
#[derive(Debug, Clone, Copy)]
pub struct BatchContext<'a> {
    pub batch: &'a EventHubBatch,
    /// The partition id in names, records and metadata ([`naming_partition`]).
    pub partition_id: &'a str,
    /// When the batch was processed, as records write it.
    pub processed: &'a str,
}

/// Builds every object of a batch: data objects in key order, then dead letters by
/// hour. `decoded[i]` is event `i` of the batch, as the partitioner saw it.
pub fn build_objects(
    settings: &Settings,
    ctx: BatchContext<'_>,
    decoded: &[Result<Decoded<'_>, Undecodable>],
    groups: Groups,
) -> Result<Vec<BuiltObject>, IngestError> {
    // Start small: a batch may fan out to many routes; buffers grow as needed.
    let batch = ctx.batch;
    let size_hint = (batch.body_bytes() + batch.events.len() * 400).min(1 << 20);
    let mut line = Vec::with_capacity(4096);
    let threads = EncodingThreads::claim(groups.data.len().saturating_sub(1));
    let mut objects = encode_in_lanes(settings, ctx, decoded, groups.data, size_hint, 1 + threads.extra())?;
    drop(threads);
    objects.reserve(groups.dead.len());
    for group in groups.dead {
        objects.push(dead_letter_object(ctx, decoded, group, &mut line)?);
    }
    check_unique_paths(&objects)?;
    Ok(objects)
}

/// Builds the data objects in `groups`' order on `lanes` threads (this one included):
/// with idle cores a batch that spreads over several routes and hours waits for its
/// largest object rather than for all of them in turn.
fn encode_in_lanes(
    settings: &Settings,
    ctx: BatchContext<'_>,
    decoded: &[Result<Decoded<'_>, Undecodable>],
    groups: Vec<DataGroup>,
    size_hint: usize,
    lanes: usize,
) -> Result<Vec<BuiltObject>, IngestError> {
    let queue = Mutex::new(balanced_lanes(groups, lanes));
    // Every thread, this one included, takes lanes until none is left: a helper that
    // cannot start leaves its lane to the others, with no special case.
    let encode_lanes = || -> Result<Vec<(usize, BuiltObject)>, IngestError> {
        let mut line = Vec::with_capacity(4096);
        let mut built = Vec::new();
        while let Some(lane) = queue.lock().unwrap_or_else(PoisonError::into_inner).pop() {
            for (i, group) in lane {
                built.push((i, data_object(settings, ctx, decoded, group, size_hint, &mut line)?));
            }
        }
        Ok(built)
    };
    let mut built = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..lanes)
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("hub2lake-encode".into())
                    .spawn_scoped(scope, encode_lanes)
                    .ok()
            })
            .collect();
        let mut built = encode_lanes()?;
        for helper in helpers {
            built.extend(
                helper
                    .join()
                    .map_err(|_| IngestError::Internal("an encoding thread panicked".into()))??,
            );
        }
        Ok::<_, IngestError>(built)
    })?;
    built.sort_unstable_by_key(|(i, _)| *i);
    Ok(built.into_iter().map(|(_, object)| object).collect())
}

/// Splits groups over `lanes` threads, largest first onto the least loaded lane, each
/// group tagged with its position so results can be put back in order.
fn balanced_lanes(groups: Vec<DataGroup>, lanes: usize) -> Vec<Vec<(usize, DataGroup)>> {
    let mut indexed: Vec<(usize, DataGroup)> = groups.into_iter().enumerate().collect();
    indexed.sort_by_key(|(_, g)| std::cmp::Reverse(g.events.len()));
    let mut out: Vec<(usize, Vec<(usize, DataGroup)>)> = (0..lanes.max(1)).map(|_| (0, Vec::new())).collect();
    for item in indexed {
        if let Some(lane) = out.iter_mut().min_by_key(|(load, _)| *load) {
            lane.0 += item.1.events.len();
            lane.1.push(item);
        }
    }
    out.into_iter()
        .map(|(_, lane)| lane)
        .filter(|lane| !lane.is_empty())
        .collect()
}

fn data_object(
    settings: &Settings,
    ctx: BatchContext<'_>,
    decoded: &[Result<Decoded<'_>, Undecodable>],
    group: DataGroup,
    size_hint: usize,
    line: &mut Vec<u8>,
) -> Result<BuiltObject, IngestError> {
    let mut encoder = JsonLinesEncoder::new(settings.compression, size_hint);
    let mut sequence_numbers = Vec::with_capacity(group.events.len());
    for &index in &group.events {
        let (ev, Ok(Decoded { body, parsed })) = (&ctx.batch.events[index], &decoded[index]) else {
            return Err(IngestError::Internal(format!(
                "event {index} of a data group did not decode"
            )));
        };
        line.clear();
        write_record(line, ctx, ev, *body, parsed);
        encoder.push_line(line);
        sequence_numbers.push(ev.sequence_number);
    }
    let (first, last) = seq_bounds(&sequence_numbers);
    let key = group.key;
    let path = layout::render(
        &settings.path_template,
        &PathValues {
            database: &key.database,
            collection: &key.collection,
            operation: &key.operation,
            eventhub: &ctx.batch.partition.eventhub,
            partition: ctx.partition_id,
            hour: key.hour,
            first_seq: first,
            last_seq: last,
        },
        settings.compression.extension(),
    );
    let shape = Shape {
        path,
        kind: ObjectKind::Data,
        route: Some((key.database, key.collection)),
        hour: key.hour,
        compression: settings.compression,
    };
    Ok(finish(shape, encoder.finish(), sequence_numbers, ctx.partition_id))
}

fn dead_letter_object(
    ctx: BatchContext<'_>,
    decoded: &[Result<Decoded<'_>, Undecodable>],
    group: DeadGroup,
    line: &mut Vec<u8>,
) -> Result<BuiltObject, IngestError> {
    let mut lines = JsonLinesEncoder::new(Compression::None, 0);
    let mut sequence_numbers = Vec::with_capacity(group.events.len());
    for &index in &group.events {
        let (ev, Err(Undecodable(reason))) = (&ctx.batch.events[index], &decoded[index]) else {
            return Err(IngestError::Internal(format!(
                "event {index} of a dead-letter group decoded"
            )));
        };
        line.clear();
        write_dead_letter(line, ctx, ev, reason);
        lines.push_line(line);
        sequence_numbers.push(ev.sequence_number);
    }
    let (first, last) = seq_bounds(&sequence_numbers);
    let shape = Shape {
        path: layout::deadletter_path(group.hour, ctx.partition_id, first, last),
        kind: ObjectKind::DeadLetter,
        route: None,
        hour: group.hour,
        compression: Compression::None,
    };
    Ok(finish(shape, lines.finish(), sequence_numbers, ctx.partition_id))
}

/// Two groups rendering to one path would overwrite each other's promise; a template
/// that drops a routing token while keeping others can do that.
fn check_unique_paths(objects: &[BuiltObject]) -> Result<(), IngestError> {
    let mut seen = HashSet::new();
    for o in objects {
        if !seen.insert(o.entry.path.as_str()) {
            return Err(IngestError::BadBatch(format!(
                "two groups of this batch map to the same object {}; HUB2LAKE_PATH_TEMPLATE must \
                 separate routes and hours it does not name (add {{hh}} or the route tokens)",
                o.entry.path
            )));
        }
    }
    Ok(())
}

/// What an object is, apart from its bytes.
struct Shape {
    path: String,
    kind: ObjectKind,
    /// (database, collection) of a data object, sanitised as in its path.
    route: Option<(String, String)>,
    hour: DateTime<Utc>,
    compression: Compression,
}

fn finish(shape: Shape, encoded: EncodedObject, sequence_numbers: Vec<i64>, partition_id: &str) -> BuiltObject {
    let (first, last) = seq_bounds(&sequence_numbers);
    let sha256 = digest_hex(&encoded.bytes);
    let (database, collection) = shape.route.unzip();
    let entry = ReceiptObject {
        path: shape.path,
        kind: shape.kind,
        database,
        collection,
        hour: format_time(shape.hour),
        records: encoded.records,
        first_sequence_number: first,
        last_sequence_number: last,
        bytes: encoded.bytes.len() as u64,
        uncompressed_bytes: encoded.uncompressed_bytes,
        sha256,
    };
    let attrs = ObjectAttributes {
        content_type: "application/x-ndjson",
        content_encoding: shape.compression.content_encoding(),
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
    BuiltObject {
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
pub fn naming_partition(batch: &EventHubBatch) -> String {
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

fn write_record(out: &mut Vec<u8>, ctx: BatchContext<'_>, ev: &EventData, body: Body<'_>, parsed: &Parsed<'_>) {
    let fallback_id;
    let event_id = match &parsed.resume_token {
        Some(token) => token.as_ref(),
        None => {
            fallback_id = format!(
                "{}:{}:{}:{}",
                ctx.batch.partition.namespace.as_deref().unwrap_or("-"),
                ctx.batch.partition.eventhub,
                ctx.partition_id,
                ev.sequence_number
            );
            &fallback_id
        }
    };
    let enqueued = ev.enqueued_time.map(format_time);
    Record {
        event_id,
        processed_timestamp: ctx.processed,
        partition_id: ctx.partition_id,
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

fn write_dead_letter(out: &mut Vec<u8>, ctx: BatchContext<'_>, ev: &EventData, reason: &str) {
    let raw = event::raw_bytes(&ev.body);
    let letter = DeadLetter {
        reason: reason.to_string(),
        eventhub: ctx.batch.partition.eventhub.clone(),
        consumer_group: ctx.batch.partition.consumer_group.clone(),
        partition_id: ctx.partition_id.to_string(),
        sequence_number: ev.sequence_number,
        offset: ev.offset.clone(),
        enqueued_time: ev.enqueued_time.map(format_time),
        partition_key: ev.partition_key.clone(),
        properties: ev.properties.clone(),
        processed_timestamp: ctx.processed.to_string(),
        raw_body_base64: base64::engine::general_purpose::STANDARD.encode(raw),
        raw_body_text: std::str::from_utf8(raw).ok().map(str::to_string),
    };
    // A struct of strings and raw JSON always serialises.
    let _ = serde_json::to_writer(&mut *out, &letter);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathTemplate;
    use crate::host::EventBody;
    use crate::ingest::event::{body_texts, decode_batch};
    use crate::ingest::fixtures::batch;
    use crate::ingest::partition::{partition, GroupKey};
    use crate::lake::encode::decode_object;
    use chrono::TimeZone;

    fn hour(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, h, 0, 0).unwrap()
    }

    fn event(seq: i64, body: &str) -> EventData {
        EventData {
            body: EventBody::Text(body.into()),
            sequence_number: seq,
            offset: Some(format!("{}", seq * 100)),
            enqueued_time: Some(hour(10) + chrono::TimeDelta::seconds(seq)),
            partition_key: None,
            properties: None,
        }
    }

    fn ctx(batch: &EventHubBatch) -> BatchContext<'_> {
        BatchContext {
            batch,
            partition_id: "3",
            processed: "2025-01-15T12:00:00.000Z",
        }
    }

    fn built(settings: &Settings, batch: &EventHubBatch) -> Result<Vec<BuiltObject>, IngestError> {
        let texts = body_texts(batch);
        let decoded = decode_batch(&texts);
        let groups = partition(settings, batch, &decoded, hour(12))?;
        build_objects(settings, ctx(batch), &decoded, groups)
    }

    fn lines(o: &BuiltObject) -> Vec<serde_json::Value> {
        let text = decode_object(&o.bytes).unwrap();
        text.split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    #[test]
    fn lanes_hold_every_group_once_largest_first_on_the_least_loaded() {
        let group = |n: usize| DataGroup {
            key: GroupKey {
                hour: hour(10),
                database: "d".into(),
                collection: format!("c{n}"),
                operation: String::new(),
            },
            events: (0..n).collect(),
        };
        let lanes = balanced_lanes([5, 1, 3, 4, 3].map(group).to_vec(), 2);
        let loads: Vec<usize> = lanes
            .iter()
            .map(|l| l.iter().map(|(_, g)| g.events.len()).sum())
            .collect();
        assert_eq!(loads, [8, 8]);
        let mut positions: Vec<usize> = lanes.iter().flatten().map(|(i, _)| *i).collect();
        positions.sort_unstable();
        assert_eq!(positions, [0, 1, 2, 3, 4]);
        assert_eq!(balanced_lanes(vec![group(2)], 4).len(), 1, "no empty lanes");
        assert!(balanced_lanes(Vec::new(), 3).is_empty());
    }

    #[test]
    fn objects_encoded_on_several_threads_are_those_of_one_thread_in_the_same_order() {
        let routes = ["a", "b", "c", "d", "e", "f", "g"];
        let b = batch(
            (0..700)
                .map(|i| {
                    let coll = routes[(i * 7 + i / 3) as usize % routes.len()];
                    event(
                        i,
                        &format!(r#"{{"operationType":"insert","ns":{{"db":"shop","coll":"{coll}"}},"n":{i}}}"#),
                    )
                })
                .collect(),
        );
        let settings = Settings::local("/unused");
        let texts = body_texts(&b);
        let decoded = decode_batch(&texts);
        let encode = |lanes| {
            let groups = partition(&settings, &b, &decoded, hour(12)).unwrap();
            encode_in_lanes(&settings, ctx(&b), &decoded, groups.data, 1 << 16, lanes).unwrap()
        };
        let one = encode(1);
        assert_eq!(one.len(), routes.len());
        for lanes in [2, 3, 16] {
            let many = encode(lanes);
            let summary = |objects: &[BuiltObject]| -> Vec<(String, String, Vec<i64>)> {
                objects
                    .iter()
                    .map(|o| (o.entry.path.clone(), o.entry.sha256.clone(), o.sequence_numbers.clone()))
                    .collect()
            };
            assert_eq!(summary(&many), summary(&one), "{lanes} lanes");
        }
    }

    #[test]
    fn a_group_becomes_one_named_object_whose_entry_describes_its_bytes() {
        let b = batch(vec![
            event(
                41,
                r#"{"_id":{"_data":"T41"},"operationType":"insert","ns":{"db":"shop","coll":"orders"}}"#,
            ),
            event(
                42,
                r#"{"_id":{"_data":"T42"},"operationType":"update","ns":{"db":"shop","coll":"orders"}}"#,
            ),
        ]);
        let objects = built(&Settings::local("/unused"), &b).unwrap();
        assert_eq!(objects.len(), 1);
        let o = &objects[0];
        assert_eq!(o.entry.path, "shop/orders/2025/01/15/10/3-41-42.jsonl.gz");
        assert_eq!(
            (o.entry.kind, o.entry.hour.as_str()),
            (ObjectKind::Data, "2025-01-15T10:00:00.000Z")
        );
        assert_eq!(
            (o.entry.database.as_deref(), o.entry.collection.as_deref()),
            (Some("shop"), Some("orders"))
        );
        assert_eq!(o.entry.sha256, digest_hex(&o.bytes));
        assert_eq!(o.entry.bytes, o.bytes.len() as u64);
        assert_eq!(o.sequence_numbers, vec![41, 42]);
        assert_eq!(o.attrs.content_encoding, Some("gzip"));
        assert!(o.attrs.metadata.contains(&("record_count", "2".to_string())));
        let records = lines(o);
        assert_eq!(records[0]["event_id"], "T41");
        assert_eq!(records[1]["operation_type"], "update");
        assert_eq!(records[1]["processed_timestamp"], "2025-01-15T12:00:00.000Z");
        assert_eq!(records[0]["offset"], "4100");
    }

    #[test]
    fn the_operation_token_names_one_object_per_operation() {
        let mut settings = Settings::local("/unused");
        settings.compression = Compression::None;
        settings.path_template =
            PathTemplate::parse("{database}/{operation}/{yyyy}{mm}{dd}{hh}/{partition}-{first_seq}-{last_seq}")
                .unwrap();
        let b = batch(vec![
            event(1, r#"{"operationType":"insert","ns":{"db":"d","coll":"c"}}"#),
            event(2, r#"{"operationType":"delete","ns":{"db":"d","coll":"c"}}"#),
            event(3, r#"{"operationType":"insert","ns":{"db":"d","coll":"c"}}"#),
        ]);
        let objects = built(&settings, &b).unwrap();
        let paths: Vec<_> = objects.iter().map(|o| o.entry.path.as_str()).collect();
        assert_eq!(
            paths,
            ["d/delete/2025011510/3-2-2.jsonl", "d/insert/2025011510/3-1-3.jsonl"]
        );
        assert_eq!(objects[1].entry.records, 2);
        assert_eq!(objects[1].attrs.content_encoding, None);
    }

    #[test]
    fn raw_values_that_sanitise_alike_share_an_object_and_keep_their_own_values() {
        let b = batch(vec![
            event(1, r#"{"operationType":"insert","ns":{"db":"a/b","coll":"c"}}"#),
            event(2, r#"{"operationType":"insert","ns":{"db":"a_b","coll":"c"}}"#),
        ]);
        let objects = built(&Settings::local("/unused"), &b).unwrap();
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].entry.path, "a_b/c/2025/01/15/10/3-1-2.jsonl.gz");
        let records = lines(&objects[0]);
        assert_eq!(
            (
                records[0]["database_name"].as_str(),
                records[1]["database_name"].as_str()
            ),
            (Some("a/b"), Some("a_b"))
        );
    }

    #[test]
    fn undecodable_events_become_an_uncompressed_dead_letter_object_after_the_data() {
        let b = batch(vec![event(5, "{\"cut\": "), event(6, "plain")]);
        let objects = built(&Settings::local("/unused"), &b).unwrap();
        let kinds: Vec<_> = objects.iter().map(|o| (o.entry.kind, o.entry.path.as_str())).collect();
        assert_eq!(
            kinds,
            [
                (ObjectKind::Data, "unrouted/unrouted/2025/01/15/10/3-6-6.jsonl.gz"),
                (ObjectKind::DeadLetter, "_deadletter/2025/01/15/10/3-5-5.jsonl"),
            ]
        );
        let letter = &lines(&objects[1])[0];
        assert!(
            letter["reason"].as_str().unwrap().contains("not valid JSON"),
            "{letter}"
        );
        assert_eq!(letter["raw_body_text"], "{\"cut\": ");
        assert_eq!(objects[1].attrs.content_encoding, None);
    }

    #[test]
    fn groups_that_render_to_one_path_refuse_the_batch() {
        let mut settings = Settings::local("/unused");
        settings.path_template = PathTemplate::parse("{database}/{partition}-{first_seq}-{last_seq}").unwrap();
        let b = batch(vec![event(1, "{}")]);
        let texts = body_texts(&b);
        let decoded = decode_batch(&texts);
        let key = |collection: &str| GroupKey {
            hour: hour(10),
            database: "d".into(),
            collection: collection.into(),
            operation: String::new(),
        };
        let groups = Groups {
            data: vec![
                DataGroup {
                    key: key("a"),
                    events: vec![0],
                },
                DataGroup {
                    key: key("b"),
                    events: vec![0],
                },
            ],
            dead: Vec::new(),
        };
        match build_objects(&settings, ctx(&b), &decoded, groups) {
            Err(IngestError::BadBatch(m)) => assert!(m.contains("d/3-1-1.jsonl.gz"), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn batches_without_a_partition_id_are_named_by_a_digest_of_their_events() {
        let mut b = batch(vec![event(1, "{}")]);
        b.partition.partition_id = None;
        let name = naming_partition(&b);
        assert!(
            name.starts_with("unknown~") && name.len() == "unknown~".len() + 12,
            "{name}"
        );
        assert_eq!(naming_partition(&b), name);
        b.events[0].sequence_number = 2;
        assert_ne!(naming_partition(&b), name);
    }
}
