//! The seal timer against a local-filesystem lake: batches are ingested through the
//! library exactly as the handler does, then `seal::run` is called as of a chosen time.
//!
//! Event times are set 48 hours in the past (hour `H`), so "now" can be the real clock:
//! receipts carry the real write time, which the grace period counts from.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hub2lake::config::Compression;
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition};
use hub2lake::host::{EventBody, EventData, EventHubBatch, Invocation, PartitionInfo, TimerInfo};
use hub2lake::lake::layout::PathTemplate;
use hub2lake::seal::completeness::{SealReason, SeqRange};
use hub2lake::seal::manifest::Manifest;
use hub2lake::seal::{FailPoint, SealError, SealOptions, SealReport};

#[path = "shared/lake_fixture.rs"]
mod lake_fixture;
use lake_fixture::LakeFixture;

const DB: &str = "shop";
const ORDERS: &str = "orders";
const CUSTOMERS: &str = "customers";

/// The hour the tests write to: two days ago, so it is long over. Fixed once per
/// process, so a test running across an hour boundary still means one hour.
fn hour_h() -> DateTime<Utc> {
    static H: std::sync::OnceLock<DateTime<Utc>> = std::sync::OnceLock::new();
    *H.get_or_init(|| Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(48))
}

/// `H + offset hours`.
fn hour(offset: i64) -> DateTime<Utc> {
    hour_h() + TimeDelta::hours(offset)
}

/// The real clock, shifted: past a unit's last write plus the default grace (15 min).
fn after_grace() -> DateTime<Utc> {
    Utc::now() + TimeDelta::minutes(16)
}

impl LakeFixture {
    /// Ingests one batch of partition `pid` with sequence numbers `seqs`, routed to
    /// `collection`, enqueued from `at` on (one millisecond apart).
    async fn batch(&self, pid: &str, seqs: RangeInclusive<i64>, collection: &str, at: DateTime<Utc>) {
        let events = seqs
            .clone()
            .map(|seq| EventData {
                body: EventBody::Text(change_event(pid, seq, collection)),
                sequence_number: seq,
                offset: Some((seq * 100).to_string()),
                enqueued_time: Some(at + TimeDelta::milliseconds(seq - seqs.start())),
                partition_key: None,
                properties: None,
            })
            .collect();
        let batch = EventHubBatch {
            partition: partition(pid),
            events,
            retry: None,
        };
        self.ingestor.ingest(batch).await.unwrap();
    }

    async fn seal(&self, now: DateTime<Utc>) -> SealReport {
        self.seal_with(now, &SealOptions::default()).await.unwrap()
    }

    async fn seal_with(&self, now: DateTime<Utc>, options: &SealOptions) -> Result<SealReport, SealError> {
        hub2lake::seal::run_with(&self.settings, &self.lake, &TimerInfo::default(), now, options).await
    }

    fn hour_dir(&self, collection: &str, at: DateTime<Utc>) -> PathBuf {
        self.root
            .join(DB)
            .join(collection)
            .join(at.format("%Y/%m/%d/%H").to_string())
    }

    /// File names in an hour folder, sorted.
    fn names(&self, collection: &str, at: DateTime<Utc>) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.hour_dir(collection, at)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn manifest(&self, collection: &str, at: DateTime<Utc>) -> Option<Manifest> {
        let bytes = std::fs::read(self.hour_dir(collection, at).join("_manifest.json")).ok()?;
        Some(serde_json::from_slice(&bytes).unwrap())
    }

    /// What a DuckDB/Spark glob of the hour folder reads: every data file not starting
    /// with `_` or `.`, each line as (partition, sequence number, line).
    fn glob(&self, collection: &str, at: DateTime<Utc>) -> Vec<(String, i64, String)> {
        let dir = self.hour_dir(collection, at);
        self.names(collection, at)
            .into_iter()
            .filter(|n| !n.starts_with('_') && !n.starts_with('.') && n.contains(".jsonl"))
            .flat_map(|n| lines(&dir.join(n)))
            .collect()
    }

    /// The records of the objects a manifest lists, in order.
    fn manifest_records(&self, manifest: &Manifest) -> Vec<(String, i64, String)> {
        manifest
            .objects
            .iter()
            .flat_map(|o| lines(&self.root.join(&o.path)))
            .collect()
    }

    fn receipt_count(&self) -> usize {
        fn count(p: &Path) -> usize {
            std::fs::read_dir(p)
                .map(|rd| {
                    rd.map(|e| {
                        let p = e.unwrap().path();
                        if p.is_dir() {
                            count(&p)
                        } else {
                            1
                        }
                    })
                    .sum()
                })
                .unwrap_or(0)
        }
        count(&self.root.join("_receipts"))
    }
}

fn partition(pid: &str) -> PartitionInfo {
    PartitionInfo {
        namespace: Some("contoso-ehns.servicebus.windows.net".into()),
        eventhub: "mongo-changes".into(),
        consumer_group: "hub2lake".into(),
        partition_id: Some(pid.into()),
    }
}

/// A MongoDB change event; the same (partition, seq) always gives the same body.
fn change_event(pid: &str, seq: i64, collection: &str) -> String {
    format!(
        r#"{{"_id":{{"_data":"tok-{pid}-{seq}"}},"operationType":"insert","ns":{{"db":"{DB}","coll":"{collection}"}},"documentKey":{{"_id":{seq}}},"fullDocument":{{"_id":{seq},"partition":"{pid}","note":"zoë \"quoted\""}}}}"#
    )
}

