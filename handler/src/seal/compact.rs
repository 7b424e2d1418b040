//! Streaming merge with de-duplication: the unit's objects are read one line at a
//! time and merged in (partition, sequence number) order, so a copy of an event is
//! always next to the original and is dropped by comparing with the previous key.
//!
//! Memory stays bounded by the objects open at once (each held compressed, plus a
//! decoder) and the output object being built: sources are opened lazily, only when
//! the merge reaches their first key. Batches of one partition are sorted and mostly
//! disjoint, so usually one or two sources are open; overlapping re-deliveries add
//! one source each while their ranges overlap. No set of keys is kept.
//!
//! Lines are copied byte for byte; only `partition_id` and `sequence_number` are
//! read from them. The code is synchronous (CPU-bound gunzip/gzip) and reaches the
//! lake through [`ObjectIo`], which the caller bridges to the async `Lake`.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::io::{BufRead, Read};

use bytes::{Buf, Bytes};
use serde::Deserialize;

use super::completeness::partition_cmp;
use super::error::SealError;
use super::manifest::{part_path, ManifestObject, PartitionSummary};
use crate::config::Compression;
use crate::lake::codec::{decoding_reader, CompressingWriter};
use crate::lake::{digest_hex, ObjectAttributes};

/// The order of records: partition (numerically), then sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub partition: String,
    pub seq: i64,
}

impl Ord for Key {
    fn cmp(&self, other: &Self) -> Ordering {
        partition_cmp(&self.partition, &other.partition).then(self.seq.cmp(&other.seq))
    }
}

impl PartialOrd for Key {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// An object to merge, with what its receipt or manifest promises about it.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: String,
    /// Key of its first record: sources are opened when the merge reaches it.
    pub first: Key,
    pub sha256: String,
    pub records: u64,
    /// For raw objects: the one partition every line must belong to.
    pub partition: Option<String>,
}

/// What a create-only put of a compacted object found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutResult {
    Created,
    /// A crashed earlier run left the same bytes under this name.
    Identical,
    /// A crashed earlier run left other bytes (its inputs differed): replaced. Safe,
    /// because no manifest lists objects of a generation that has no manifest yet.
    Replaced,
}

/// The merge's access to the lake.
pub trait ObjectIo {
    fn get(&mut self, path: &str) -> Result<Bytes, SealError>;
    /// Create-only put; an existing object is verified by SHA-256 or replaced.
    fn put(&mut self, path: &str, bytes: Bytes, attrs: &ObjectAttributes) -> Result<PutResult, SealError>;
}

/// Where and how to write compacted objects.
#[derive(Debug, Clone)]
pub struct PartSpec {
    pub dir: String,
    pub generation: u64,
    pub compression: Compression,
    /// Roll to the next object once this many stored bytes are written.
    pub target_bytes: u64,
}

/// The result of a merge.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MergeOutput {
    /// Compacted objects written (empty when only counting).
    pub objects: Vec<ManifestObject>,
    /// Distinct records per partition, in record order.
    pub partitions: Vec<PartitionSummary>,
    pub records: u64,
    pub duplicates: u64,
    pub objects_reused: u64,
    pub objects_replaced: u64,
}

/// Merges `sources`, de-duplicating by (partition id, sequence number) and keeping the
/// copy from the source that sorts first (by first key, then path): deterministic, so
/// a re-run over the same inputs writes the same bytes. With `out` the result is
/// written as compacted objects; without, records are only counted.
pub fn merge(io: &mut dyn ObjectIo, mut sources: Vec<Source>, out: Option<PartSpec>) -> Result<MergeOutput, SealError> {
    sources.sort_by(|a, b| a.first.cmp(&b.first).then_with(|| a.path.cmp(&b.path)));
    let mut writer = out.map(PartWriter::new);
    let mut result = MergeOutput::default();
    let mut cursors: Vec<Option<Cursor>> = (0..sources.len()).map(|_| None).collect();
    let mut heap: BinaryHeap<Reverse<(Key, usize)>> = BinaryHeap::new();
    let mut next = 0;
    let mut last: Option<Key> = None;
    loop {
        // Open every source that may hold the smallest key; the rest start later.
        while next < sources.len() && heap.peek().is_none_or(|Reverse((top, _))| sources[next].first <= *top) {
            let cursor = Cursor::open(io, &sources[next])?;
            if let Some(c) = cursor {
                heap.push(Reverse((c.key.clone(), next)));
                cursors[next] = Some(c);
            }
            next += 1;
        }
        let Some(Reverse((key, i))) = heap.pop() else { break };
        let cursor = cursors[i]
            .as_mut()
            .ok_or_else(|| SealError::Internal("merge lost a cursor".into()))?;
        if last.as_ref() == Some(&key) {
            result.duplicates += 1;
        } else {
            if last.as_ref().is_some_and(|l| key < *l) {
                return Err(corrupt(
                    &sources[i].path,
                    "records are not in (partition, sequence number) order",
                ));
            }
            count(&mut result.partitions, &key);
            result.records += 1;
            if let Some(w) = writer.as_mut() {
                w.push(io, &key, cursor.line())?;
            }
            last = Some(key);
        }
        if cursor.advance(&sources[i])? {
            heap.push(Reverse((cursor.key.clone(), i)));
        } else {
            cursor.finish(&sources[i])?;
            // Dropping the cursor frees its object.
            cursors[i] = None;
        }
    }
    if let Some(mut w) = writer {
        w.flush(io)?;
        result.objects = w.objects;
        result.objects_reused = w.reused;
        result.objects_replaced = w.replaced;
    }
    Ok(result)
}

