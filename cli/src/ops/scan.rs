//! Reading objects line by line: gzip and JSON integrity, record counts, and which
//! sequence numbers of which partitions an object holds.
//!
//! Objects are decoded as a stream (`MultiGzDecoder` under a `BufReader`, one line
//! buffer reused): memory stays bounded by the longest line, whatever the object's
//! size. Sequence numbers are kept as runs (`100..=199`), not one by one.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};

use hub2lake::lake::codec::ObjectEncoding;
use serde::Deserialize;

/// Why an object is not valid JSON Lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{reason}", .line.map(|l| format!("line {l}: ")).unwrap_or_default())]
pub struct ScanError {
    /// 1-based line number, when the problem is in a line.
    pub line: Option<u64>,
    pub reason: String,
}

/// The fields every record and dead letter carries, read without the rest.
#[derive(Debug, Deserialize)]
pub struct RecordKey<'a> {
    #[serde(borrow)]
    pub partition_id: Cow<'a, str>,
    pub sequence_number: i64,
    #[serde(borrow, default)]
    pub event_id: Option<Cow<'a, str>>,
}

/// The sequence numbers of one partition in an object, in record order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionRuns {
    pub records: u64,
    pub first: i64,
    pub last: i64,
    /// Maximal runs of consecutive sequence numbers, in the order they were read.
    pub runs: Vec<(i64, i64)>,
}

impl PartitionRuns {
    fn push(&mut self, seq: i64) {
        if self.records == 0 {
            self.first = seq;
            self.last = seq;
        } else {
            self.first = self.first.min(seq);
            self.last = self.last.max(seq);
        }
        self.records += 1;
        match self.runs.last_mut() {
            Some((_, end)) if end.checked_add(1) == Some(seq) => *end = seq,
            _ => self.runs.push((seq, seq)),
        }
    }
}

/// What one object holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectScan {
    pub records: u64,
    pub uncompressed_bytes: u64,
    /// Per partition id.
    pub partitions: BTreeMap<String, PartitionRuns>,
}

/// Decodes `reader` as a stream of lines: gzip or zstd when it starts with that
/// format's magic number, plain otherwise. So one lake may hold both kinds.
pub fn lines_of<'a, R: Read + 'a>(reader: R) -> std::io::Result<Box<dyn BufRead + 'a>> {
    let mut buffered = BufReader::with_capacity(64 * 1024, reader);
    Ok(match ObjectEncoding::sniff(buffered.fill_buf()?) {
        ObjectEncoding::Plain => Box::new(buffered),
        ObjectEncoding::Gzip => Box::new(BufReader::with_capacity(
            64 * 1024,
            flate2::bufread::MultiGzDecoder::new(buffered),
        )),
        ObjectEncoding::Zstd => Box::new(BufReader::with_capacity(
            64 * 1024,
            zstd::stream::read::Decoder::with_buffer(buffered)?,
        )),
    })
}

/// Calls `each` with every line (without its newline) and its 1-based number.
///
/// Fails on a decompression error and on a last line without a newline (an object
/// cut short); `each` decides about the line's content.
pub fn for_each_line(
    reader: impl Read,
    mut each: impl FnMut(u64, &[u8]) -> Result<(), ScanError>,
) -> Result<u64, ScanError> {
    let mut lines = lines_of(reader).map_err(|e| ScanError {
        line: None,
        reason: format!("cannot read: {e}"),
    })?;
    let mut buf = Vec::with_capacity(4096);
    let mut n = 0u64;
    let mut bytes = 0u64;
    loop {
        buf.clear();
        let read = lines.read_until(b'\n', &mut buf).map_err(|e| ScanError {
            line: Some(n + 1),
            reason: format!("decompression failed ({e}): the object is damaged or cut short"),
        })?;
        if read == 0 {
            return Ok(bytes);
        }
        n += 1;
        bytes += read as u64;
        if buf.last() != Some(&b'\n') {
            return Err(ScanError {
                line: Some(n),
                reason: "the last line has no newline: the object is cut short".into(),
            });
        }
        each(n, &buf[..buf.len() - 1])?;
    }
}

/// Reads the key of one line; the whole line must be valid JSON.
pub fn parse_key(n: u64, line: &[u8]) -> Result<RecordKey<'_>, ScanError> {
    serde_json::from_slice::<RecordKey<'_>>(line).map_err(|e| ScanError {
        line: Some(n),
        reason: format!("not a record ({e})"),
    })
}

/// Scans a whole object: every line must be a JSON record with a partition id and a
/// sequence number.
pub fn scan(reader: impl Read) -> Result<ObjectScan, ScanError> {
    let mut out = ObjectScan::default();
    let bytes = for_each_line(reader, |n, line| {
        let key = parse_key(n, line)?;
        out.records += 1;
        match out.partitions.get_mut(key.partition_id.as_ref()) {
            Some(runs) => runs.push(key.sequence_number),
            None => {
                let mut runs = PartitionRuns::default();
                runs.push(key.sequence_number);
                out.partitions.insert(key.partition_id.into_owned(), runs);
            }
        }
        Ok(())
    })?;
    out.uncompressed_bytes = bytes;
    Ok(out)
}

/// A set of sequence numbers kept as disjoint runs; counts what is added twice.
#[derive(Debug, Clone, Default)]
pub struct SeqSet {
    /// start → end (inclusive), disjoint and not adjacent.
    runs: BTreeMap<i64, i64>,
}

