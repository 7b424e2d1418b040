//! Sorting records by (partition, sequence number) and dropping repeated events, in
//! bounded memory: records are buffered up to a budget, spilled as sorted runs to
//! temporary files, and the runs merged. Used by `get --merge` (one de-duplicated
//! JSONL for loaders) and by `replay` (events in order per partition).
//!
//! Partitions sort as numbers when they are numbers ("2" before "10"), numbers before
//! other names, then by text: the order of the seal's compacted objects.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::scan::{self, ScanError};
use super::OpsError;

/// What makes two records the same event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum DedupBy {
    /// Partition id and sequence number (what a re-delivery repeats).
    #[default]
    Seq,
    /// `event_id` (the change event's resume token, or hub/partition/sequence): also
    /// drops an event a producer sent twice. Keeps one 16-byte digest per event in memory.
    #[value(name = "event_id", alias = "event-id")]
    EventId,
}

/// Where and how much to sort.
#[derive(Debug, Clone)]
pub struct SortOptions {
    /// Bytes of records held in memory before a sorted run is spilled to disk.
    pub memory_budget: usize,
    /// Where spilled runs go (a temporary folder is made inside and removed after).
    pub temp_dir: PathBuf,
}

impl SortOptions {
    pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;
}

/// Sort key of a partition id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartKey {
    Number(u64, String),
    Name(String),
}

impl PartKey {
    pub fn of(partition: &str) -> Self {
        match partition.parse::<u64>() {
            Ok(n) => Self::Number(n, partition.to_string()),
            Err(_) => Self::Name(partition.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Self::Number(_, s) | Self::Name(s) => s,
        }
    }
}

/// One record line with its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortedLine {
    pub partition: PartKey,
    pub sequence_number: i64,
    /// The JSON line, without its newline.
    pub line: Vec<u8>,
}

struct Entry {
    partition: PartKey,
    seq: i64,
    line: Box<[u8]>,
}

/// Accepts records in any order; hands them back sorted and without repeats.
pub struct Sorter {
    opts: SortOptions,
    buffer: Vec<Entry>,
    buffered_bytes: usize,
    spill: Option<SpillDir>,
    runs: Vec<PathBuf>,
    records_in: u64,
}

/// A temporary folder removed when dropped.
struct SpillDir(PathBuf);

impl Drop for SpillDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Sorter {
    pub fn new(opts: SortOptions) -> Self {
        Self {
            opts,
            buffer: Vec::new(),
            buffered_bytes: 0,
            spill: None,
            runs: Vec::new(),
            records_in: 0,
        }
    }

    /// Adds every record of a (possibly gzip or zstd) JSON Lines stream; `source` names it in errors.
    pub fn push_reader(&mut self, reader: impl Read, source: &str) -> Result<u64, OpsError> {
        let mut added = 0u64;
        let mut spill_needed = false;
        let corrupt = |e: ScanError| OpsError::Corrupt {
            path: source.to_string(),
            reason: e.to_string(),
        };
        let mut pending: Vec<Entry> = Vec::new();
        scan::for_each_line(reader, |n, line| {
            let key = scan::parse_key(n, line)?;
            pending.push(Entry {
                partition: PartKey::of(&key.partition_id),
                seq: key.sequence_number,
                line: line.into(),
            });
            added += 1;
            if pending.len() >= 4096 {
                spill_needed |= self.absorb(&mut pending);
            }
            Ok(())
        })
        .map_err(corrupt)?;
        spill_needed |= self.absorb(&mut pending);
        if spill_needed {
            self.spill()?;
        }
        Ok(added)
    }

    /// Moves entries into the buffer; true when the budget is exceeded.
    fn absorb(&mut self, pending: &mut Vec<Entry>) -> bool {
        for e in pending.drain(..) {
            self.buffered_bytes += e.line.len() + 96;
            self.records_in += 1;
            self.buffer.push(e);
        }
        self.buffered_bytes > self.opts.memory_budget
    }