fn corrupt(path: &str, reason: impl Into<String>) -> SealError {
    SealError::Corrupt {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// Adds one record to per-partition counts kept in record order.
fn count(partitions: &mut Vec<PartitionSummary>, key: &Key) {
    match partitions.last_mut() {
        Some(p) if p.partition_id == key.partition => {
            p.records += 1;
            p.last_sequence_number = key.seq;
        }
        _ => partitions.push(PartitionSummary {
            partition_id: key.partition.clone(),
            records: 1,
            first_sequence_number: key.seq,
            last_sequence_number: key.seq,
        }),
    }
}

/// The two fields of a record the merge needs; the rest is skipped unparsed.
#[derive(Deserialize)]
struct LineKey<'a> {
    #[serde(borrow)]
    partition_id: std::borrow::Cow<'a, str>,
    sequence_number: i64,
}

/// Reads one source line by line.
struct Cursor {
    reader: Box<dyn BufRead + Send>,
    line: Vec<u8>,
    key: Key,
    line_no: u64,
}

impl Cursor {
    /// Fetches and verifies the object, and reads its first record (`None`: empty).
    fn open(io: &mut dyn ObjectIo, src: &Source) -> Result<Option<Self>, SealError> {
        let bytes = io.get(&src.path)?;
        let sha = digest_hex(&bytes);
        if sha != src.sha256 {
            return Err(corrupt(
                &src.path,
                format!("SHA-256 is {sha}, its receipt or manifest says {}", src.sha256),
            ));
        }
        // Either encoding (and plain) as the object's first bytes say: an hour may
        // hold objects written before HUB2LAKE_COMPRESSION changed.
        let reader = decoding_reader(bytes.reader())
            .map_err(|e| corrupt(&src.path, format!("cannot start decompressing: {e}")))?;
        let mut cursor = Self {
            reader,
            line: Vec::with_capacity(1024),
            key: src.first.clone(),
            line_no: 0,
        };
        if !cursor.read_next(src)? {
            cursor.finish(src)?;
            return Ok(None);
        }
        if cursor.key != src.first {
            return Err(corrupt(
                &src.path,
                format!(
                    "first record is partition {} seq {}, expected partition {} seq {}",
                    cursor.key.partition, cursor.key.seq, src.first.partition, src.first.seq
                ),
            ));
        }
        Ok(Some(cursor))
    }

    /// The current line, without its newline.
    fn line(&self) -> &[u8] {
        &self.line
    }

    /// Moves to the next record; `false` at the end. Keys must strictly increase.
    fn advance(&mut self, src: &Source) -> Result<bool, SealError> {
        let previous = self.key.clone();
        if !self.read_next(src)? {
            return Ok(false);
        }
        if self.key <= previous {
            return Err(corrupt(
                &src.path,
                format!(
                    "line {}: partition {} seq {} does not follow partition {} seq {}",
                    self.line_no, self.key.partition, self.key.seq, previous.partition, previous.seq
                ),
            ));
        }
        Ok(true)
    }

    fn read_next(&mut self, src: &Source) -> Result<bool, SealError> {
        loop {
            self.line.clear();
            let n = self
                .reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| corrupt(&src.path, format!("cannot decompress: {e}")))?;
            if n == 0 {
                return Ok(false);
            }
            if self.line.last() == Some(&b'\n') {
                self.line.pop();
            }
            if self.line.is_empty() {
                continue;
            }
            self.line_no += 1;
            let k: LineKey = serde_json::from_slice(&self.line)
                .map_err(|e| corrupt(&src.path, format!("line {}: {e}", self.line_no)))?;
            if src.partition.as_deref().is_some_and(|p| p != k.partition_id) {
                return Err(corrupt(
                    &src.path,
                    format!("line {} is from partition {}", self.line_no, k.partition_id),
                ));
            }
            self.key = Key {
                partition: k.partition_id.into_owned(),
                seq: k.sequence_number,
            };
            return Ok(true);
        }
    }

    /// At the end: the object must hold as many records as promised.
    fn finish(&mut self, src: &Source) -> Result<(), SealError> {
        // Drain to be sure nothing unreadable hides after the last record.
        let mut rest = Vec::new();
        self.reader
            .read_to_end(&mut rest)
            .map_err(|e| corrupt(&src.path, format!("cannot decompress: {e}")))?;
        if self.line_no != src.records {
            return Err(corrupt(
                &src.path,
                format!(
                    "holds {} records, its receipt or manifest says {}",
                    self.line_no, src.records
                ),
            ));
        }
        Ok(())
    }
}

