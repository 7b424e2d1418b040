//! The operator library (`hub2lake_cli::ops`): ls, verify, get and replay against lakes made
//! by ingesting host-shaped batches through the library, on the local filesystem and on
//! Azurite.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use chrono::{DateTime, DurationRound, TimeDelta, TimeZone, Utc};
use hub2lake::config::{Compression, EventEncoding, Settings};
use hub2lake::eventhub::{EventSink, FileSink, FileSinkLine, OutEvent, SinkError, Target};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition};
use hub2lake::host::{EventHubBatch, Invocation, TimerInfo};
use hub2lake::ingest::Ingestor;
use hub2lake::lake::Lake;
use hub2lake_cli::ops::get::{GetOptions, MergeTarget};
use hub2lake_cli::ops::inventory::Inventory;
use hub2lake_cli::ops::merge::{DedupBy, SortOptions};
use hub2lake_cli::ops::range::HourRange;
use hub2lake_cli::ops::replay::{self, PartitionMode, ReplayOptions};
use hub2lake_cli::ops::verify::{Finding, RemovedCopyNamed, VerifyOptions, VerifyReport, Warning};
use hub2lake_cli::ops::{get, ls, verify, OpsError};
use serde_json::{json, Value};

#[path = "shared/lake_fixture.rs"]
mod lake_fixture;
use lake_fixture::LakeFixture;

/// A fixed hour long past: events are placed by their enqueued time.
fn hour(offset: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap() + TimeDelta::hours(offset)
}

/// What an event's body is.
#[derive(Clone, Copy)]
enum Body {
    Change,
    Pretty,
    Text,
    Broken,
}

fn body(kind: Body, pid: &str, seq: i64) -> Vec<u8> {
    match kind {
        Body::Change => json!({
            "_id": {"_data": format!("8263-{pid}-{seq:08}")},
            "operationType": "insert",
            "clusterTime": {"$timestamp": {"t": 1736935200, "i": seq}},
            "ns": {"db": "shop", "coll": "orders"},
            "documentKey": {"_id": {"$oid": format!("65a5{seq:020}")}},
            "fullDocument": {"_id": {"$oid": format!("65a5{seq:020}")}, "sku": format!("s-{seq}"), "qty": seq % 7, "note": "a \"quoted\" word"},
        })
        .to_string()
        .into_bytes(),
        Body::Pretty => serde_json::to_string_pretty(&json!({"kind": "heartbeat", "seq": seq, "tags": ["a", "b"]}))
            .unwrap()
            .into_bytes(),
        Body::Text => format!("plain text event {seq} from {pid}").into_bytes(),
        Body::Broken => format!("{{\"broken\": {seq}").into_bytes(),
    }
}

fn kind_of(seq: i64) -> Body {
    match seq % 10 {
        3 => Body::Pretty,
        7 => Body::Text,
        _ => Body::Change,
    }
}

fn wire_events(pid: &str, seqs: RangeInclusive<i64>, at: DateTime<Utc>, kind: impl Fn(i64) -> Body) -> Vec<WireEvent> {
    seqs.map(|seq| WireEvent {
        body: body(kind(seq), pid, seq),
        sequence_number: seq,
        offset: seq * 1000,
        enqueued_time: at + TimeDelta::milliseconds(seq),
        partition_key: (seq % 4 != 0).then(|| format!("key-{}", seq % 3)),
        properties: json!({"source": "ops-test", "n": seq, "flag": seq % 2 == 0}),
    })
    .collect()
}

/// A batch exactly as the Functions host sends it, decoded as the handler does.
fn host_batch(pid: &str, events: &[WireEvent]) -> EventHubBatch {
    let partition = WirePartition {
        partition_id: pid.to_string(),
        ..WirePartition::default()
    };
    let body = eventhub_request("events", &partition, events, WireDataType::String, None, "ingest");
    let inv = Invocation::parse(body.as_bytes()).unwrap();
    EventHubBatch::from_invocation(&inv, EventEncoding::Auto, "hub", "$Default").unwrap()
}

/// The shared lake fixture, plus every event ingested (what replay must send back).
struct TestLake {
    fixture: LakeFixture,
    /// Every event ingested, by (partition, sequence number).
    sent: BTreeMap<(String, i64), WireEvent>,
}

impl std::ops::Deref for TestLake {
    type Target = LakeFixture;

    fn deref(&self) -> &LakeFixture {
        &self.fixture
    }
}

impl TestLake {
    fn new() -> Self {
        Self::with(|_| {})
    }

    fn with(adjust: impl FnOnce(&mut Settings)) -> Self {
        Self {
            fixture: LakeFixture::with(adjust),
            sent: BTreeMap::new(),
        }
    }

    fn on(lake: Lake, settings: Settings, dir: tempfile::TempDir) -> Self {
        let root = dir.path().join("unused");
        Self {
            fixture: LakeFixture::on(lake, settings, dir, root),
            sent: BTreeMap::new(),
        }
    }

    async fn ingest_with(
        &mut self,
        pid: &str,
        seqs: RangeInclusive<i64>,
        at: DateTime<Utc>,
        kind: impl Fn(i64) -> Body,
    ) {
        let events = wire_events(pid, seqs, at, kind);
        for e in &events {
            self.sent.insert((pid.to_string(), e.sequence_number), e.clone());
        }
        self.ingestor.ingest(host_batch(pid, &events)).await.unwrap();
    }

    async fn ingest(&mut self, pid: &str, seqs: RangeInclusive<i64>, at: DateTime<Utc>) {
        self.ingest_with(pid, seqs, at, kind_of).await;
    }