impl SeqSet {
    /// Adds `start..=end`; returns how many of those numbers were already present.
    pub fn insert(&mut self, start: i64, end: i64) -> u64 {
        if end < start {
            return 0;
        }
        let mut lo = start;
        let mut hi = end;
        let mut already = 0u64;
        let touching: Vec<(i64, i64)> = self
            .runs
            .range(..=end.saturating_add(1))
            .rev()
            .take_while(|(_, e)| **e >= start.saturating_sub(1))
            .map(|(s, e)| (*s, *e))
            .collect();
        for (s, e) in touching {
            let overlap_lo = s.max(start);
            let overlap_hi = e.min(end);
            if overlap_lo <= overlap_hi {
                already += overlap_hi.abs_diff(overlap_lo) + 1;
            }
            lo = lo.min(s);
            hi = hi.max(e);
            self.runs.remove(&s);
        }
        self.runs.insert(lo, hi);
        already
    }

    /// Number of runs (a measure of the memory used).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    /// Whether `seq` is in the set.
    pub fn contains(&self, seq: i64) -> bool {
        self.runs.range(..=seq).next_back().is_some_and(|(_, e)| *e >= seq)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::io::Write;

    fn gzip(text: &[u8]) -> Vec<u8> {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(text).unwrap();
        enc.finish().unwrap()
    }

    fn line(p: &str, seq: i64) -> String {
        format!("{{\"event_id\":\"e{seq}\",\"partition_id\":\"{p}\",\"sequence_number\":{seq},\"x\":[1,2]}}\n")
    }

    #[test]
    fn scans_plain_gzip_and_zstd_objects_alike() {
        let text: String = (5..=9).map(|s| line("0", s)).chain([line("1", 3)]).collect();
        let zstd = zstd::encode_all(text.as_bytes(), 3).unwrap();
        for bytes in [text.as_bytes().to_vec(), gzip(text.as_bytes()), zstd] {
            let scan = scan(&bytes[..]).unwrap();
            assert_eq!(scan.records, 6);
            assert_eq!(scan.uncompressed_bytes, text.len() as u64);
            assert_eq!(scan.partitions["0"].runs, vec![(5, 9)]);
            assert_eq!((scan.partitions["0"].first, scan.partitions["0"].last), (5, 9));
            assert_eq!(scan.partitions["1"].records, 1);
        }
    }

    #[test]
    fn truncated_gzip_and_bad_lines_are_named() {
        let text: String = (0..2000).map(|s| line("0", s)).collect();
        let gz = gzip(text.as_bytes());
        let e = scan(&gz[..gz.len() / 2]).unwrap_err();
        assert!(
            e.reason.contains("damaged or cut short") || e.reason.contains("no newline"),
            "{e}"
        );
        let zst = zstd::encode_all(text.as_bytes(), 3).unwrap();
        let e = scan(&zst[..zst.len() - 4]).unwrap_err();
        assert!(
            e.reason.contains("damaged or cut short") || e.reason.contains("no newline"),
            "{e}"
        );

        let e = scan(&b"{\"partition_id\":\"0\",\"sequence_number\":1}\n{\"partition_id\":\"0\"\n"[..]).unwrap_err();
        assert_eq!(e.line, Some(2));
        let e = scan(&b"{\"partition_id\":\"0\",\"sequence_number\":1}"[..]).unwrap_err();
        assert!(e.reason.contains("no newline"), "{e}");
        let e = scan(&b"{\"partition_id\":\"0\",\"sequence_number\":1} x\n"[..]).unwrap_err();
        assert_eq!(e.line, Some(1));
        assert!(e.to_string().starts_with("line 1: "), "{e}");
        assert_eq!(scan(&b""[..]).unwrap().records, 0);
    }

    #[test]
    fn seq_set_counts_repeats() {
        let mut s = SeqSet::default();
        assert_eq!(s.insert(0, 99), 0);
        assert_eq!(s.insert(200, 299), 0);
        assert_eq!(s.run_count(), 2);
        assert_eq!(s.insert(50, 250), 50 + 51);
        assert_eq!(s.run_count(), 1);
        assert_eq!(s.insert(300, 300), 0);
        assert_eq!(s.run_count(), 1);
        assert!(s.contains(300) && !s.contains(301) && !s.contains(-1));
        assert_eq!(s.insert(i64::MAX - 1, i64::MAX), 0);
        assert_eq!(s.insert(i64::MIN, i64::MIN), 0);
        assert_eq!(s.insert(i64::MIN, i64::MIN + 1), 1);
    }

    proptest! {
        #[test]
        fn seq_set_matches_a_plain_set(ranges in proptest::collection::vec((-50i64..50, 0i64..10), 0..40)) {
            let mut set = SeqSet::default();
            let mut plain = BTreeSet::new();
            for (start, len) in ranges {
                let end = start + len;
                let expected = (start..=end).filter(|x| plain.contains(x)).count() as u64;
                prop_assert_eq!(set.insert(start, end), expected);
                plain.extend(start..=end);
            }
            for x in -60..70 {
                prop_assert_eq!(set.contains(x), plain.contains(&x));
            }
        }

        #[test]
        fn scanning_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = scan(&bytes[..]);
            let _ = scan(&gzip(&bytes)[..]);
        }
    }
}
