//! `_manifest.json`: the commit record of a sealed hour, and the names of compacted
//! objects.
//!
//! A manifest is written only after every object it lists is durable, so a reader that
//! finds one can read exactly the listed objects and get each event once. The leading
//! `_` makes Hadoop-style readers (Spark, Hive) skip it when they list the folder.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use super::completeness::{SealReason, SeqRange};
use crate::config::Compression;
use crate::lake::layout::MANIFEST_NAME;
use crate::time::parse_time;

/// The manifest of one sealed unit (database, collection, hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub manifest_version: u32,
    /// `hub2lake/<version>` of the sealer.
    pub writer: String,
    pub database: String,
    pub collection: String,
    /// Start of the hour, RFC 3339 UTC.
    pub hour: String,
    /// 1 for the first seal; +1 each time late data re-opens the hour.
    pub generation: u64,
    /// 0 when the generation is written; +1 each time the seal rewrites the manifest
    /// in place without changing `objects` (gaps changed, an object without receipt
    /// was found or removed). Readers that cache a manifest compare both numbers.
    #[serde(default)]
    pub revision: u64,
    pub sealed_at: String,
    /// When the manifest was last rewritten in place (`revision` > 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
    /// No gap in any partition's receipts touches this hour.
    pub complete: bool,
    pub reason: SealReason,
    /// Whether `objects` are compacted, de-duplicated objects (else the raw objects).
    pub compacted: bool,
    /// Distinct events (by partition and sequence number) in the hour.
    pub total_records: u64,
    /// Events found more than once in the inputs.
    pub duplicates_found: u64,
    /// Of those, copies removed (all of them when compacted, none otherwise).
    pub duplicates_removed: u64,
    /// What to read: relative to the lake root, like receipt paths.
    pub objects: Vec<ManifestObject>,
    pub partitions: Vec<PartitionSummary>,
    #[serde(default)]
    pub gaps: Vec<Gap>,
    #[serde(default)]
    pub overlaps: Vec<Overlap>,
    /// Data objects in the folder that no receipt names and that hold events no
    /// receipt covers: left in place, because they may belong to a delivery still in
    /// flight or be the only copy of events the host gave up on. Not part of the hour.
    #[serde(default)]
    pub unreceipted: Vec<UnreceiptedObject>,
    /// Objects without receipt that the seal deleted because every event they held is
    /// in this hour's objects (copies left by a delivery whose receipt failed).
    #[serde(default)]
    pub removed_copies: Vec<RemovedCopy>,
    pub inputs: Inputs,
}

impl Manifest {
    pub const VERSION: u32 = 1;

    /// Whether `path` is one of the objects to read.
    pub fn lists(&self, path: &str) -> bool {
        self.objects.iter().any(|o| o.path == path)
    }

    /// Whether the seal must read this manifest again on later runs although nothing
    /// new may show in the folder (see [`RECHECK_NAME`]): its gaps can change with
    /// receipts written anywhere in the partition; an object without receipt it lists
    /// can disappear (an operator moved it away); and a delivery that was in flight
    /// when a copy was removed can still write a receipt naming it.
    pub fn needs_recheck(&self, now: DateTime<Utc>) -> bool {
        !self.gaps.is_empty()
            || !self.unreceipted.is_empty()
            || self
                .removed_copies
                .iter()
                .any(|c| parse_time(&c.removed_at).is_some_and(|t| now < t + RECHECK_AFTER_REMOVAL))
    }

    /// The same manifest apart from when and how often it was written: a rewrite that
    /// would change nothing else is skipped.
    pub fn same_content(&self, other: &Manifest) -> bool {
        let normal = |m: &Manifest| Manifest {
            revision: 0,
            updated_at: None,
            ..m.clone()
        };
        normal(self) == normal(other)
    }
}

/// How long after removing a copy the seal keeps reading the hour's manifest on every
/// run. A delivery writes its receipt within one invocation of the ingest function
/// (`functionTimeout` in host.json: 10 minutes); an hour leaves a wide margin.
pub const RECHECK_AFTER_REMOVAL: TimeDelta = TimeDelta::hours(1);