    async fn inventory(&self) -> Inventory {
        Inventory::load(&self.lake, &self.settings.path_template, 8)
            .await
            .unwrap()
    }

    async fn verify(&self, range: HourRange) -> VerifyReport {
        let inv = self.inventory().await;
        verify::verify(&self.lake, &inv, &VerifyOptions { range, concurrency: 4 })
            .await
            .unwrap()
    }

    /// Data files (not receipts, manifests or dead letters) below the lake root.
    fn data_files(&self) -> Vec<PathBuf> {
        files(&self.root)
            .into_iter()
            .filter(|p| {
                let rel = p.strip_prefix(&self.root).unwrap().to_string_lossy().to_string();
                !rel.starts_with('_') && rel.contains(".jsonl")
            })
            .collect()
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, &mut out);
    out.sort();
    out
}

fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap().to_string_lossy().to_string()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(bytes), &mut out).unwrap();
    out
}

fn get_opts(range: HourRange, out_dir: &Path) -> GetOptions {
    GetOptions {
        range,
        database: None,
        collection: None,
        out_dir: out_dir.to_path_buf(),
        decompress: false,
        sealed_only: false,
        dead_letters: false,
        concurrency: 4,
        merge: None,
    }
}

fn replay_opts(range: HourRange, max_batch_bytes: usize, position: Option<PathBuf>, temp: &Path) -> ReplayOptions {
    ReplayOptions {
        range,
        database: None,
        collection: None,
        sealed_only: false,
        partition_mode: PartitionMode::Auto,
        max_batch_bytes,
        window_targets: ReplayOptions::DEFAULT_WINDOW_TARGETS,
        position,
        sort: SortOptions {
            memory_budget: 1 << 20,
            temp_dir: temp.to_path_buf(),
        },
        concurrency: 4,
    }
}