    /// Writes the buffer as one sorted run.
    fn spill(&mut self) -> Result<(), OpsError> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let dir = match &self.spill {
            Some(d) => d.0.clone(),
            None => {
                let dir = self.opts.temp_dir.join(format!(
                    ".hub2lake-sort-{}-{:016x}",
                    std::process::id(),
                    fastrand::u64(..)
                ));
                std::fs::create_dir_all(&dir).map_err(OpsError::io(&dir))?;
                self.spill = Some(SpillDir(dir.clone()));
                dir
            }
        };
        sort_entries(&mut self.buffer);
        let path = dir.join(format!("run-{:05}.jsonl", self.runs.len()));
        let file = File::create(&path).map_err(OpsError::io(&path))?;
        let mut w = BufWriter::with_capacity(1 << 20, file);
        for e in self.buffer.drain(..) {
            w.write_all(&e.line)
                .and_then(|_| w.write_all(b"\n"))
                .map_err(OpsError::io(&path))?;
        }
        w.flush().map_err(OpsError::io(&path))?;
        tracing::debug!(run = %path.display(), bytes = self.buffered_bytes, "spilled a sorted run");
        self.buffered_bytes = 0;
        self.runs.push(path);
        Ok(())
    }

    /// Records added so far.
    pub fn records_in(&self) -> u64 {
        self.records_in
    }

    /// The records sorted by (partition, sequence number), each (partition, sequence
    /// number) once: the first copy read wins.
    pub fn finish(mut self) -> Result<Merged, OpsError> {
        let spilled = self.runs.len();
        let source = if self.runs.is_empty() {
            sort_entries(&mut self.buffer);
            Source::Memory(std::mem::take(&mut self.buffer).into_iter())
        } else {
            self.spill()?;
            Source::Runs(RunMerger::open(&self.runs)?)
        };
        Ok(Merged {
            source,
            last: None,
            duplicates: 0,
            records_in: self.records_in,
            spilled_runs: spilled.max(self.runs.len()),
            _spill: self.spill.take(),
        })
    }
}

fn sort_entries(entries: &mut [Entry]) {
    // Stable: among copies of one event the first read stays first.
    entries.sort_by(|a, b| (&a.partition, a.seq).cmp(&(&b.partition, b.seq)));
}

enum Source {
    Memory(std::vec::IntoIter<Entry>),
    Runs(RunMerger),
}

/// K-way merge of sorted run files.
struct RunMerger {
    readers: Vec<(PathBuf, BufReader<File>)>,
    heap: BinaryHeap<Reverse<(PartKey, i64, usize)>>,
    heads: Vec<Option<Vec<u8>>>,
}

impl RunMerger {
    fn open(paths: &[PathBuf]) -> Result<Self, OpsError> {
        let mut m = Self {
            readers: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::with_capacity(paths.len()),
            heads: vec![None; paths.len()],
        };
        for (i, p) in paths.iter().enumerate() {
            let f = File::open(p).map_err(OpsError::io(p))?;
            m.readers.push((p.clone(), BufReader::with_capacity(256 << 10, f)));
            m.advance(i)?;
        }
        Ok(m)
    }

    fn advance(&mut self, i: usize) -> Result<(), OpsError> {
        let (path, reader) = &mut self.readers[i];
        let mut line = Vec::new();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(OpsError::io(path.clone()))?;
        if n == 0 {
            self.heads[i] = None;
            return Ok(());
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        let key = scan::parse_key(0, &line).map_err(|e| OpsError::Corrupt {
            path: path.display().to_string(),
            reason: e.to_string(),
        })?;
        self.heap
            .push(Reverse((PartKey::of(&key.partition_id), key.sequence_number, i)));
        self.heads[i] = Some(line);
        Ok(())
    }

    fn next_entry(&mut self) -> Result<Option<Entry>, OpsError> {
        let Some(Reverse((partition, seq, i))) = self.heap.pop() else {
            return Ok(None);
        };
        let line = self.heads[i].take().unwrap_or_default();
        self.advance(i)?;
        Ok(Some(Entry {
            partition,
            seq,
            line: line.into(),
        }))
    }
}

/// Sorted, de-duplicated records.
pub struct Merged {
    source: Source,
    last: Option<(PartKey, i64)>,
    /// Copies dropped so far.
    pub duplicates: u64,
    pub records_in: u64,
    pub spilled_runs: usize,
    _spill: Option<SpillDir>,
}

impl Iterator for Merged {
    type Item = Result<SortedLine, OpsError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let entry = match &mut self.source {
                Source::Memory(it) => it.next(),
                Source::Runs(m) => match m.next_entry() {
                    Ok(e) => e,
                    Err(e) => return Some(Err(e)),
                },
            }?;
            let key = (entry.partition, entry.seq);
            if self.last.as_ref() == Some(&key) {
                self.duplicates += 1;
                continue;
            }
            self.last = Some(key.clone());
            return Some(Ok(SortedLine {
                partition: key.0,
                sequence_number: key.1,
                line: entry.line.into_vec(),
            }));
        }
    }
}

/// What `--merge` wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct MergeReport {
    pub path: PathBuf,
    pub records_in: u64,
    pub records_out: u64,
    pub duplicates_dropped: u64,
    pub spilled_runs: usize,
}