/// A compacted object being built, compressed as it grows.
struct PartEncoder {
    sink: CompressingWriter,
    /// Uncompressed bytes written since the compressor last emitted everything.
    pending: u64,
    flush_every: u64,
}

impl PartEncoder {
    fn new(compression: Compression, target_bytes: u64) -> Self {
        Self {
            sink: CompressingWriter::new(compression, 0),
            pending: 0,
            // The compressor holds back a block of input (tens of KiB) before it emits
            // anything, so the stored size lags. A sync flush every so often (a few
            // bytes each, dictionary kept) keeps the lag well below the target.
            flush_every: (target_bytes / 4).clamp(4 << 10, 1 << 20),
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        self.sink.write(bytes);
        if self.sink.is_plain() {
            return;
        }
        self.pending += bytes.len() as u64;
        if self.pending >= self.flush_every {
            self.sink.flush();
            self.pending = 0;
        }
    }

    /// Stored bytes so far (the compressor may hold up to `flush_every` more input).
    fn stored_len(&self) -> u64 {
        self.sink.stored_len()
    }

    fn finish(self) -> Vec<u8> {
        self.sink.finish()
    }
}

/// Writes merged records into `part-g<generation>-<nnnnn>` objects of bounded size.
struct PartWriter {
    spec: PartSpec,
    encoder: Option<PartEncoder>,
    index: u32,
    records: u64,
    uncompressed: u64,
    partitions: Vec<PartitionSummary>,
    objects: Vec<ManifestObject>,
    reused: u64,
    replaced: u64,
}

impl PartWriter {
    fn new(spec: PartSpec) -> Self {
        Self {
            spec,
            encoder: None,
            index: 0,
            records: 0,
            uncompressed: 0,
            partitions: Vec::new(),
            objects: Vec::new(),
            reused: 0,
            replaced: 0,
        }
    }

    fn push(&mut self, io: &mut dyn ObjectIo, key: &Key, line: &[u8]) -> Result<(), SealError> {
        let (compression, target) = (self.spec.compression, self.spec.target_bytes);
        let encoder = self
            .encoder
            .get_or_insert_with(|| PartEncoder::new(compression, target));
        encoder.write(line);
        encoder.write(b"\n");
        let full = encoder.stored_len() >= self.spec.target_bytes;
        self.records += 1;
        self.uncompressed += line.len() as u64 + 1;
        count(&mut self.partitions, key);
        if full {
            self.flush(io)?;
        }
        Ok(())
    }

    /// Finishes the current object (if any) and writes it create-only.
    fn flush(&mut self, io: &mut dyn ObjectIo) -> Result<(), SealError> {
        let Some(encoder) = self.encoder.take() else {
            return Ok(());
        };
        let bytes = encoder.finish();
        let path = part_path(&self.spec.dir, self.spec.generation, self.index, self.spec.compression);
        let object = ManifestObject {
            path: path.clone(),
            records: self.records,
            bytes: bytes.len() as u64,
            uncompressed_bytes: self.uncompressed,
            sha256: digest_hex(&bytes),
            partitions: std::mem::take(&mut self.partitions),
        };
        let attrs = self.attributes(&object);
        match io.put(&path, Bytes::from(bytes), &attrs)? {
            PutResult::Created => {}
            PutResult::Identical => self.reused += 1,
            PutResult::Replaced => self.replaced += 1,
        }
        self.objects.push(object);
        self.index += 1;
        self.records = 0;
        self.uncompressed = 0;
        Ok(())
    }