/// Decoded lines of one object file (gzip, zstd or plain).
fn lines(path: &Path) -> Vec<(String, i64, String)> {
    let bytes = std::fs::read(path).unwrap();
    let text = String::from_utf8(hub2lake::lake::codec::decode_object(&bytes).unwrap()).unwrap();
    text.lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["partition_id"].as_str().unwrap().to_string(),
                v["sequence_number"].as_i64().unwrap(),
                l.to_string(),
            )
        })
        .collect()
}

/// (partition, seq) keys, asserting each appears once.
fn exactly_once(records: &[(String, i64, String)]) -> BTreeSet<(String, i64)> {
    let mut seen = BTreeSet::new();
    for (p, s, _) in records {
        assert!(
            seen.insert((p.clone(), *s)),
            "partition {p} seq {s} appears more than once"
        );
    }
    seen
}

fn keys(pid: &str, seqs: RangeInclusive<i64>) -> BTreeSet<(String, i64)> {
    seqs.map(|s| (pid.to_string(), s)).collect()
}

fn parts_only(names: &[String]) -> bool {
    names.iter().all(|n| n == "_manifest.json" || n.starts_with("part-g"))
}

#[tokio::test(flavor = "multi_thread")]
async fn clean_hour_is_sealed_exactly_once_and_raw_objects_removed() {
    let lh = LakeFixture::new();
    // The first batch arrives exactly as the host sends it.
    let wire: Vec<WireEvent> = (0..=9)
        .map(|seq| WireEvent {
            body: change_event("0", seq, ORDERS).into_bytes(),
            sequence_number: seq,
            offset: seq * 100,
            enqueued_time: hour(0) + TimeDelta::minutes(1),
            partition_key: None,
            properties: serde_json::json!({}),
        })
        .collect();
    let wp = WirePartition {
        namespace: "contoso-ehns.servicebus.windows.net".into(),
        eventhub: "mongo-changes".into(),
        consumer_group: "hub2lake".into(),
        partition_id: "0".into(),
    };
    let body = eventhub_request("events", &wp, &wire, WireDataType::String, None, "ingest");
    let inv = Invocation::parse(body.as_bytes()).unwrap();
    let batch = EventHubBatch::from_invocation(&inv, lh.settings.event_encoding, "x", "y").unwrap();
    lh.ingestor.ingest(batch).await.unwrap();

    lh.batch("0", 10..=19, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 20..=29, ORDERS, hour(0) + TimeDelta::minutes(50)).await;
    lh.batch("1", 0..=14, ORDERS, hour(0) + TimeDelta::minutes(5)).await;
    lh.batch("1", 15..=29, ORDERS, hour(0) + TimeDelta::minutes(55)).await;
    // Both partitions move on into the next hour: their watermarks pass H's end.
    lh.batch("0", 30..=34, ORDERS, hour(1) + TimeDelta::minutes(1)).await;
    lh.batch("1", 30..=34, ORDERS, hour(1) + TimeDelta::minutes(1)).await;
    let raw_lines: BTreeSet<String> = lh.glob(ORDERS, hour(0)).into_iter().map(|r| r.2).collect();
    assert_eq!(raw_lines.len(), 60);

    let report = lh.seal(Utc::now()).await;
    assert_eq!(report.units_sealed, 1, "{report:?}");
    assert_eq!(report.units_not_ready, 1, "hour H+1 is not done: {report:?}");
    assert_eq!(
        (report.gaps_found, report.duplicates_removed, report.records_sealed),
        (0, 0, 60)
    );

    let m = lh.manifest(ORDERS, hour(0)).expect("manifest written");
    assert!(m.complete && m.compacted);
    assert_eq!(m.reason, SealReason::Watermark);
    assert_eq!((m.generation, m.total_records, m.duplicates_found), (1, 60, 0));
    assert_eq!((m.database.as_str(), m.collection.as_str()), (DB, ORDERS));
    assert_eq!(m.writer, hub2lake::WRITER_VERSION);
    let parts: Vec<_> = m
        .partitions
        .iter()
        .map(|p| {
            (
                p.partition_id.as_str(),
                p.records,
                p.first_sequence_number,
                p.last_sequence_number,
            )
        })
        .collect();
    assert_eq!(parts, [("0", 30, 0, 29), ("1", 30, 0, 29)]);
    assert_eq!(m.inputs.raw_objects.len(), 5);
    assert_eq!(m.inputs.receipts.len(), 5);

    // Raw objects are gone; the folder holds the manifest and what it lists.
    let names = lh.names(ORDERS, hour(0));
    assert!(parts_only(&names), "{names:?}");
    assert_eq!(names.len(), m.objects.len() + 1);
    // A glob of the folder reads every event once, byte for byte as ingested, sorted.
    let globbed = lh.glob(ORDERS, hour(0));
    assert_eq!(
        exactly_once(&globbed),
        keys("0", 0..=29).union(&keys("1", 0..=29)).cloned().collect()
    );
    let sealed_lines: BTreeSet<String> = globbed.iter().map(|r| r.2.clone()).collect();
    assert_eq!(sealed_lines, raw_lines);
    let order: Vec<(String, i64)> = globbed.iter().map(|r| (r.0.clone(), r.1)).collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "sorted by partition, sequence number"
    );
    assert_eq!(lh.manifest_records(&m).len(), 60);
    // Receipts are the proof and stay.
    assert_eq!(lh.receipt_count(), 7);
    // The next hour is untouched.
    assert!(lh.manifest(ORDERS, hour(1)).is_none());

    // Running again changes nothing.
    let before = lh.names(ORDERS, hour(0));
    let again = lh.seal(Utc::now()).await;
    assert_eq!((again.units_sealed, again.units_already_sealed), (0, 1), "{again:?}");
    assert_eq!(lh.names(ORDERS, hour(0)), before);
    assert_eq!(lh.manifest(ORDERS, hour(0)), Some(m));
}