/// Writes sorted, de-duplicated records to `out` (through a temporary name, so a
/// finished file is always whole).
pub fn write_merged(mut merged: Merged, out: &Path, dedup_by: DedupBy) -> Result<MergeReport, OpsError> {
    let tmp = partial_name(out);
    let file = File::create(&tmp).map_err(OpsError::io(&tmp))?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut seen_ids: HashSet<u128> = HashSet::new();
    let mut report = MergeReport {
        path: out.to_path_buf(),
        ..MergeReport::default()
    };
    let mut id_duplicates = 0u64;
    for item in merged.by_ref() {
        let rec = item?;
        if dedup_by == DedupBy::EventId {
            let key = scan::parse_key(0, &rec.line).map_err(|e| OpsError::Corrupt {
                path: out.display().to_string(),
                reason: e.to_string(),
            })?;
            if let Some(id) = key.event_id {
                if !seen_ids.insert(digest128(id.as_bytes())) {
                    id_duplicates += 1;
                    continue;
                }
            }
        }
        w.write_all(&rec.line)
            .and_then(|_| w.write_all(b"\n"))
            .map_err(OpsError::io(&tmp))?;
        report.records_out += 1;
    }
    w.flush().map_err(OpsError::io(&tmp))?;
    drop(w);
    std::fs::rename(&tmp, out).map_err(OpsError::io(out))?;
    report.records_in = merged.records_in;
    report.duplicates_dropped = merged.duplicates + id_duplicates;
    report.spilled_runs = merged.spilled_runs;
    Ok(report)
}

fn digest128(bytes: &[u8]) -> u128 {
    let d = Sha256::digest(bytes);
    let mut first = [0u8; 16];
    first.copy_from_slice(&d[..16]);
    u128::from_le_bytes(first)
}

/// `dir/.name.partial`: where a file is written before it is renamed into place.
pub fn partial_name(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.partial"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(p: &str, seq: i64, id: &str) -> String {
        format!("{{\"event_id\":\"{id}\",\"partition_id\":\"{p}\",\"sequence_number\":{seq}}}\n")
    }

    fn sorter(budget: usize, dir: &Path) -> Sorter {
        Sorter::new(SortOptions {
            memory_budget: budget,
            temp_dir: dir.to_path_buf(),
        })
    }

    fn collect(m: Merged) -> Vec<(String, i64)> {
        m.map(|r| r.unwrap())
            .map(|r| (r.partition.as_str().to_string(), r.sequence_number))
            .collect()
    }

    #[test]
    fn sorts_partitions_numerically_and_drops_repeats_in_memory_and_spilled() {
        let dir = tempfile::tempdir().unwrap();
        for budget in [1 << 30, 200] {
            let mut s = sorter(budget, dir.path());
            let a: String = [line("10", 2, "a"), line("2", 5, "b"), line("2", 4, "c")].concat();
            let b: String = [line("2", 5, "b"), line("x", 1, "d"), line("10", 1, "e")].concat();
            s.push_reader(a.as_bytes(), "a").unwrap();
            s.push_reader(b.as_bytes(), "b").unwrap();
            assert_eq!(s.records_in(), 6);
            let m = s.finish().unwrap();
            if budget == 200 {
                assert!(m.spilled_runs >= 2, "{}", m.spilled_runs);
            }
            let out = collect(m);
            assert_eq!(
                out,
                [("2", 4), ("2", 5), ("10", 1), ("10", 2), ("x", 1)].map(|(p, s)| (p.to_string(), s))
            );
        }
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert!(leftovers.is_empty(), "spill folders are removed: {leftovers:?}");
    }

    #[test]
    fn merged_files_are_written_whole_and_can_dedup_by_event_id() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("day.jsonl");
        let mut s = sorter(1 << 20, dir.path());
        let text: String = [
            line("0", 1, "a"),
            line("0", 2, "a"),
            line("0", 1, "a"),
            line("1", 7, "z"),
        ]
        .concat();
        s.push_reader(text.as_bytes(), "t").unwrap();
        let r = write_merged(s.finish().unwrap(), &out, DedupBy::Seq).unwrap();
        assert_eq!((r.records_in, r.records_out, r.duplicates_dropped), (4, 3, 1));

        let mut s = sorter(1 << 20, dir.path());
        s.push_reader(text.as_bytes(), "t").unwrap();
        let r = write_merged(s.finish().unwrap(), &out, DedupBy::EventId).unwrap();
        assert_eq!((r.records_out, r.duplicates_dropped), (2, 2));
        let written = std::fs::read_to_string(&out).unwrap();
        assert_eq!(written, [line("0", 1, "a"), line("1", 7, "z")].concat());
        assert!(!partial_name(&out).exists());
    }

    #[test]
    fn a_bad_line_names_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = sorter(1 << 20, dir.path());
        let e = s
            .push_reader(&b"{\"partition_id\":\"0\"}\n"[..], "lake/x.jsonl")
            .unwrap_err();
        assert!(e.to_string().contains("lake/x.jsonl: line 1"), "{e}");
    }
}