    fn attributes(&self, o: &ManifestObject) -> ObjectAttributes {
        ObjectAttributes {
            content_type: "application/x-ndjson",
            content_encoding: self.spec.compression.content_encoding(),
            metadata: vec![
                ("record_count", o.records.to_string()),
                ("generation", self.spec.generation.to_string()),
                ("uncompressed_bytes", o.uncompressed_bytes.to_string()),
                ("stored_bytes", o.bytes.to_string()),
                ("sha256", o.sha256.clone()),
                ("writer_version", crate::WRITER_VERSION.to_string()),
            ],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lake::encode::{decode_object, JsonLinesEncoder};
    use std::collections::BTreeMap;

    /// An in-memory lake that counts how many objects are open at once.
    #[derive(Default)]
    struct Memory {
        objects: BTreeMap<String, Bytes>,
        gets: u64,
    }

    impl ObjectIo for Memory {
        fn get(&mut self, path: &str) -> Result<Bytes, SealError> {
            self.gets += 1;
            self.objects.get(path).cloned().ok_or_else(|| corrupt(path, "missing"))
        }
        fn put(&mut self, path: &str, bytes: Bytes, _: &ObjectAttributes) -> Result<PutResult, SealError> {
            let result = match self.objects.get(path) {
                None => PutResult::Created,
                Some(old) if *old == bytes => PutResult::Identical,
                Some(_) => PutResult::Replaced,
            };
            self.objects.insert(path.to_string(), bytes);
            Ok(result)
        }
    }

    fn line(pid: &str, seq: i64, tag: &str) -> String {
        format!(r#"{{"event_id":"e{pid}-{seq}","partition_id":"{pid}","sequence_number":{seq},"tag":"{tag}"}}"#)
    }

    /// Stores a raw object of partition `pid` holding `seqs`, returning its source.
    fn raw(mem: &mut Memory, pid: &str, seqs: std::ops::RangeInclusive<i64>, tag: &str) -> Source {
        let mut enc = JsonLinesEncoder::new(Compression::Gzip { level: 1 }, 0);
        for s in seqs.clone() {
            enc.push_line(line(pid, s, tag).as_bytes());
        }
        let o = enc.finish();
        let path = format!("raw/{pid}-{}-{}-{tag}.jsonl.gz", seqs.start(), seqs.end());
        let source = Source {
            path: path.clone(),
            first: Key {
                partition: pid.into(),
                seq: *seqs.start(),
            },
            sha256: digest_hex(&o.bytes),
            records: o.records,
            partition: Some(pid.into()),
        };
        mem.objects.insert(path, Bytes::from(o.bytes));
        source
    }

    fn spec(target: u64) -> PartSpec {
        PartSpec {
            dir: "out".into(),
            generation: 1,
            compression: Compression::Gzip { level: 6 },
            target_bytes: target,
        }
    }

    fn read_all(mem: &Memory, out: &MergeOutput) -> Vec<String> {
        out.objects
            .iter()
            .flat_map(|o| {
                let text = String::from_utf8(decode_object(&mem.objects[&o.path]).unwrap()).unwrap();
                text.lines().map(str::to_string).collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn overlapping_redelivery_is_merged_in_order_once() {
        let mut mem = Memory::default();
        let sources = vec![
            raw(&mut mem, "0", 10..=29, "b"),
            raw(&mut mem, "0", 0..=19, "a"),
            raw(&mut mem, "10", 0..=4, "a"),
            raw(&mut mem, "2", 5..=9, "a"),
        ];
        let out = merge(&mut mem, sources, Some(spec(1 << 20))).unwrap();
        assert_eq!(out.duplicates, 10);
        assert_eq!(out.records, 30 + 5 + 5);
        let lines = read_all(&mem, &out);
        let expected: Vec<String> = (0..=19)
            .map(|s| line("0", s, "a"))
            .chain((20..=29).map(|s| line("0", s, "b")))
            .chain((5..=9).map(|s| line("2", s, "a")))
            .chain((0..=4).map(|s| line("10", s, "a")))
            .collect();
        assert_eq!(
            lines, expected,
            "byte-identical lines, first copy kept, partitions numerically"
        );
        let parts: Vec<_> = out
            .partitions
            .iter()
            .map(|p| (p.partition_id.as_str(), p.records))
            .collect();
        assert_eq!(parts, [("0", 30), ("2", 5), ("10", 5)]);
    }

    #[test]
    fn output_rolls_at_the_target_size_and_is_deterministic() {
        let mut mem = Memory::default();
        let sources: Vec<Source> = (0..20)
            .map(|b| raw(&mut mem, "0", b * 500..=b * 500 + 499, "x"))
            .collect();
        let out = merge(&mut mem, sources.clone(), Some(spec(8 << 10))).unwrap();
        let sizes: Vec<u64> = out.objects.iter().map(|o| o.bytes).collect();
        assert!(out.objects.len() > 3, "{sizes:?}");
        assert_eq!(out.records, 10_000);
        // Every object but the last is at least the target; none far above it.
        for o in &out.objects[..out.objects.len() - 1] {
            assert!(o.bytes >= 8 << 10 && o.bytes < 12 << 10, "{sizes:?}");
        }
        let again = merge(&mut mem, sources, Some(spec(8 << 10))).unwrap();
        assert_eq!(again.objects, out.objects);
        assert_eq!(again.objects_reused, out.objects.len() as u64);
    }

    #[test]
    fn disjoint_sources_are_opened_one_at_a_time() {
        // A source that is opened before the merge reaches it would be fetched early:
        // count fetches at the moment the first record is written.
        struct Probe {
            inner: Memory,
            open_at_first_put: Option<u64>,
        }
        impl ObjectIo for Probe {
            fn get(&mut self, path: &str) -> Result<Bytes, SealError> {
                self.inner.get(path)
            }
            fn put(&mut self, path: &str, bytes: Bytes, a: &ObjectAttributes) -> Result<PutResult, SealError> {
                self.open_at_first_put.get_or_insert(self.inner.gets);
                self.inner.put(path, bytes, a)
            }
        }
        let mut mem = Memory::default();
        let sources: Vec<Source> = (0..50)
            .map(|b| raw(&mut mem, "0", b * 100..=b * 100 + 99, "x"))
            .collect();
        let mut probe = Probe {
            inner: mem,
            open_at_first_put: None,
        };
        // A tiny target: the first object is written after the first few records.
        let out = merge(&mut probe, sources, Some(spec(1))).unwrap();
        assert_eq!(out.records, 5000);
        assert!(probe.open_at_first_put.unwrap() <= 1, "sources are fetched lazily");
    }

    #[test]
    fn counting_only_writes_nothing() {
        let mut mem = Memory::default();
        let sources = vec![raw(&mut mem, "0", 0..=9, "a"), raw(&mut mem, "0", 5..=14, "b")];
        let before = mem.objects.len();
        let out = merge(&mut mem, sources, None).unwrap();
        assert_eq!((out.records, out.duplicates), (15, 5));
        assert!(out.objects.is_empty());
        assert_eq!(mem.objects.len(), before);
    }

    #[test]
    fn damaged_inputs_are_refused() {
        let mut mem = Memory::default();
        let mut s = raw(&mut mem, "0", 0..=9, "a");
        s.sha256 = "0".repeat(64);
        assert!(matches!(merge(&mut mem, vec![s], None), Err(SealError::Corrupt { .. })));

        let mut s = raw(&mut mem, "0", 0..=9, "a");
        s.records = 11;
        let err = merge(&mut mem, vec![s], None).unwrap_err();
        assert!(err.to_string().contains("holds 10 records"), "{err}");

        let mut s = raw(&mut mem, "0", 0..=9, "a");
        s.partition = Some("1".into());
        assert!(merge(&mut mem, vec![s], None).is_err());

        // Unsorted lines.
        let text = format!("{}\n{}\n", line("0", 5, "a"), line("0", 4, "a"));
        mem.objects.insert("bad".into(), Bytes::from(text.clone()));
        let s = Source {
            path: "bad".into(),
            first: Key {
                partition: "0".into(),
                seq: 5,
            },
            sha256: digest_hex(text.as_bytes()),
            records: 2,
            partition: None,
        };
        let err = merge(&mut mem, vec![s], None).unwrap_err();
        assert!(err.to_string().contains("does not follow"), "{err}");
    }
}