#[tokio::test(flavor = "multi_thread")]
async fn gap_is_detected_and_reported_with_exact_ranges_in_both_hours() {
    let lh = LakeFixture::new();
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 10..=19, ORDERS, hour(0) + TimeDelta::minutes(50)).await;
    // 20..=29 was checkpointed past: never ingested.
    lh.batch("0", 30..=39, ORDERS, hour(1) + TimeDelta::minutes(5)).await;
    lh.batch("0", 40..=49, ORDERS, hour(1) + TimeDelta::minutes(30)).await;
    lh.batch("1", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(20)).await;
    lh.batch("1", 10..=19, ORDERS, hour(1) + TimeDelta::minutes(20)).await;

    let report = lh.seal(after_grace()).await;
    assert_eq!(report.units_sealed, 2, "{report:?}");
    assert_eq!(report.gaps_found, 1);
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.contains("missing sequence numbers 20..29 (10 events)")),
        "{report:?}"
    );

    for at in [hour(0), hour(1)] {
        let m = lh.manifest(ORDERS, at).unwrap();
        assert!(!m.complete, "a gap touches {at}");
        assert_eq!(m.gaps.len(), 1);
        let g = &m.gaps[0];
        assert_eq!(
            (g.partition_id.as_str(), g.first_missing, g.last_missing, g.missing),
            ("0", 20, 29, 10)
        );
        assert_eq!((g.before.sequence_number, g.after.sequence_number), (19, 30));
        assert!(g.before.object.as_deref().unwrap().ends_with("/0-10-19.jsonl.gz"));
        assert!(g.after.object.as_deref().unwrap().ends_with("/0-30-39.jsonl.gz"));
        assert!(g.before.receipt.ends_with("/0/10-19.json") && g.after.receipt.ends_with("/0/30-39.json"));
    }
    let h0 = exactly_once(&lh.glob(ORDERS, hour(0)));
    assert_eq!(h0, keys("0", 0..=19).union(&keys("1", 0..=9)).cloned().collect());
    let h1 = exactly_once(&lh.glob(ORDERS, hour(1)));
    assert_eq!(h1, keys("0", 30..=49).union(&keys("1", 10..=19)).cloned().collect());
}

