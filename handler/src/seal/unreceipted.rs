//! Data objects in a unit's folder that no receipt names, and what the seal may do
//! with them. Pure: the caller lists and reads the objects.
//!
//! Such an object is left by a delivery that wrote its objects and then failed before
//! its receipt (the handler answered 500), or it belongs to a delivery in flight right
//! now (objects written, receipt not yet). Deleting the second kind would lose events
//! the handler is about to acknowledge, and nothing in the lake tells the two apart.
//! What the lake does prove is whether the object's events are durable elsewhere: when
//! every (partition, sequence number) it holds lies in the range of a receipt whose
//! objects in this hour the manifest consumes, its events are in the sealed objects,
//! and the object is a redundant copy. Only such a copy is removed; if its delivery
//! later writes a receipt naming it, the seal records that receipt without the object
//! (the events are sealed already). Anything else stays and is reported.

use std::collections::BTreeMap;
use std::io::BufRead;

use serde::Deserialize;

use super::completeness::{partition_cmp, Coverage, SeqRange};
use super::manifest::{PartitionSummary, RemovedCopy, UnreceiptedObject};
use crate::lake::digest_hex;

/// The records of an object: sequence numbers per partition id, sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Contents {
    pub records: u64,
    pub seqs: BTreeMap<String, Vec<i64>>,
}

/// The two fields of a record this needs; the rest is skipped unparsed.
#[derive(Deserialize)]
struct LineKey<'a> {
    #[serde(borrow)]
    partition_id: std::borrow::Cow<'a, str>,
    sequence_number: i64,
}

/// Reads the (partition, sequence number) of every record, streaming (gzip, zstd or plain).
/// The error says why the object is not hub2lake records.
pub fn read_contents(bytes: &[u8]) -> Result<Contents, String> {
    let mut reader = crate::lake::codec::decoding_reader(bytes).map_err(|e| format!("cannot decompress: {e}"))?;
    let mut contents = Contents::default();
    let mut line = Vec::with_capacity(1024);
    let mut line_no = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| format!("cannot decompress: {e}"))?;
        if n == 0 {
            break;
        }
        line_no += 1;
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        if text.is_empty() {
            continue;
        }
        let k: LineKey = serde_json::from_slice(text).map_err(|e| format!("line {line_no} is not a record: {e}"))?;
        contents
            .seqs
            .entry(k.partition_id.into_owned())
            .or_default()
            .push(k.sequence_number);
        contents.records += 1;
    }
    for seqs in contents.seqs.values_mut() {
        seqs.sort_unstable();
    }
    Ok(contents)
}

/// What to do with an object without receipt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every event it holds is covered: delete it once the manifest records it.
    Redundant(RemovedCopy),
    /// Leave it in place and list it in the manifest.
    Kept(UnreceiptedObject),
}

/// Judges an object read from the lake. `may_delete` is false when the hour is not
/// compacted (its manifest lists the raw objects, and the seal deletes nothing).
pub fn judge(path: &str, bytes: &[u8], coverage: &Coverage, may_delete: bool, now: &str) -> Verdict {
    let contents = match read_contents(bytes) {
        Ok(c) => c,
        Err(problem) => {
            return Verdict::Kept(UnreceiptedObject {
                path: path.to_string(),
                bytes: bytes.len() as u64,
                records: 0,
                partitions: Vec::new(),
                uncovered: Vec::new(),
                problem: Some(problem),
            })
        }
    };
    let partitions = summaries(&contents);
    let uncovered = uncovered_runs(&contents, coverage);
    if uncovered.is_empty() && may_delete {
        return Verdict::Redundant(RemovedCopy {
            path: path.to_string(),
            bytes: bytes.len() as u64,
            sha256: digest_hex(bytes),
            records: contents.records,
            partitions,
            removed_at: now.to_string(),
        });
    }
    Verdict::Kept(UnreceiptedObject {
        path: path.to_string(),
        bytes: bytes.len() as u64,
        records: contents.records,
        partitions,
        uncovered,
        problem: None,
    })
}

/// Whether an object judged by an earlier run (same path and size: objects are
/// written create-only, so it is the same object) must be read again: only when the
/// coverage now reaches into what was uncovered, or, in a compacted hour, when nothing
/// was (then it is a copy to delete). Otherwise the earlier verdict stands, and a
/// sealed hour with a lingering object costs no read of it.
pub fn needs_reading(known: &UnreceiptedObject, coverage: &Coverage, may_delete: bool) -> bool {
    if known.problem.is_some() {
        return false;
    }
    if known.uncovered.is_empty() {
        return may_delete;
    }
    known.uncovered.iter().any(|run| {
        coverage.intersects(
            &run.partition_id,
            SeqRange::new(run.first_sequence_number, run.last_sequence_number),
        )
    })
}

/// Records, first and last sequence number per partition.
fn summaries(contents: &Contents) -> Vec<PartitionSummary> {
    let mut out: Vec<PartitionSummary> = contents
        .seqs
        .iter()
        .filter_map(|(partition, seqs)| {
            Some(PartitionSummary {
                partition_id: partition.clone(),
                records: seqs.len() as u64,
                first_sequence_number: *seqs.first()?,
                last_sequence_number: *seqs.last()?,
            })
        })
        .collect();
    out.sort_by(|a, b| partition_cmp(&a.partition_id, &b.partition_id));
    out
}