/// A data object in a sealed hour's folder that no receipt names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreceiptedObject {
    pub path: String,
    /// Stored size when it was examined; another size is examined again.
    pub bytes: u64,
    pub records: u64,
    /// Per partition: records and first and last sequence number.
    #[serde(default)]
    pub partitions: Vec<PartitionSummary>,
    /// The runs of its records that no receipt covers: `records` of them between
    /// `first_sequence_number` and `last_sequence_number`. These events are in no
    /// receipt and in none of the hour's objects.
    #[serde(default)]
    pub uncovered: Vec<PartitionSummary>,
    /// Why it could not be read as hub2lake records (then `uncovered` is empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// An object without receipt the seal deleted as a redundant copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemovedCopy {
    pub path: String,
    pub bytes: u64,
    pub sha256: String,
    pub records: u64,
    #[serde(default)]
    pub partitions: Vec<PartitionSummary>,
    pub removed_at: String,
}

/// One object of a sealed hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestObject {
    pub path: String,
    pub records: u64,
    /// Stored (possibly compressed) size.
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    pub sha256: String,
    /// The sequence ranges the object holds, per partition, in record order.
    pub partitions: Vec<PartitionSummary>,
}

/// Records of one partition (in an object, or in the whole hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionSummary {
    pub partition_id: String,
    pub records: u64,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
}

/// Sequence numbers no receipt covers. Listed by the manifests of both neighbours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub eventhub: String,
    pub consumer_group: String,
    pub partition_id: String,
    pub first_missing: i64,
    pub last_missing: i64,
    pub missing: u64,
    /// Receipt and data object holding the last event before the gap.
    pub before: GapSide,
    /// Receipt and data object holding the first event after it.
    pub after: GapSide,
}

/// One neighbour of a gap.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapSide {
    pub receipt: String,
    pub sequence_number: i64,
    /// `None` when that event went to the dead-letter area.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
}

/// Sequence numbers covered by several receipts (a re-delivery with new boundaries).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overlap {
    pub eventhub: String,
    pub consumer_group: String,
    pub partition_id: String,
    pub first: i64,
    pub last: i64,
    /// The sequence ranges of the receipts involved.
    pub batches: Vec<SeqRange>,
    pub receipts: Vec<String>,
}

/// What the seal consumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Inputs {
    /// Every receipt with a data object in this hour.
    pub receipts: Vec<String>,
    /// Every raw data object those receipts name for this hour (also those already
    /// consumed by earlier generations): a receipt naming an object missing here is
    /// late data and re-opens the hour.
    pub raw_objects: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_generation: Option<u64>,
    /// The previous generation's objects that were merged into this one.
    #[serde(default)]
    pub previous_objects: Vec<String>,
}

/// `<dir>/_manifest.json`.
pub fn manifest_path(dir: &str) -> String {
    format!("{dir}/{MANIFEST_NAME}")
}

/// The marker of a sealed hour whose manifest the seal reads on every run (while it
/// lists gaps or objects without receipt, and for an hour after copies were removed;
/// see [`Manifest::needs_recheck`]). Without it, a sealed
/// folder that holds nothing unexpected costs one listing per run and no read. It is
/// created before a manifest that needs it and deleted after one that does not, so it
/// is never missing where it is needed; an operator may create it (any content) to
/// make the next run bring the manifest up to date with the receipts.
pub const RECHECK_NAME: &str = "_recheck";

/// `<dir>/_recheck`.
pub fn recheck_path(dir: &str) -> String {
    format!("{dir}/{RECHECK_NAME}")
}

/// `<dir>/part-g<generation>-<nnnnn>.jsonl[.gz|.zst]`: deterministic, so a re-run after a
/// crash finds its own earlier output under the same name.
pub fn part_path(dir: &str, generation: u64, index: u32, compression: Compression) -> String {
    format!("{dir}/part-g{generation}-{index:05}.{}", compression.extension())
}