fn gaps(report: &VerifyReport) -> Vec<(String, i64, i64)> {
    report
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Gap {
                partition_id,
                first_missing,
                last_missing,
                ..
            } => Some((partition_id.clone(), *first_missing, *last_missing)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_clean_lake_lists_and_verifies_clean() {
    let mut t = TestLake::new();
    for pid in ["0", "1"] {
        t.ingest(pid, 0..=49, hour(0) + TimeDelta::minutes(5)).await;
        t.ingest(pid, 50..=99, hour(0) + TimeDelta::minutes(50)).await;
        t.ingest(pid, 100..=149, hour(1) + TimeDelta::minutes(1)).await;
    }
    let inv = t.inventory().await;
    let listing = ls::listing(&inv, "test", &HourRange::all(), None, None);
    let rows: Vec<(String, String, u64, u64, bool)> = listing
        .units
        .iter()
        .map(|u| (u.hour.clone(), u.collection.clone(), u.records, u.partitions, u.sealed))
        .collect();
    // Pretty and text bodies are not change events: they land in unrouted/unrouted.
    let orders_h0 = rows.iter().find(|r| r.0 == "2025-01-15T10" && r.1 == "orders").unwrap();
    assert_eq!((orders_h0.3, orders_h0.4), (2, false));
    let total: u64 = listing.units.iter().map(|u| u.records).sum();
    assert_eq!(total, 300);
    assert_eq!(listing.totals.records, 300);
    assert_eq!(listing.totals.hours, 2);
    assert_eq!(listing.totals.gaps, 0);
    let table = ls::render_table(&listing);
    assert!(
        table.contains("2025-01-15T11") && table.contains("orders") && table.contains("open"),
        "{table}"
    );

    let only = ls::listing(
        &inv,
        "test",
        &HourRange::hours(hour(1), hour(1)),
        Some("shop"),
        Some("orders"),
    );
    assert_eq!(only.units.len(), 1);
    assert_eq!(only.units[0].objects, 2);

    let report = t.verify(HourRange::all()).await;
    assert!(report.clean, "{}", report.render());
    assert_eq!(report.checked.records_read, 300);
    assert_eq!(report.checked.receipts, 6);
    assert!(report.render().contains("OK: the lake is clean"));
}

#[tokio::test]
async fn a_hole_in_a_partition_is_named_exactly() {
    let mut t = TestLake::new();
    t.ingest("0", 0..=99, hour(0)).await;
    t.ingest("0", 200..=299, hour(0) + TimeDelta::minutes(30)).await;
    t.ingest("1", 0..=299, hour(0)).await;
    let report = t.verify(HourRange::all()).await;
    assert!(!report.clean);
    assert_eq!(gaps(&report), vec![("0".to_string(), 100, 199)]);
    let Some(Finding::Gap {
        missing,
        hour_before,
        hour_after,
        receipt_before,
        receipt_after,
        ..
    }) = report.findings.iter().find(|f| matches!(f, Finding::Gap { .. }))
    else {
        unreachable!()
    };
    assert_eq!(*missing, 100);
    assert_eq!(hour_before.as_deref(), Some("2025-01-15T10"));
    assert_eq!(hour_after.as_deref(), Some("2025-01-15T10"));
    assert!(receipt_before.ends_with("/0/0-99.json"), "{receipt_before}");
    assert!(receipt_after.ends_with("/0/200-299.json"), "{receipt_after}");
    let text = report.render();
    assert!(text.contains("100..199") && text.contains("FAILED"), "{text}");
    let listing = ls::listing(&t.inventory().await, "test", &HourRange::all(), None, None);
    assert_eq!(listing.totals.gaps, 1);

    // A range that ends before the gap's hours does not report it.
    let before = t.verify(HourRange::hours(hour(-3), hour(-2))).await;
    assert!(before.clean, "{}", before.render());
}

/// Sets a file's modification time `minutes` into the past.
fn age_file(path: &std::path::Path, minutes: u64) {
    let when = std::time::SystemTime::now() - std::time::Duration::from_secs(60 * minutes);
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(when)
        .unwrap();
}

/// A lake with one delivery (partition 0, seq 0..=19) and a copy of its data object
/// named `name`, written `minutes` ago: an object no receipt names.
async fn lake_with_unnamed_copy(name: &str, minutes: u64) -> (TestLake, PathBuf) {
    let mut t = TestLake::new();
    t.ingest("0", 0..=19, hour(0)).await;
    let data = t.data_files();
    let copy = data[0].with_file_name(name);
    std::fs::copy(&data[0], &copy).unwrap();
    age_file(&copy, minutes);
    (t, copy)
}

#[tokio::test]
async fn orphans_are_reported() {
    // Older than any delivery can be in flight.
    let (t, orphan) = lake_with_unnamed_copy("0-900-999.jsonl.gz", 16).await;
    let stray = t.root.join("shop/notes.jsonl");
    std::fs::write(&stray, "{}\n").unwrap();
    let report = t.verify(HourRange::all()).await;
    let orphans: Vec<(&str, Option<&str>)> = report
        .findings
        .iter()
        .filter_map(|f| match f {
            Finding::Orphan { path, hour, .. } => Some((path.as_str(), hour.as_deref())),
            _ => None,
        })
        .collect();
    assert_eq!(
        orphans,
        vec![
            (rel(&t.root, &orphan).as_str(), Some("2025-01-15T10")),
            ("shop/notes.jsonl", None)
        ],
        "{}",
        report.render()
    );
    assert_eq!(report.findings.len(), 2, "{}", report.render());
    let listing = ls::listing(&t.inventory().await, "test", &HourRange::all(), None, None);
    assert_eq!(listing.totals.orphans, 1);
}

/// A delivery in flight has written its objects but not yet its receipt: `verify` on
/// a live lake warns instead of failing, until the object is older than a delivery
/// can take.
#[tokio::test]
async fn a_recent_object_without_receipt_is_awaiting_its_receipt_not_an_orphan() {
    let (t, in_flight) = lake_with_unnamed_copy("0-20-39.jsonl.gz", 2).await;
    let report = t.verify(HourRange::all()).await;
    assert!(report.clean, "{}", report.render());
    let path = rel(&t.root, &in_flight);
    match report.warnings.as_slice() {
        [Warning::AwaitingReceipt {
            path: p,
            hour,
            age_seconds,
            ..
        }] => {
            assert_eq!((p.as_str(), hour.as_str()), (path.as_str(), "2025-01-15T10"));
            assert!((100..=200).contains(age_seconds), "{age_seconds}");
        }
        other => panic!("{other:?}\n{}", report.render()),
    }
    let text = report.render();
    assert!(
        text.contains("WARN awaiting receipt") && text.contains("OK: no problems, 1 warning"),
        "{text}"
    );

    // Past the window it is an orphan.
    age_file(&in_flight, 16);
    let report = t.verify(HourRange::all()).await;
    assert!(!report.clean && report.warnings.is_empty(), "{}", report.render());
    assert!(
        matches!(report.findings.as_slice(), [Finding::Orphan { path: p, .. }] if *p == path),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn a_truncated_object_is_corrupt() {
    let mut t = TestLake::new();
    t.ingest_with("0", 0..=999, hour(0), |_| Body::Change).await;
    let data = t.data_files();
    assert_eq!(data.len(), 1);
    let bytes = std::fs::read(&data[0]).unwrap();
    std::fs::write(&data[0], &bytes[..bytes.len() / 2]).unwrap();
    let report = t.verify(HourRange::all()).await;
    let path = rel(&t.root, &data[0]);
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Corrupt { path: p, .. } if *p == path)),
        "{}",
        report.render()
    );
    assert!(report
        .findings
        .iter()
        .any(|f| matches!(f, Finding::SizeMismatch { path: p, .. } if *p == path)));

    // A missing object is named with the receipt listing it.
    std::fs::remove_file(&data[0]).unwrap();
    let report = t.verify(HourRange::all()).await;
    assert!(
        matches!(&report.findings[..], [Finding::MissingObject { path: p, listed_by }] if *p == path && listed_by.ends_with("0-999.json")),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn dead_letters_are_listed_and_verified() {
    let mut t = TestLake::new();
    t.ingest_with(
        "0",
        0..=9,
        hour(0),
        |s| if s == 4 { Body::Broken } else { Body::Change },
    )
    .await;
    let inv = t.inventory().await;
    let listing = ls::listing(&inv, "test", &HourRange::all(), None, None);
    assert_eq!(listing.dead_letters.len(), 1);
    assert_eq!(listing.dead_letters[0].records, 1);
    let report = t.verify(HourRange::all()).await;
    assert!(report.clean, "{}", report.render());
    assert_eq!(report.checked.dead_letter_objects, 1);
}

#[tokio::test]
async fn sealed_hours_verify_clean_and_undeclared_duplicates_fail() {
    // Hours two days back, so the seal's grace period is long over.
    let h = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(48);
    for compact in [true, false] {
        let mut t = TestLake::with(|s| s.seal_compact = compact);
        // A re-delivery with other boundaries: 30..=59 twice.
        t.ingest_with("0", 0..=59, h, |_| Body::Change).await;
        t.ingest_with("0", 30..=99, h + TimeDelta::minutes(1), |_| Body::Change)
            .await;
        t.ingest_with("1", 0..=49, h, |_| Body::Change).await;
        t.ingest_with("0", 100..=109, h + TimeDelta::hours(1), |_| Body::Change)
            .await;
        t.ingest_with("1", 50..=59, h + TimeDelta::hours(1), |_| Body::Change)
            .await;

        let before = t.verify(HourRange::all()).await;
        assert!(before.clean, "{}", before.render());
        assert_eq!(before.duplicates_unsealed, 30);

        let now = Utc::now() + TimeDelta::minutes(20);
        hub2lake::seal::run(&t.settings, &t.lake, &TimerInfo::default(), now)
            .await
            .unwrap();
        let inv = t.inventory().await;
        let sealed = ls::listing(&inv, "test", &HourRange::hours(h, h), None, None);
        assert_eq!(sealed.units.len(), 1);
        assert!(sealed.units[0].sealed, "compact={compact}");
        assert_eq!(sealed.units[0].records, 150, "compact={compact}");
        let report = t.verify(HourRange::all()).await;
        assert!(report.clean, "compact={compact}: {}", report.render());
        if compact {
            assert_eq!(report.duplicates_unsealed, 0);
            continue;
        }
        // Without compaction the manifest declares the copies it keeps; a manifest that
        // promises none while the hour holds some fails.
        let manifest_path = t
            .root
            .join(&inv.units.values().next().unwrap().manifest.as_ref().unwrap().path);
        let mut manifest: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
        assert_eq!(manifest["duplicates_found"], 30);
        manifest["duplicates_found"] = json!(0);
        std::fs::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
        let report = t.verify(HourRange::all()).await;
        assert!(
            matches!(
                &report.findings[..],
                [Finding::SealedDuplicates {
                    duplicates: 30,
                    declared: 0,
                    ..
                }]
            ),
            "{}",
            report.render()
        );
    }
}

/// Two days back, so the seal's grace period is long over.
fn sealable_hour() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(48)
}

impl TestLake {
    /// A delivery whose objects are written and whose receipt is not: a file where the
    /// partition's receipt folder goes makes the receipt write fail (the handler then
    /// answers 500). Returns the objects it left, with their bytes.
    async fn ingest_without_receipt(
        &mut self,
        pid: &str,
        seqs: RangeInclusive<i64>,
        at: DateTime<Utc>,
    ) -> Vec<(PathBuf, Vec<u8>)> {
        let before = self.data_files();
        let line = WirePartition::default();
        let blocker = self
            .root
            .join("_receipts")
            .join(&line.eventhub)
            .join(&line.consumer_group)
            .join(pid);
        std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
        assert!(!blocker.exists(), "the partition has no receipt yet");
        std::fs::write(&blocker, b"x").unwrap();
        let events = wire_events(pid, seqs, at, |_| Body::Change);
        let result = self.ingestor.ingest(host_batch(pid, &events)).await;
        std::fs::remove_file(&blocker).unwrap();
        assert!(result.is_err(), "the receipt write fails");
        let left: Vec<PathBuf> = self.data_files().into_iter().filter(|p| !before.contains(p)).collect();
        left.into_iter()
            .map(|p| {
                let bytes = std::fs::read(&p).unwrap();
                (p, bytes)
            })
            .collect()
    }

    /// Runs the seal as of `now` (real receipts, real objects).
    async fn seal(&self, now: DateTime<Utc>) -> hub2lake::seal::SealReport {
        hub2lake::seal::run(&self.settings, &self.lake, &TimerInfo::default(), now)
            .await
            .unwrap()
    }
}

/// A delivery in flight while the seal ran (objects written, receipt not yet — here
/// the receipt failed): the seal keeps the object and lists it in the manifest's
/// `unreceipted`, with a `_recheck` marker. That is reported as a warning naming the
/// events only it holds, not as an orphan, and the marker is no foreign file.
#[tokio::test]
async fn an_object_the_seal_keeps_without_receipt_is_a_warning_not_an_orphan() {
    let h = sealable_hour();
    let mut t = TestLake::new();
    t.ingest_with("0", 0..=99, h, |_| Body::Change).await;
    // Partition 1's first delivery: the seal cannot tell it from one in flight.
    let left = t
        .ingest_without_receipt("1", 100..=149, h + TimeDelta::minutes(30))
        .await;
    assert_eq!(left.len(), 1);
    let kept = rel(&t.root, &left[0].0);
    let report = t.seal(Utc::now() + TimeDelta::minutes(20)).await;
    assert_eq!((report.units_sealed, report.unreceipted_left), (1, 1), "{report:?}");
    let folder = left[0].0.parent().unwrap();
    assert!(folder.join("_recheck").exists() && left[0].0.exists());

    let inv = t.inventory().await;
    assert!(inv.foreign.is_empty(), "{:?}", inv.foreign);
    let listing = ls::listing(&inv, "test", &HourRange::all(), None, None);
    let row = &listing.units[0];
    assert_eq!(
        (row.sealed, row.orphans, row.unreceipted, row.recheck, row.records),
        (true, 0, 1, true, 100),
        "{row:?}"
    );
    assert_eq!(listing.totals.unreceipted, 1);
    let table = ls::render_table(&listing);
    assert!(
        table.contains("(1 unreceipted)") && table.contains("1 object without receipt kept in sealed hours"),
        "{table}"
    );

    let report = t.verify(HourRange::all()).await;
    assert!(report.clean && report.findings.is_empty(), "{}", report.render());
    let [Warning::Unreceipted {
        path,
        records,
        uncovered,
        problem: None,
        ..
    }] = &report.warnings[..]
    else {
        panic!("one warning: {}", report.render())
    };
    assert_eq!((path, *records), (&kept, 50));
    let runs: Vec<(&str, i64, i64, u64)> = uncovered
        .iter()
        .map(|r| {
            (
                r.partition_id.as_str(),
                r.first_sequence_number,
                r.last_sequence_number,
                r.records,
            )
        })
        .collect();
    assert_eq!(runs, [("1", 100, 149, 50)]);
    let text = report.render();
    assert!(
        text.contains(&format!("WARN unreceipted: {kept}"))
            && text.contains("partition 1 sequence numbers 100..149 (50 events)")
            && text.contains("docs/recovery.md")
            && text.contains("OK: no problems, 1 warning"),
        "{text}"
    );
    assert!(!text.contains("FAIL") && !text.contains("not a lake object"), "{text}");
}

/// A failed delivery's object whose events a re-delivery covers is removed by the seal
/// (`removed_copies`). A delivery that was in flight then writes its receipt naming
/// the removed object: its events are sealed, so that is no missing object — as long
/// as the removal record matches it (path and SHA-256), as the seal requires.
#[tokio::test]
async fn a_receipt_naming_a_copy_the_seal_removed_is_no_missing_object() {
    let h = sealable_hour();
    let mut t = TestLake::new();
    let left = t.ingest_without_receipt("0", 0..=99, h).await;
    let [(copy_file, copy_bytes)] = &left[..] else {
        panic!("{left:?}")
    };
    let copy = rel(&t.root, copy_file);
    t.ingest_with("0", 0..=149, h + TimeDelta::minutes(1), |_| Body::Change)
        .await;
    let now = Utc::now() + TimeDelta::minutes(20);
    let report = t.seal(now).await;
    assert_eq!((report.units_sealed, report.copies_removed), (1, 1), "{report:?}");
    assert!(!copy_file.exists());

    let inv = t.inventory().await;
    let row = &ls::listing(&inv, "test", &HourRange::all(), None, None).units[0];
    assert_eq!(
        (row.removed_copies, row.unreceipted, row.recheck),
        (1, 0, true),
        "{row:?}"
    );
    let report = t.verify(HourRange::all()).await;
    assert!(report.clean && report.warnings.is_empty(), "{}", report.render());
    assert_eq!(report.render().lines().last(), Some("OK: the lake is clean"));

    // The delivery in flight had found its object before the removal, and writes its
    // receipt after it.
    std::fs::write(copy_file, copy_bytes).unwrap();
    t.ingest_with("0", 0..=99, h, |_| Body::Change).await;
    std::fs::remove_file(copy_file).unwrap();
    let report = t.verify(HourRange::all()).await;
    assert!(report.clean, "{}", report.render());
    assert_eq!(
        report.removed_copies_named,
        [RemovedCopyNamed {
            path: copy.clone(),
            receipt: "_receipts/mongo-changes/hub2lake/0/0-99.json".into(),
            manifest: rel(&t.root, &copy_file.with_file_name("_manifest.json")),
        }]
    );
    assert!(
        report.render().contains("a copy the seal removed"),
        "{}",
        report.render()
    );

    // A removal record of another object under that name does not vouch for it.
    let manifest_file = copy_file.with_file_name("_manifest.json");
    let original = std::fs::read(&manifest_file).unwrap();
    let mut manifest: Value = serde_json::from_slice(&original).unwrap();
    manifest["removed_copies"][0]["sha256"] = json!("0000");
    std::fs::write(&manifest_file, serde_json::to_vec(&manifest).unwrap()).unwrap();
    let report = t.verify(HourRange::all()).await;
    assert!(
        matches!(&report.findings[..], [Finding::MissingObject { path, listed_by }] if *path == copy && listed_by.ends_with("/0-99.json")),
        "{}",
        report.render()
    );
    std::fs::write(&manifest_file, &original).unwrap();

    // The next seal run records the receipt as consumed: nothing left to explain.
    let report = t.seal(now).await;
    assert_eq!(report.manifests_updated, 1, "{report:?}");
    let report = t.verify(HourRange::all()).await;
    assert!(
        report.clean && report.removed_copies_named.is_empty(),
        "{}",
        report.render()
    );
}

#[tokio::test]
async fn get_copies_a_range_byte_for_byte_and_resumes() {
    let mut t = TestLake::new();
    for pid in ["0", "1", "2"] {
        t.ingest(pid, 0..=29, hour(0)).await;
        t.ingest(pid, 30..=59, hour(0) + TimeDelta::minutes(40)).await;
        t.ingest(pid, 60..=89, hour(1)).await;
    }
    let range = HourRange::hours(hour(0), hour(0));
    let expected: Vec<(String, Vec<u8>)> = t
        .data_files()
        .into_iter()
        .map(|p| (rel(&t.root, &p), std::fs::read(&p).unwrap()))
        .filter(|(r, _)| r.contains("/2025/01/15/10/"))
        .collect();
    assert!(expected.len() >= 12, "{}", expected.len());
    let inv = t.inventory().await;

    let out = tempfile::tempdir().unwrap();
    let report = get::get(&t.lake, &inv, &get_opts(range, out.path()), &())
        .await
        .unwrap();
    assert_eq!(report.fetched_objects as usize, expected.len());
    assert_eq!(report.skipped_objects, 0);
    let got: Vec<(String, Vec<u8>)> = files(out.path())
        .into_iter()
        .map(|p| (rel(out.path(), &p), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(got, expected);

    // An interrupted earlier run: two complete files and one cut short.
    let out = tempfile::tempdir().unwrap();
    for (i, (path, bytes)) in expected.iter().take(3).enumerate() {
        let dest = out.path().join(path);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        let keep = if i == 2 { bytes.len() / 2 } else { bytes.len() };
        std::fs::write(&dest, &bytes[..keep]).unwrap();
    }
    let report = get::get(&t.lake, &inv, &get_opts(range, out.path()), &())
        .await
        .unwrap();
    assert_eq!(report.skipped_objects, 2);
    assert_eq!(report.fetched_objects as usize, expected.len() - 2);
    let got: Vec<(String, Vec<u8>)> = files(out.path())
        .into_iter()
        .map(|p| (rel(out.path(), &p), std::fs::read(&p).unwrap()))
        .collect();
    assert_eq!(got, expected);

    // Decompressed, with markers: a second run fetches nothing.
    let out = tempfile::tempdir().unwrap();
    let mut opts = get_opts(range, out.path());
    opts.decompress = true;
    opts.database = Some("shop".into());
    let first = get::get(&t.lake, &inv, &opts, &()).await.unwrap();
    let shop: Vec<&(String, Vec<u8>)> = expected.iter().filter(|(p, _)| p.starts_with("shop/")).collect();
    assert_eq!(first.fetched_objects as usize, shop.len());
    for (path, bytes) in &shop {
        let local = out.path().join(path.strip_suffix(".gz").unwrap());
        assert_eq!(std::fs::read(&local).unwrap(), gunzip(bytes), "{path}");
    }
    let second = get::get(&t.lake, &inv, &opts, &()).await.unwrap();
    assert_eq!(
        (second.fetched_objects, second.skipped_objects as usize),
        (0, shop.len())
    );
}

#[tokio::test]
async fn merge_writes_each_event_once_in_order() {
    let mut t = TestLake::new();
    // Re-deliveries with other boundaries put events in two objects each.
    t.ingest("0", 0..=49, hour(0)).await;
    t.ingest("0", 30..=79, hour(0) + TimeDelta::minutes(1)).await;
    t.ingest("0", 70..=99, hour(0) + TimeDelta::minutes(2)).await;
    t.ingest("10", 0..=9, hour(0)).await;
    t.ingest("2", 5..=14, hour(0)).await;
    t.ingest("2", 0..=9, hour(0)).await;
    let inv = t.inventory().await;
    for dedup_by in [DedupBy::Seq, DedupBy::EventId] {
        let out = tempfile::tempdir().unwrap();
        let merged = out.path().join("merged/day.jsonl");
        let mut opts = get_opts(HourRange::all(), &out.path().join("files"));
        opts.merge = Some(MergeTarget {
            path: merged.clone(),
            dedup_by,
            memory_budget: 4096,
        });
        let report = get::get(&t.lake, &inv, &opts, &()).await.unwrap();
        let m = report.merge.unwrap();
        assert_eq!(m.records_in, 50 + 50 + 30 + 10 + 10 + 10);
        assert_eq!(m.records_out, 100 + 10 + 15);
        assert_eq!(m.duplicates_dropped, 20 + 10 + 5);
        assert!(m.spilled_runs > 1, "a small budget spills: {}", m.spilled_runs);
        let text = std::fs::read_to_string(&merged).unwrap();
        let keys: Vec<(String, i64)> = text
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| {
                (
                    v["partition_id"].as_str().unwrap().to_string(),
                    v["sequence_number"].as_i64().unwrap(),
                )
            })
            .collect();
        let mut want: Vec<(String, i64)> = (0..=99).map(|s| ("0".to_string(), s)).collect();
        want.extend((0..=14).map(|s| ("2".to_string(), s)));
        want.extend((0..=9).map(|s| ("10".to_string(), s)));
        assert_eq!(keys, want, "{dedup_by:?}");
        let leftovers: Vec<_> = std::fs::read_dir(merged.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("day.jsonl")]);
    }
}

/// A lake written partly before and partly after HUB2LAKE_COMPRESSION changed from
/// gzip to zstd: every operator command reads both kinds of object alike.
#[tokio::test]
async fn ls_verify_get_merge_and_replay_read_a_lake_of_gzip_and_zstd_objects() {
    let mut t = TestLake::with(|s| s.compression = Compression::Zstd { level: 3 });
    let mut gzip_settings = t.settings.clone();
    gzip_settings.compression = Compression::Gzip { level: 6 };
    let gzip_ingestor = Ingestor::new(Arc::new(gzip_settings), t.lake.clone());
    let zstd_ingestor = std::mem::replace(&mut t.fixture.ingestor, gzip_ingestor);
    t.ingest("0", 0..=49, hour(0)).await;
    t.fixture.ingestor = zstd_ingestor;
    // Re-delivered from 30 (20 copies), a second partition, and the next hour.
    t.ingest("0", 30..=79, hour(0) + TimeDelta::minutes(1)).await;
    t.ingest("1", 0..=19, hour(0)).await;
    t.ingest("0", 80..=99, hour(1)).await;
    let names: Vec<String> = t.data_files().iter().map(|p| rel(&t.root, p)).collect();
    assert!(names.iter().any(|n| n.ends_with(".jsonl.gz")), "{names:?}");
    assert!(names.iter().any(|n| n.ends_with(".jsonl.zst")), "{names:?}");

    let inv = t.inventory().await;
    let listing = ls::listing(&inv, "test", &HourRange::all(), None, None);
    assert_eq!(listing.totals.records, 50 + 50 + 20 + 20);
    assert_eq!(listing.totals.hours, 2);
    let report = t.verify(HourRange::all()).await;
    assert!(report.clean, "{}", report.render());
    assert_eq!(report.checked.records_read, 140);

    // get --decompress: one .jsonl per object, whatever its encoding.
    let out = tempfile::tempdir().unwrap();
    let mut opts = get_opts(HourRange::all(), out.path());
    opts.decompress = true;
    let got = get::get(&t.lake, &inv, &opts, &()).await.unwrap();
    assert_eq!(got.fetched_objects as usize, names.len());
    for name in &names {
        let stored = std::fs::read(t.root.join(name)).unwrap();
        let stem = name
            .strip_suffix(".gz")
            .or_else(|| name.strip_suffix(".zst"))
            .unwrap_or(name);
        let local = std::fs::read(out.path().join(stem)).unwrap();
        assert_eq!(local, hub2lake::lake::codec::decode_object(&stored).unwrap(), "{name}");
        assert!(serde_json::from_slice::<Value>(local.split(|b| *b == b'\n').next().unwrap()).is_ok());
    }

    // --merge: each event once across encodings.
    let merged = out.path().join("merged.jsonl");
    let mut opts = get_opts(HourRange::all(), &out.path().join("files"));
    opts.merge = Some(MergeTarget {
        path: merged.clone(),
        dedup_by: DedupBy::Seq,
        memory_budget: 1 << 20,
    });
    let m = get::get(&t.lake, &inv, &opts, &()).await.unwrap().merge.unwrap();
    assert_eq!((m.records_in, m.records_out, m.duplicates_dropped), (140, 120, 20));

    // replay: every event sent once.
    let sink = FileSink::new(out.path().join("sent")).unwrap();
    let opts = replay_opts(HourRange::all(), 1 << 20, None, out.path());
    let report = replay::replay(&t.lake, &inv, &opts, &sink, &()).await.unwrap();
    assert_eq!((report.events_sent, report.duplicates_dropped), (120, 20));

    // A zstd object cut short is named as corrupt.
    let zst = names.iter().find(|n| n.ends_with(".jsonl.zst")).unwrap();
    let bytes = std::fs::read(t.root.join(zst)).unwrap();
    std::fs::write(t.root.join(zst), &bytes[..bytes.len() / 2]).unwrap();
    let report = t.verify(HourRange::all()).await;
    assert!(
        report
            .findings
            .iter()
            .any(|f| matches!(f, Finding::Corrupt { path, .. } if path == zst)),
        "{}",
        report.render()
    );
}

/// Reads what a [`FileSink`] wrote for one partition.
fn sink_lines(dir: &Path, partition: &str) -> Vec<FileSinkLine> {
    let text = std::fs::read_to_string(dir.join(format!("{partition}.jsonl"))).unwrap_or_default();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// The body that should be sent again for a recorded event.
fn expected_body(e: &WireEvent) -> Vec<u8> {
    let text = String::from_utf8(e.body.clone()).unwrap();
    match serde_json::from_str::<Value>(&text) {
        // Pretty JSON was put on one line when recorded.
        Ok(_) => hub2lake::lake::encode::minify_json(&text).into_bytes(),
        Err(_) => e.body.clone(),
    }
}

#[tokio::test]
async fn replay_to_files_reproduces_bodies_keys_and_properties_in_order() {
    let mut t = TestLake::new();
    for pid in ["0", "1"] {
        t.ingest(pid, 0..=59, hour(0)).await;
        t.ingest(pid, 40..=119, hour(0) + TimeDelta::minutes(10)).await;
        t.ingest(pid, 120..=159, hour(1)).await;
    }
    let inv = t.inventory().await;
    let out = tempfile::tempdir().unwrap();
    let sink = FileSink::new(out.path().join("sent")).unwrap();
    let opts = replay_opts(HourRange::all(), 4000, None, out.path());
    let report = replay::replay(&t.lake, &inv, &opts, &sink, &()).await.unwrap();
    assert_eq!(report.events_sent, 320);
    assert_eq!(report.duplicates_dropped, 40);
    assert!(report.batches_sent > 10, "{}", report.batches_sent);
    for pid in ["0", "1"] {
        let lines = sink_lines(&out.path().join("sent"), pid);
        // Each event once; per destination (key or partition) in sequence order.
        let mut seqs: Vec<i64> = lines.iter().map(|l| l.source_sequence_number).collect();
        let mut per_target: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for l in &lines {
            per_target
                .entry(format!("{:?}", l.target))
                .or_default()
                .push(l.source_sequence_number);
        }
        assert_eq!(per_target.len(), 4, "three keys and the key-less partition");
        for (target, s) in &per_target {
            assert!(s.windows(2).all(|w| w[0] < w[1]), "{target} in order: {s:?}");
        }
        let batches: Vec<u64> = lines.iter().map(|l| l.batch).collect();
        assert!(
            batches.windows(2).all(|w| w[0] <= w[1]),
            "batches are written in send order"
        );
        seqs.sort_unstable();
        assert_eq!(seqs, (0..=159).collect::<Vec<_>>(), "partition {pid}: each event once");
        let mut batch_bytes: BTreeMap<u64, usize> = BTreeMap::new();
        for l in &lines {
            let original = &t.sent[&(pid.to_string(), l.source_sequence_number)];
            assert_eq!(l.body.as_deref().unwrap().as_bytes(), expected_body(original));
            assert_eq!(l.partition_key, original.partition_key);
            assert_eq!(Value::Object(l.properties.clone()), original.properties);
            let want_target = match &original.partition_key {
                Some(k) => Target::Key(k.clone()),
                None => Target::Partition(pid.to_string()),
            };
            assert_eq!(l.target, want_target);
            let e = OutEvent {
                body: l.body.clone().unwrap().into_bytes(),
                partition_key: l.partition_key.clone(),
                properties: l.properties.clone(),
                source_partition: pid.to_string(),
                source_sequence_number: l.source_sequence_number,
            };
            *batch_bytes.entry(l.batch).or_default() += e.estimated_size();
        }
        assert!(batch_bytes.values().all(|b| *b <= 4000), "{batch_bytes:?}");
    }
}

/// A sink that fails after `ok` batches, as if the connection dropped.
struct Flaky {
    inner: FileSink,
    ok: u64,
    sent: AtomicU64,
}

impl EventSink for Flaky {
    async fn send_batch(&self, target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
        if self.sent.fetch_add(1, Ordering::SeqCst) >= self.ok {
            return Err(SinkError::Send {
                target: target.to_string(),
                message: "connection lost".into(),
            });
        }
        self.inner.send_batch(target, events).await
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[tokio::test]
async fn an_interrupted_replay_resumes_from_its_position_file() {
    let mut t = TestLake::new();
    t.ingest("0", 0..=199, hour(0)).await;
    t.ingest("3", 0..=99, hour(0)).await;
    let inv = t.inventory().await;
    let out = tempfile::tempdir().unwrap();
    let dir = out.path().join("sent");
    let position = out.path().join("replay.pos");
    let mut opts = replay_opts(HourRange::all(), 3000, Some(position.clone()), out.path());
    opts.partition_mode = PartitionMode::Same;

    let flaky = Flaky {
        inner: FileSink::new(&dir).unwrap(),
        ok: 5,
        sent: AtomicU64::new(0),
    };
    let e = replay::replay(&t.lake, &inv, &opts, &flaky, &()).await.unwrap_err();
    assert!(matches!(e, OpsError::Sink(SinkError::Send { .. })), "{e}");
    let saved: replay::Position = serde_json::from_slice(&std::fs::read(&position).unwrap()).unwrap();
    let done = saved.partitions["0"];
    assert_eq!(sink_lines(&dir, "0").last().unwrap().source_sequence_number, done);

    let sink = FileSink::new(&dir).unwrap();
    let report = replay::replay(&t.lake, &inv, &opts, &sink, &()).await.unwrap();
    assert_eq!(report.already_sent, (done + 1) as u64);
    assert_eq!(report.events_sent, 300 - (done + 1) as u64);
    for (pid, n) in [("0", 200), ("3", 100)] {
        let seqs: Vec<i64> = sink_lines(&dir, pid).iter().map(|l| l.source_sequence_number).collect();
        assert_eq!(
            seqs,
            (0..n).collect::<Vec<_>>(),
            "partition {pid}: each event once, in order"
        );
        assert!(sink_lines(&dir, pid)
            .iter()
            .all(|l| l.target == Target::Partition(pid.into())));
    }
    // Everything sent: a third run sends nothing.
    let again = replay::replay(&t.lake, &inv, &opts, &sink, &()).await.unwrap();
    assert_eq!((again.events_sent, again.already_sent), (0, 300));
}

#[tokio::test]
async fn a_dry_run_prints_batches_and_keeps_no_position() {
    let mut t = TestLake::new();
    t.ingest("0", 0..=9, hour(0)).await;
    let inv = t.inventory().await;
    let out = tempfile::tempdir().unwrap();
    let position = out.path().join("pos");
    let buf = SharedBuf::default();
    let sink = replay::DryRunSink::new(Box::new(buf.clone()));
    let opts = replay_opts(HourRange::all(), 1_000_000, Some(position.clone()), out.path());
    let report = replay::replay(&t.lake, &inv, &opts, &sink, &()).await.unwrap();
    assert_eq!(report.events_sent, 10);
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    assert!(
        text.contains("would send") && text.contains("from partition 0"),
        "{text}"
    );
    assert!(!position.exists());
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for SharedBuf {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn ls_verify_and_get_work_on_azurite() {
    use hub2lake_testkit::azurite::Azurite;
    let az = Azurite::start().await.expect("Azurite starts (run `npm ci` first)");
    az.create_container("lake").await.unwrap();
    let store = az.object_store_builder("lake").build().unwrap();
    let lake = Lake::from_store(Arc::new(store), "raw/events", true, "azurite".into());
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::local(dir.path().join("unused"));
    let mut t = TestLake::on(lake, settings, dir);
    t.ingest("0", 0..=99, hour(0)).await;
    t.ingest("0", 200..=249, hour(1)).await;
    t.ingest("1", 0..=49, hour(1)).await;

    let report = t.verify(HourRange::all()).await;
    assert_eq!(gaps(&report), vec![("0".to_string(), 100, 199)], "{}", report.render());
    assert_eq!(report.findings.len(), 1);
    assert_eq!(report.checked.records_read, 200);

    let inv = t.inventory().await;
    let listing = ls::listing(&inv, "azurite", &HourRange::all(), Some("shop"), None);
    assert_eq!(listing.units.len(), 2);

    let out = tempfile::tempdir().unwrap();
    let got = get::get(&t.lake, &inv, &get_opts(HourRange::all(), out.path()), &())
        .await
        .unwrap();
    assert!(got.fetched_objects >= 4);
    for p in files(out.path()) {
        let path = rel(out.path(), &p);
        assert_eq!(
            std::fs::read(&p).unwrap(),
            t.lake.get(&path).await.unwrap().to_vec(),
            "{path}"
        );
    }
    let again = get::get(&t.lake, &inv, &get_opts(HourRange::all(), out.path()), &())
        .await
        .unwrap();
    assert_eq!((again.fetched_objects, again.skipped_objects), (0, got.fetched_objects));
}