/// The object's uncovered records as runs: consecutive records of the object (in
/// sequence order) that no receipt covers. A covered record ends a run, so a run
/// holds no covered record of the object (numbers between its records may belong to
/// other routes or hours).
fn uncovered_runs(contents: &Contents, coverage: &Coverage) -> Vec<PartitionSummary> {
    let mut runs: Vec<PartitionSummary> = Vec::new();
    for (partition, seqs) in &contents.seqs {
        let mut open: Option<PartitionSummary> = None;
        for &seq in seqs {
            if coverage.contains(partition, seq) {
                runs.extend(open.take());
                continue;
            }
            let run = open.get_or_insert_with(|| PartitionSummary {
                partition_id: partition.clone(),
                records: 0,
                first_sequence_number: seq,
                last_sequence_number: seq,
            });
            run.records += 1;
            run.last_sequence_number = seq;
        }
        runs.extend(open);
    }
    runs.sort_by(|a, b| {
        partition_cmp(&a.partition_id, &b.partition_id).then(a.first_sequence_number.cmp(&b.first_sequence_number))
    });
    runs
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Compression;
    use crate::lake::encode::JsonLinesEncoder;

    fn object(pid: &str, seqs: &[i64]) -> Vec<u8> {
        let mut enc = JsonLinesEncoder::new(Compression::Gzip { level: 1 }, 0);
        for s in seqs {
            enc.push_line(format!(r#"{{"partition_id":"{pid}","sequence_number":{s},"x":[1,{{"y":2}}]}}"#).as_bytes());
        }
        enc.finish().bytes
    }

    fn cover(ranges: &[(i64, i64)]) -> Coverage {
        Coverage::new(ranges.iter().map(|(f, l)| ("0", SeqRange::new(*f, *l))))
    }

    const NOW: &str = "2025-01-15T12:00:00.000Z";

    #[test]
    fn a_fully_covered_object_is_a_redundant_copy() {
        // Records of one route: every third number belongs to it.
        let bytes = object("0", &[0, 1, 2, 6, 7, 8, 12]);
        // Two batches cover the object's records; 3..5 (another route) is not needed.
        let v = judge("d/0-0-12.jsonl.gz", &bytes, &cover(&[(0, 2), (6, 20)]), true, NOW);
        let Verdict::Redundant(copy) = v else { panic!("{v:?}") };
        assert_eq!((copy.records, copy.bytes), (7, bytes.len() as u64));
        assert_eq!(copy.sha256, digest_hex(&bytes));
        assert_eq!(
            (
                copy.partitions[0].first_sequence_number,
                copy.partitions[0].last_sequence_number
            ),
            (0, 12)
        );
        // Without compaction nothing is deleted: it is listed, with nothing uncovered.
        let v = judge("d/0-0-12.jsonl.gz", &bytes, &cover(&[(0, 20)]), false, NOW);
        assert!(matches!(v, Verdict::Kept(ref k) if k.uncovered.is_empty()), "{v:?}");
    }

    #[test]
    fn uncovered_records_keep_the_object_and_are_reported_as_runs() {
        let bytes = object("0", &[0, 1, 2, 6, 7, 8, 12, 13]);
        let v = judge("d/x.jsonl.gz", &bytes, &cover(&[(6, 6)]), true, NOW);
        let Verdict::Kept(kept) = v else { panic!("{v:?}") };
        let runs: Vec<_> = kept
            .uncovered
            .iter()
            .map(|r| (r.first_sequence_number, r.last_sequence_number, r.records))
            .collect();
        assert_eq!(runs, [(0, 2, 3), (7, 13, 4)], "6 is covered and splits the runs");
        assert_eq!(kept.records, 8);
        assert!(kept.problem.is_none());

        // Unchanged coverage: the earlier verdict stands without reading the object.
        assert!(!needs_reading(&kept, &cover(&[(6, 6)]), true));
        // Coverage reaching into a run: read it again.
        assert!(needs_reading(&kept, &cover(&[(6, 6), (12, 12)]), true));
    }

    #[test]
    fn objects_that_are_not_records_are_kept_with_the_reason() {
        for bytes in [
            b"not json\n".to_vec(),
            b"{\"a\":1}\n".to_vec(),
            vec![0x1f, 0x8b, 1, 2, 3],
        ] {
            let v = judge("d/odd.jsonl", &bytes, &cover(&[(0, 100)]), true, NOW);
            let Verdict::Kept(kept) = v else { panic!("{v:?}") };
            assert!(kept.problem.is_some(), "{kept:?}");
            assert!(!needs_reading(&kept, &cover(&[(0, 1000)]), true), "judged once");
        }
        // An empty object holds nothing that could be lost.
        assert!(matches!(
            judge("d/e.jsonl", b"", &Coverage::default(), true, NOW),
            Verdict::Redundant(_)
        ));
    }

    #[test]
    fn contents_are_read_per_partition_and_sorted() {
        let mut bytes = object("1", &[5, 3]);
        bytes.extend(object("0", &[9])); // concatenated gzip members
        let c = read_contents(&bytes).unwrap();
        assert_eq!(c.records, 3);
        assert_eq!(c.seqs["1"], vec![3, 5]);
        assert_eq!(c.seqs["0"], vec![9]);
    }
}