/// The generation of a compacted object's file name (`part-g3-00001.jsonl.gz` → 3).
pub fn part_generation(file_name: &str) -> Option<u64> {
    let rest = file_name.strip_prefix("part-g")?;
    let (generation, rest) = rest.split_once('-')?;
    let (index, ext) = rest.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (digits(generation) && digits(index) && matches!(ext, "jsonl" | "jsonl.gz" | "jsonl.zst"))
        .then(|| generation.parse().ok())
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn part_names_round_trip_and_nothing_else_parses() {
        let p = part_path("db/c/2025/01/15/10", 3, 7, Compression::Gzip { level: 6 });
        assert_eq!(p, "db/c/2025/01/15/10/part-g3-00007.jsonl.gz");
        assert_eq!(part_generation("part-g3-00007.jsonl.gz"), Some(3));
        assert_eq!(part_generation("part-g4-00007.jsonl.zst"), Some(4));
        let z = part_path("db/c/2025/01/15/10", 4, 0, Compression::Zstd { level: 3 });
        assert_eq!(z, "db/c/2025/01/15/10/part-g4-00000.jsonl.zst");
        assert_eq!(part_generation("part-g12-00000.jsonl"), Some(12));
        for other in [
            "0-1-9.jsonl.gz",
            "part-g-00001.jsonl",
            "part-gx-1.jsonl",
            "part-g1-1.json",
            "_manifest.json",
        ] {
            assert_eq!(part_generation(other), None, "{other}");
        }
    }

    #[test]
    fn manifest_json_round_trips() {
        let m = Manifest {
            manifest_version: Manifest::VERSION,
            writer: crate::WRITER_VERSION.into(),
            database: "shop".into(),
            collection: "orders".into(),
            hour: "2025-01-15T10:00:00.000Z".into(),
            generation: 1,
            revision: 0,
            sealed_at: "2025-01-15T11:05:00.000Z".into(),
            updated_at: None,
            complete: true,
            reason: SealReason::Watermark,
            compacted: true,
            total_records: 1,
            duplicates_found: 0,
            duplicates_removed: 0,
            objects: vec![],
            partitions: vec![],
            gaps: vec![],
            overlaps: vec![],
            unreceipted: vec![],
            removed_copies: vec![],
            inputs: Inputs::default(),
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains(r#""reason":"watermark""#));
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);

        // Manifests written before revisions, unreceipted objects and removed copies
        // existed still read.
        let mut old: serde_json::Value = serde_json::from_str(&text).unwrap();
        for field in ["revision", "unreceipted", "removed_copies"] {
            old.as_object_mut().unwrap().remove(field);
        }
        assert_eq!(serde_json::from_value::<Manifest>(old).unwrap(), m);
    }

    #[test]
    fn recently_removed_copies_and_gaps_keep_a_manifest_under_watch() {
        let now = DateTime::parse_from_rfc3339("2025-01-15T12:00:00Z").unwrap().to_utc();
        let mut m: Manifest = serde_json::from_str(&minimal_manifest()).unwrap();
        assert!(!m.needs_recheck(now));
        m.removed_copies.push(RemovedCopy {
            path: "d/0-0-9.jsonl.gz".into(),
            bytes: 1,
            sha256: "x".into(),
            records: 10,
            partitions: vec![],
            removed_at: "2025-01-15T11:30:00.000Z".into(),
        });
        assert!(m.needs_recheck(now), "removed 30 minutes ago");
        assert!(!m.needs_recheck(now + TimeDelta::minutes(31)), "an hour later");
        let mut updated = m.clone();
        updated.revision = 3;
        updated.updated_at = Some("x".into());
        assert!(updated.same_content(&m));
        updated.complete = false;
        assert!(!updated.same_content(&m));
    }

    fn minimal_manifest() -> String {
        r#"{"manifest_version":1,"writer":"w","database":"d","collection":"c","hour":"2025-01-15T10:00:00.000Z",
            "generation":1,"sealed_at":"2025-01-15T11:05:00.000Z","complete":true,"reason":"grace",
            "compacted":true,"total_records":0,"duplicates_found":0,"duplicates_removed":0,"objects":[],
            "partitions":[],"inputs":{"receipts":[],"raw_objects":[]}}"#
            .into()
    }
}