/// The bytes of every file in an hour folder.
fn files(lh: &LakeFixture, collection: &str, at: DateTime<Utc>) -> BTreeMap<String, Vec<u8>> {
    lh.names(collection, at)
        .into_iter()
        .map(|n| {
            let bytes = std::fs::read(lh.hour_dir(collection, at).join(&n)).unwrap();
            (n, bytes)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gap_repaired_next_door_updates_the_sealed_manifest_in_place_without_recompacting() {
    let lh = LakeFixture::new();
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    // 10..=19 was checkpointed past; its events belong to hour H.
    lh.batch("0", 20..=29, ORDERS, hour(1) + TimeDelta::minutes(10)).await;
    let report = lh.seal(after_grace()).await;
    assert_eq!((report.units_sealed, report.gaps_found), (2, 1), "{report:?}");
    for at in [hour(0), hour(1)] {
        assert!(!lh.manifest(ORDERS, at).unwrap().complete);
        assert!(
            lh.names(ORDERS, at).contains(&"_recheck".to_string()),
            "an hour with gaps is watched"
        );
    }
    let next_door = files(&lh, ORDERS, hour(1));

    // The replay lands in H only: H is re-sealed, and H+1 — whose data did not change —
    // gets its manifest brought up to date in place.
    lh.batch("0", 10..=19, ORDERS, hour(0) + TimeDelta::minutes(30)).await;
    let report = lh.seal(after_grace()).await;
    assert_eq!(
        (report.units_resealed, report.manifests_updated, report.gaps_found),
        (1, 1, 0),
        "{report:?}"
    );
    let h0 = lh.manifest(ORDERS, hour(0)).unwrap();
    assert!(h0.complete && h0.gaps.is_empty() && h0.generation == 2);
    let h1 = lh.manifest(ORDERS, hour(1)).unwrap();
    assert!(h1.complete && h1.gaps.is_empty(), "{h1:?}");
    assert_eq!((h1.generation, h1.revision), (1, 1), "same generation, next revision");
    assert!(h1.updated_at.is_some());
    let now_next_door = files(&lh, ORDERS, hour(1));
    for (name, bytes) in &next_door {
        if name.starts_with("part-") {
            assert_eq!(now_next_door.get(name), Some(bytes), "{name} is not rewritten");
        }
    }
    for at in [hour(0), hour(1)] {
        let names = lh.names(ORDERS, at);
        assert!(parts_only(&names), "the marker is gone once no gap is left: {names:?}");
    }

    // Nothing changes any more, and nothing is read again to find that out.
    let again = lh.seal(after_grace()).await;
    assert_eq!(
        (again.units_already_sealed, again.manifests_updated),
        (2, 0),
        "{again:?}"
    );
    assert_eq!(lh.manifest(ORDERS, hour(1)), Some(h1));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_recheck_marker_follows_the_manifest_whoever_left_it() {
    let lh = LakeFixture::new();
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 20..=29, ORDERS, hour(0) + TimeDelta::minutes(40)).await;
    lh.batch("0", 30..=39, ORDERS, hour(1) + TimeDelta::minutes(1)).await;
    assert_eq!(lh.seal(Utc::now()).await.units_sealed, 1);
    let marker = lh.hour_dir(ORDERS, hour(0)).join("_recheck");
    let sealed = lh.manifest(ORDERS, hour(0)).unwrap();
    assert!(!sealed.complete && marker.exists());

    // A manifest written by an earlier version has gaps but no marker: as long as the
    // gap is in the receipts, the manifest is read, found right, and marked.
    std::fs::remove_file(&marker).unwrap();
    let report = lh.seal(Utc::now()).await;
    assert_eq!(
        (report.units_already_sealed, report.manifests_updated),
        (1, 0),
        "{report:?}"
    );
    assert!(marker.exists());
    assert_eq!(lh.manifest(ORDERS, hour(0)), Some(sealed));

    // An operator's marker on a complete hour costs one read, changes nothing, and goes.
    lh.batch("0", 10..=19, ORDERS, hour(0) + TimeDelta::minutes(20)).await;
    assert_eq!(lh.seal(Utc::now()).await.units_resealed, 1);
    assert!(!marker.exists());
    let complete = lh.manifest(ORDERS, hour(0)).unwrap();
    assert!(complete.complete);
    std::fs::write(&marker, b"please look").unwrap();
    let report = lh.seal(Utc::now()).await;
    assert_eq!(
        (report.units_already_sealed, report.manifests_updated),
        (1, 0),
        "{report:?}"
    );
    assert!(!marker.exists());
    assert_eq!(lh.manifest(ORDERS, hour(0)), Some(complete));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_copy_no_receipt_names_is_removed_only_from_compacted_hours() {
    for compact in [true, false] {
        let lh = LakeFixture::with(|s| s.seal_compact = compact);
        lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
        lh.batch("0", 10..=19, ORDERS, hour(1) + TimeDelta::minutes(10)).await;
        // What a delivery whose receipt failed leaves: its object, under its own name.
        let dir = lh.hour_dir(ORDERS, hour(0));
        std::fs::copy(dir.join("0-0-9.jsonl.gz"), dir.join("0-0-9x.jsonl.gz")).unwrap();

        let report = lh.seal(Utc::now()).await;
        assert_eq!(report.units_sealed, 1, "compact={compact}: {report:?}");
        let m = lh.manifest(ORDERS, hour(0)).unwrap();
        let names = lh.names(ORDERS, hour(0));
        if compact {
            assert_eq!((report.copies_removed, report.unreceipted_left), (1, 0), "{report:?}");
            // Watched for an hour: a delivery in flight may still name the copy.
            let (marker, rest): (Vec<String>, Vec<String>) = names.into_iter().partition(|n| n == "_recheck");
            assert!(marker.len() == 1 && parts_only(&rest), "{rest:?}");
            assert_eq!(m.removed_copies.len(), 1);
            assert_eq!((m.removed_copies[0].records, m.unreceipted.len()), (10, 0));
            assert_eq!(exactly_once(&lh.glob(ORDERS, hour(0))), keys("0", 0..=9));
        } else {
            // The manifest lists the raw objects and the seal deletes nothing: the copy
            // stays, listed with nothing uncovered.
            assert_eq!((report.copies_removed, report.unreceipted_left), (0, 1), "{report:?}");
            assert!(names.contains(&"0-0-9x.jsonl.gz".to_string()), "{names:?}");
            assert_eq!(m.unreceipted.len(), 1);
            assert!(m.unreceipted[0].uncovered.is_empty(), "{:?}", m.unreceipted);
        }
        let again = lh.seal(Utc::now()).await;
        assert_eq!(
            (again.units_already_sealed, again.manifests_updated),
            (1, 0),
            "{again:?}"
        );
        if compact {
            // An hour after the removal the watch ends; the manifest stays as it is.
            lh.seal(Utc::now() + TimeDelta::minutes(61)).await;
            assert!(parts_only(&lh.names(ORDERS, hour(0))));
            assert_eq!(lh.manifest(ORDERS, hour(0)), Some(m));
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn overlapping_redelivery_with_different_boundaries_is_deduplicated_to_exactly_once() {
    let lh = LakeFixture::new();
    lh.batch("0", 0..=19, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    // The host re-delivered from 10 with new batch boundaries (e.g. after a lease move).
    lh.batch(
        "0",
        10..=29,
        ORDERS,
        hour(0) + TimeDelta::minutes(10) + TimeDelta::milliseconds(10),
    )
    .await;
    lh.batch("0", 30..=39, ORDERS, hour(0) + TimeDelta::minutes(40)).await;
    lh.batch("0", 40..=44, ORDERS, hour(1) + TimeDelta::minutes(1)).await;
    assert_eq!(lh.glob(ORDERS, hour(0)).len(), 50, "the raw folder holds 10 copies");

    let report = lh.seal(Utc::now()).await;
    assert_eq!((report.units_sealed, report.overlaps_found), (1, 1), "{report:?}");
    assert_eq!((report.duplicates_found, report.duplicates_removed), (10, 10));
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert!(m.complete, "an overlap loses nothing");
    assert_eq!(
        (m.total_records, m.duplicates_found, m.duplicates_removed),
        (40, 10, 10)
    );
    assert_eq!(m.overlaps.len(), 1);
    let o = &m.overlaps[0];
    assert_eq!((o.partition_id.as_str(), o.first, o.last), ("0", 10, 19));
    assert_eq!(o.batches, vec![SeqRange::new(0, 19), SeqRange::new(10, 29)]);
    assert_eq!(exactly_once(&lh.glob(ORDERS, hour(0))), keys("0", 0..=39));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_hour_of_gzip_and_zstd_objects_is_compacted_into_zstd_exactly_once() {
    let mut lh = LakeFixture::with(|s| s.compression = Compression::Zstd { level: 3 });
    let gzip_ingestor = ingestor_with(&lh, Compression::Gzip { level: 6 });
    let zstd_ingestor = std::mem::replace(&mut lh.ingestor, gzip_ingestor);
    // Written before HUB2LAKE_COMPRESSION changed to zstd.
    lh.batch("0", 0..=19, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("1", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(12)).await;
    lh.ingestor = zstd_ingestor;
    // Re-delivered from 10 under zstd: its copies of 10..=19 sit in the other encoding.
    lh.batch("0", 10..=29, ORDERS, hour(0) + TimeDelta::minutes(20)).await;
    lh.batch("1", 10..=19, ORDERS, hour(0) + TimeDelta::minutes(30)).await;
    lh.batch("0", 30..=34, ORDERS, hour(1) + TimeDelta::minutes(1)).await;
    lh.batch("1", 20..=24, ORDERS, hour(1) + TimeDelta::minutes(1)).await;
    let raw = lh.names(ORDERS, hour(0));
    assert_eq!(raw.iter().filter(|n| n.ends_with(".jsonl.gz")).count(), 2, "{raw:?}");
    assert_eq!(raw.iter().filter(|n| n.ends_with(".jsonl.zst")).count(), 2, "{raw:?}");
    let raw_lines: BTreeSet<String> = lh.glob(ORDERS, hour(0)).into_iter().map(|r| r.2).collect();

    let report = lh.seal(Utc::now()).await;
    assert_eq!(report.units_sealed, 1, "{report:?}");
    assert_eq!(
        (report.duplicates_removed, report.records_sealed),
        (10, 50),
        "{report:?}"
    );
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert!(m.complete && m.compacted);
    let names = lh.names(ORDERS, hour(0));
    assert!(parts_only(&names), "{names:?}");
    for o in &m.objects {
        assert!(
            o.path.ends_with(".jsonl.zst"),
            "compacted into the configured encoding: {}",
            o.path
        );
        let bytes = std::fs::read(lh.root.join(&o.path)).unwrap();
        assert!(bytes.starts_with(&hub2lake::lake::codec::ZSTD_MAGIC), "{}", o.path);
    }
    let globbed = lh.glob(ORDERS, hour(0));
    assert_eq!(
        exactly_once(&globbed),
        keys("0", 0..=29).union(&keys("1", 0..=19)).cloned().collect()
    );
    // Each kept line is one of the raw copies, byte for byte, whichever encoding it came from.
    let sealed_lines: BTreeSet<String> = globbed.into_iter().map(|r| r.2).collect();
    assert_eq!(sealed_lines.len(), 50);
    assert!(
        sealed_lines.is_subset(&raw_lines),
        "lines are copied byte for byte across encodings"
    );
}

fn ingestor_with(lh: &LakeFixture, compression: Compression) -> hub2lake::ingest::Ingestor {
    let mut settings = lh.settings.clone();
    settings.compression = compression;
    hub2lake::ingest::Ingestor::new(std::sync::Arc::new(settings), lh.lake.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn without_compaction_the_manifest_lists_raw_objects_and_only_counts_duplicates() {
    let lh = LakeFixture::with(|s| s.seal_compact = false);
    lh.batch("0", 0..=19, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 10..=29, ORDERS, hour(0) + TimeDelta::minutes(11)).await;
    lh.batch("0", 30..=34, ORDERS, hour(1)).await;
    let before = lh.names(ORDERS, hour(0));

    let report = lh.seal(Utc::now()).await;
    assert_eq!(
        (report.units_sealed, report.duplicates_found, report.duplicates_removed),
        (1, 10, 0)
    );
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert!(!m.compacted);
    assert_eq!((m.total_records, m.duplicates_found, m.duplicates_removed), (30, 10, 0));
    let listed: Vec<&str> = m.objects.iter().map(|o| o.path.rsplit('/').next().unwrap()).collect();
    assert_eq!(listed, ["0-0-19.jsonl.gz", "0-10-29.jsonl.gz"]);
    let mut after = lh.names(ORDERS, hour(0));
    after.retain(|n| n != "_manifest.json");
    assert_eq!(after, before, "nothing deleted or added");
    assert_eq!(lh.seal(Utc::now()).await.units_already_sealed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_compaction_and_manifest_then_rerun_reuses_identical_objects() {
    let lh = LakeFixture::with(|s| s.seal_target_object_bytes = 1 << 10);
    for b in 0..5 {
        lh.batch("0", b * 20..=b * 20 + 19, ORDERS, hour(0) + TimeDelta::minutes(b * 10))
            .await;
    }
    lh.batch("0", 100..=104, ORDERS, hour(1)).await;
    let raw = lh.names(ORDERS, hour(0));

    let crash = SealOptions {
        fail_at: Some(FailPoint::AfterCompaction),
        ..SealOptions::default()
    };
    let err = lh.seal_with(Utc::now(), &crash).await.unwrap_err();
    assert!(matches!(err, SealError::Injected(FailPoint::AfterCompaction)), "{err}");
    // Unsealed and intact: no manifest, every raw object still there (plus stray parts).
    assert!(lh.manifest(ORDERS, hour(0)).is_none());
    let names = lh.names(ORDERS, hour(0));
    assert!(raw.iter().all(|r| names.contains(r)));
    let stray: Vec<(String, Vec<u8>)> = names
        .iter()
        .filter(|n| n.starts_with("part-g1-"))
        .map(|n| (n.clone(), std::fs::read(lh.hour_dir(ORDERS, hour(0)).join(n)).unwrap()))
        .collect();
    assert!(stray.len() > 1, "{names:?}");

    let report = lh.seal(Utc::now()).await;
    assert_eq!(report.units_sealed, 1, "{report:?}");
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert_eq!((m.generation, m.total_records), (1, 100));
    // Same inputs, same bytes: the earlier run's objects are the ones listed.
    for (name, bytes) in &stray {
        assert!(m.objects.iter().any(|o| o.path.ends_with(name.as_str())), "{name}");
        assert_eq!(&std::fs::read(lh.hour_dir(ORDERS, hour(0)).join(name)).unwrap(), bytes);
    }
    assert!(parts_only(&lh.names(ORDERS, hour(0))));
    assert_eq!(exactly_once(&lh.glob(ORDERS, hour(0))), keys("0", 0..=99));
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_compaction_and_manifest_then_late_data_then_rerun_replaces_stale_objects() {
    let lh = LakeFixture::with(|s| s.seal_target_object_bytes = 1 << 10);
    for b in 0..5 {
        lh.batch("1", b * 20..=b * 20 + 19, ORDERS, hour(0) + TimeDelta::minutes(b * 10))
            .await;
    }
    lh.batch("1", 100..=104, ORDERS, hour(1)).await;
    let crash = SealOptions {
        fail_at: Some(FailPoint::AfterCompaction),
        ..SealOptions::default()
    };
    lh.seal_with(Utc::now(), &crash).await.unwrap_err();
    let stale = std::fs::read(lh.hour_dir(ORDERS, hour(0)).join("part-g1-00000.jsonl.gz")).unwrap();

    // Partition 0 sorts first, so the first compacted object's content changes.
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(30)).await;
    let report = lh.seal(after_grace()).await;
    assert_eq!(report.units_sealed, 2, "H, and H+1 by grace: {report:?}");
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert_eq!((m.generation, m.total_records), (1, 110));
    let fresh = std::fs::read(lh.hour_dir(ORDERS, hour(0)).join("part-g1-00000.jsonl.gz")).unwrap();
    assert_ne!(fresh, stale, "the stale object was replaced");
    assert_eq!(m.objects[0].sha256, hub2lake::lake::digest_hex(&fresh));
    // Leftover higher-numbered stale objects (if any) are gone too.
    let names = lh.names(ORDERS, hour(0));
    assert!(parts_only(&names));
    assert_eq!(names.len(), m.objects.len() + 1, "{names:?}");
    assert_eq!(
        exactly_once(&lh.glob(ORDERS, hour(0))),
        keys("0", 0..=9).union(&keys("1", 0..=99)).cloned().collect()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_between_manifest_and_cleanup_then_rerun_removes_raw_objects() {
    for point in [FailPoint::AfterManifest, FailPoint::DuringCleanup] {
        let lh = LakeFixture::new();
        for b in 0..4 {
            lh.batch("0", b * 10..=b * 10 + 9, ORDERS, hour(0) + TimeDelta::minutes(b * 10))
                .await;
        }
        lh.batch("0", 40..=44, ORDERS, hour(1)).await;
        let crash = SealOptions {
            fail_at: Some(point),
            ..SealOptions::default()
        };
        let err = lh.seal_with(Utc::now(), &crash).await.unwrap_err();
        assert!(matches!(err, SealError::Injected(p) if p == point), "{err}");
        // Sealed and complete: the manifest's objects all exist.
        let m = lh
            .manifest(ORDERS, hour(0))
            .expect("manifest committed before the crash");
        for o in &m.objects {
            assert!(lh.root.join(&o.path).exists(), "{}", o.path);
        }
        assert_eq!(exactly_once(&lh.manifest_records(&m)), keys("0", 0..=39));
        let raw_left = lh.names(ORDERS, hour(0)).iter().filter(|n| n.starts_with("0-")).count();
        assert!(
            raw_left >= 3,
            "{point:?}: cleanup did not finish ({raw_left} raw objects left)"
        );

        let report = lh.seal(Utc::now()).await;
        assert_eq!(
            (report.units_cleaned, report.units_sealed),
            (1, 0),
            "{point:?}: {report:?}"
        );
        assert_eq!(report.objects_deleted, raw_left as u64);
        assert!(parts_only(&lh.names(ORDERS, hour(0))), "{point:?}");
        assert_eq!(
            lh.manifest(ORDERS, hour(0)),
            Some(m),
            "the commit record is not rewritten"
        );
        assert_eq!(exactly_once(&lh.glob(ORDERS, hour(0))), keys("0", 0..=39));
        assert_eq!(lh.seal(Utc::now()).await.units_already_sealed, 1);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn late_data_reopens_a_sealed_hour_and_reseals_it_as_generation_2_exactly_once() {
    let lh = LakeFixture::new();
    for b in 0..5 {
        lh.batch("0", b * 10..=b * 10 + 9, ORDERS, hour(0) + TimeDelta::minutes(b * 10))
            .await;
    }
    lh.batch("0", 50..=59, ORDERS, hour(1)).await;
    assert_eq!(lh.seal(Utc::now()).await.units_sealed, 1);
    let first = lh.manifest(ORDERS, hour(0)).unwrap();
    assert_eq!(first.generation, 1);

    // Late: a replay of partition 0 with new boundaries, and a partition that lagged.
    lh.batch("0", 35..=44, ORDERS, hour(0) + TimeDelta::minutes(30)).await;
    lh.batch("2", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(59)).await;
    let names = lh.names(ORDERS, hour(0));
    assert_eq!(
        names
            .iter()
            .filter(|n| !n.starts_with("part-") && !n.starts_with('_'))
            .count(),
        2
    );

    // Partition 2 has nothing past the hour: the unit waits for grace, then re-seals.
    let waiting = lh.seal(Utc::now()).await;
    assert_eq!((waiting.units_resealed, waiting.units_not_ready), (0, 2), "{waiting:?}");
    let report = lh.seal(after_grace()).await;
    assert_eq!(report.units_resealed, 1, "{report:?}");
    assert_eq!(report.duplicates_removed, 10);
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert_eq!((m.generation, m.inputs.previous_generation), (2, Some(1)));
    assert_eq!(m.reason, SealReason::Grace);
    assert_eq!((m.total_records, m.duplicates_removed), (60, 10));
    assert_eq!(m.inputs.raw_objects.len(), 7, "every raw object the receipts name");
    assert_eq!(
        m.inputs.previous_objects,
        first.objects.iter().map(|o| o.path.clone()).collect::<Vec<_>>()
    );
    assert!(m.objects.iter().all(|o| o.path.contains("/part-g2-")));
    let names = lh.names(ORDERS, hour(0));
    assert!(
        names.iter().all(|n| !n.starts_with("part-g1-")),
        "generation 1 removed: {names:?}"
    );
    assert!(parts_only(&names));
    assert_eq!(
        exactly_once(&lh.glob(ORDERS, hour(0))),
        keys("0", 0..=49).union(&keys("2", 0..=9)).cloned().collect()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn idle_partition_does_not_hold_an_hour_it_never_wrote_to() {
    let lh = LakeFixture::new();
    // Partition 0 writes orders in H and goes on into H+1.
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 10..=19, ORDERS, hour(1) + TimeDelta::minutes(10)).await;
    // Partition 1 writes customers in H only, then goes idle.
    lh.batch("1", 0..=9, CUSTOMERS, hour(0) + TimeDelta::minutes(20)).await;

    let report = lh.seal(Utc::now()).await;
    // orders/H: its only writer (0) is past the hour; idle partition 1 is not asked.
    // customers/H: its only writer (1) has nothing past the hour; grace not over.
    // orders/H+1: writer 0 has nothing past H+1 either.
    assert_eq!((report.units_sealed, report.units_not_ready), (1, 2), "{report:?}");
    assert_eq!(lh.manifest(ORDERS, hour(0)).unwrap().reason, SealReason::Watermark);
    assert!(lh.manifest(CUSTOMERS, hour(0)).is_none());
    assert!(lh.manifest(ORDERS, hour(1)).is_none());

    let report = lh.seal(after_grace()).await;
    assert_eq!((report.units_sealed, report.units_already_sealed), (2, 1), "{report:?}");
    assert_eq!(lh.manifest(CUSTOMERS, hour(0)).unwrap().reason, SealReason::Grace);
    assert_eq!(lh.manifest(ORDERS, hour(1)).unwrap().reason, SealReason::Grace);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_partition_that_wrote_to_the_hour_holds_it_until_grace() {
    let lh = LakeFixture::new();
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 10..=19, ORDERS, hour(1) + TimeDelta::minutes(10)).await;
    lh.batch("1", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(20)).await;

    let report = lh.seal(Utc::now()).await;
    assert_eq!((report.units_sealed, report.units_not_ready), (0, 2), "{report:?}");
    let report = lh.seal(after_grace()).await;
    assert_eq!(report.units_sealed, 2, "{report:?}");
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert_eq!((m.reason, m.total_records), (SealReason::Grace, 20));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_current_hour_is_never_sealed() {
    let lh = LakeFixture::with(|s| s.seal_grace = Duration::ZERO);
    let now = Utc::now();
    let current = now.duration_trunc(TimeDelta::hours(1)).unwrap();
    lh.batch("0", 0..=9, ORDERS, current).await;
    let report = lh.seal(now).await;
    assert_eq!((report.units_sealed, report.units_not_ready), (0, 1), "{report:?}");
    assert!(lh.manifest(ORDERS, current).is_none());
    // Once the hour is over, grace 0 seals it at once.
    let report = lh.seal(current + TimeDelta::hours(1) + TimeDelta::minutes(1)).await;
    assert_eq!(report.units_sealed, 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_stops_at_its_budget_and_the_next_run_resumes() {
    let lh = LakeFixture::with(|s| s.compression = Compression::None);
    for h in 0..3 {
        lh.batch("0", h * 10..=h * 10 + 9, ORDERS, hour(h) + TimeDelta::minutes(5))
            .await;
    }
    lh.batch("0", 30..=39, ORDERS, hour(3)).await;
    let one = SealOptions {
        max_units: Some(1),
        ..SealOptions::default()
    };
    let report = lh.seal_with(Utc::now(), &one).await.unwrap();
    assert_eq!((report.units_sealed, report.units_remaining), (1, 2), "{report:?}");
    assert!(lh.manifest(ORDERS, hour(0)).is_some(), "oldest first");
    assert!(lh.manifest(ORDERS, hour(1)).is_none());
    let report = lh.seal(Utc::now()).await;
    assert_eq!(
        (report.units_sealed, report.units_already_sealed, report.units_remaining),
        (2, 1, 0)
    );
    // Uncompressed lakes get uncompressed compacted objects.
    assert_eq!(lh.names(ORDERS, hour(2)), ["_manifest.json", "part-g1-00000.jsonl"]);
    assert_eq!(exactly_once(&lh.glob(ORDERS, hour(2))), keys("0", 20..=29));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_that_spreads_an_hour_over_folders_is_skipped_with_a_warning() {
    let lh = LakeFixture::with(|s| {
        s.path_template = PathTemplate::parse(
            "{database}/{collection}/{yyyy}/{mm}/{dd}/{hh}/{operation}/{partition}-{first_seq}-{last_seq}",
        )
        .unwrap();
    });
    lh.batch("0", 0..=9, ORDERS, hour(0)).await;
    // An update lands in another folder of the same hour.
    let update = EventHubBatch {
        partition: partition("0"),
        events: vec![EventData {
            body: EventBody::Text(change_event("0", 10, ORDERS).replace("\"insert\"", "\"update\"")),
            sequence_number: 10,
            offset: None,
            enqueued_time: Some(hour(0) + TimeDelta::minutes(1)),
            partition_key: None,
            properties: None,
        }],
        retry: None,
    };
    lh.ingestor.ingest(update).await.unwrap();
    let report = lh.seal(after_grace()).await;
    assert_eq!((report.units_sealed, report.units_skipped), (0, 1), "{report:?}");
    assert!(
        report.warnings.iter().any(|w| w.contains("spread over 2 folders")),
        "{report:?}"
    );
    assert!(report.log_lines().len() > 1, "warnings reach the host's Logs");
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_hour_compacts_in_bounded_memory_into_several_objects() {
    const PARTITIONS: i64 = 4;
    const BATCHES: i64 = 50;
    const PER_BATCH: i64 = 1000;
    let target: u64 = 256 << 10;
    let lh = LakeFixture::with(|s| s.seal_target_object_bytes = target);
    for p in 0..PARTITIONS {
        let pid = p.to_string();
        for b in 0..BATCHES {
            let first = b * PER_BATCH;
            lh.batch(
                &pid,
                first..=first + PER_BATCH - 1,
                ORDERS,
                hour(0) + TimeDelta::seconds(b * 60),
            )
            .await;
        }
        lh.batch(&pid, BATCHES * PER_BATCH..=BATCHES * PER_BATCH, ORDERS, hour(1))
            .await;
    }
    // One re-delivery with shifted boundaries, so de-duplication runs at scale too.
    lh.batch("0", 500..=1499, ORDERS, hour(0) + TimeDelta::seconds(30))
        .await;
    let total = (PARTITIONS * BATCHES * PER_BATCH) as u64;

    let report = lh.seal(Utc::now()).await;
    assert_eq!(report.units_sealed, 1, "{report:?}");
    assert_eq!((report.records_sealed, report.duplicates_removed), (total, 1000));
    let m = lh.manifest(ORDERS, hour(0)).unwrap();
    assert_eq!(m.total_records, total);
    assert!(m.objects.len() >= 4, "{} objects", m.objects.len());
    for o in &m.objects[..m.objects.len() - 1] {
        assert!(o.bytes >= target && o.bytes < target + (64 << 10), "{} bytes", o.bytes);
    }
    assert_eq!(m.objects.iter().map(|o| o.records).sum::<u64>(), total);
    // Every event once, in (partition, sequence) order across objects.
    let mut expected = (0i64, 0i64);
    let mut count = 0u64;
    for o in &m.objects {
        let per_object: BTreeMap<&str, u64> = o
            .partitions
            .iter()
            .map(|p| (p.partition_id.as_str(), p.records))
            .collect();
        assert_eq!(per_object.values().sum::<u64>(), o.records);
        for (pid, seq, _) in lines(&lh.root.join(&o.path)) {
            let p: i64 = pid.parse().unwrap();
            if (p, seq) != expected {
                assert_eq!((p, seq), (expected.0 + 1, 0), "next event after {expected:?}");
            }
            expected = (p, seq + 1);
            count += 1;
        }
    }
    assert_eq!(count, total);
    assert!(parts_only(&lh.names(ORDERS, hour(0))));
}

/// The real `handler` binary on a free port, killed on drop.
struct Handler {
    port: u16,
    child: std::process::Child,
}

impl Handler {
    fn start(lake: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
            .env("HUB2LAKE_LAKE_URL", format!("file://{}", lake.display()))
            .env("HUB2LAKE_LOG_FORMAT", "text")
            .env("RUST_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn the handler");
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "handler did not listen on {port}");
            std::thread::sleep(Duration::from_millis(25));
        }
        Self { port, child }
    }

    async fn post(&self, function: &str, body: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{}/{function}", self.port))
            .header("Content-Type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

impl Drop for Handler {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn seal_over_http_answers_200_with_logs() {
    let lh = LakeFixture::new();
    lh.batch("0", 0..=9, ORDERS, hour(0) + TimeDelta::minutes(10)).await;
    lh.batch("0", 10..=19, ORDERS, hour(1) + TimeDelta::minutes(10)).await;
    let handler = Handler::start(&lh.root);

    let (status, body) = handler.post("seal", include_str!("fixtures/timer.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["Outputs"], serde_json::json!({}));
    assert!(body["ReturnValue"].is_null());
    let logs = body["Logs"].as_array().expect("Logs is an array");
    let summary = logs[0].as_str().unwrap();
    assert!(summary.contains("1 hours sealed"), "{summary}");
    assert!(lh.manifest(ORDERS, hour(0)).is_some());

    let (status, body) = handler.post("seal", include_str!("fixtures/timer-pastdue.json")).await;
    assert_eq!(status, 200, "{body}");
    let summary = body["Logs"][0].as_str().unwrap();
    assert!(
        summary.contains("1 already sealed") && summary.contains("past due"),
        "{summary}"
    );

    let (status, body) = handler.post("seal", r#"{"Data":{"timer":42}}"#).await;
    assert_eq!(status, 400, "{body}");
}
