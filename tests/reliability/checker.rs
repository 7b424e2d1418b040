//! The invariant, checked from the lake alone.
//!
//! [`check`] is the one checker every cell (and the property test) uses:
//!
//! 1. before sealing: every receipt's objects exist, match their SHA-256, decode, and
//!    hold exactly the records the receipt says; every batch answered 2xx has its
//!    receipt ("2xx means durable");
//! 2. seal in-process as of a `now` far enough ahead that every hour is ready, then
//!    once more (the second run must find nothing to do);
//! 3. after sealing: every acknowledged event is in the manifest-listed objects exactly
//!    once — by (partition, sequence number) and by `event_id` — and a sealed hour's
//!    folder (a glob) holds nothing else but the objects without receipt its manifest
//!    reports, each holding events no receipt covers (no redundant copy survives); a
//!    manifest with gaps or such objects has its `_recheck` marker; nothing that was never sent is there;
//!    every poison event is in `_deadletter/` with a reason and its exact bytes; every
//!    sequence number between acknowledged ones that no receipt covers is reported as
//!    a gap, and no gap holds an acknowledged event; nothing is written outside the
//!    lake prefix; nothing unexpected is in the lake.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use hub2lake::config::Settings;
use hub2lake::host::TimerInfo;
use hub2lake::lake::encode::decode_object;
use hub2lake::lake::layout;
use hub2lake::lake::receipt::{ObjectKind, Receipt};
use hub2lake::lake::{digest_hex, Lake};
use hub2lake::seal::manifest::{Manifest, UnreceiptedObject};
use hub2lake::seal::SealReport;
use serde::Deserialize;

/// (partition id, sequence number): the identity of an event.
pub type Key = (String, i64);

/// Where a cell's lake is and how to look at everything around it.
pub struct LakeView {
    /// The lake as the handler sees it (rooted at its prefix).
    pub lake: Lake,
    /// Settings for the in-process seal (time source, compression, grace, ...).
    pub settings: Settings,
    /// Local lakes: the temporary directory holding the lake directory; every file
    /// below it must be inside the lake.
    pub local_parent: Option<PathBuf>,
    /// Local lakes: the lake directory itself.
    pub local_root: Option<PathBuf>,
    /// Azure lakes: the whole container (root ""), and the prefix the lake lives under.
    pub container: Option<(Lake, String)>,
}

impl LakeView {
    /// A local lake at `<parent>/lake`.
    pub fn local(parent: &Path) -> Self {
        let root = parent.join("lake");
        let settings = Settings::local(&root);
        let lake = Lake::open(&settings).expect("local lake opens");
        Self {
            lake,
            settings,
            local_parent: Some(parent.to_path_buf()),
            local_root: Some(root),
            container: None,
        }
    }

    /// An Azure lake on Azurite (`base_url` of Azurite itself, not a proxy):
    /// container `container`, everything under `prefix`.
    pub fn azurite(base_url: &str, container: &str, prefix: &str, scratch: &Path) -> Self {
        let store = |()| {
            Arc::new(
                hub2lake_testkit::azurite::object_store_builder(base_url, container)
                    .build()
                    .expect("Azurite object store builds"),
            )
        };
        // The seal refuses a second run on a lake with the same description in one
        // process: every cell's description is unique.
        let description = format!("azurite {base_url}/{container}/{prefix}");
        let lake = Lake::from_store(store(()), prefix, true, description.clone());
        let whole = Lake::from_store(store(()), "", true, format!("{description} (container)"));
        Self {
            lake,
            settings: Settings::local(scratch.join("unused-seal-settings")),
            local_parent: None,
            local_root: None,
            container: Some((whole, prefix.to_string())),
        }
    }
}

/// What a cell did, from the host's side, and what the lake must therefore show.
#[derive(Debug, Default, Clone)]
pub struct Expect {
    pub namespace: String,
    pub eventhub: String,
    pub consumer_group: String,
    /// Every event the (simulated) Event Hub held, with its expected `event_id`.
    pub produced: BTreeMap<Key, String>,
    /// Events sent to the handler at least once.
    pub sent: BTreeSet<Key>,
    /// Events of a batch answered 2xx at least once.
    pub acked: BTreeSet<Key>,
    /// Batches answered 2xx: (partition, first, last).
    pub acked_batches: BTreeSet<(String, i64, i64)>,
    /// Events that must be dead-lettered (never in data objects), with their exact
    /// bytes when known.
    pub poison: BTreeMap<Key, Option<Vec<u8>>>,
    /// When set, the gaps the manifests report must be exactly these
    /// (partition, first missing, last missing).
    pub exact_gaps: Option<BTreeSet<(String, i64, i64)>>,
    /// Non-2xx answers with status >= 500 (or broken connections) seen by the host.
    pub answered_5xx: u64,
    /// Handler restarts (crashes, SIGKILL, SIGTERM).
    pub restarts: u64,
    /// Files allowed beside the lake directory in the local parent directory.
    pub allowed_outside: Vec<PathBuf>,
}

impl Expect {
    pub fn new(namespace: &str, eventhub: &str, consumer_group: &str) -> Self {
        Self {
            namespace: namespace.into(),
            eventhub: eventhub.into(),
            consumer_group: consumer_group.into(),
            ..Self::default()
        }
    }

    /// Records one delivery of events (each with its body) and its answer.
    pub fn delivery(&mut self, partition: &str, events: &[(i64, Vec<u8>)], status: Option<u16>) {
        for (seq, body) in events {
            let key = (partition.to_string(), *seq);
            self.produced
                .entry(key.clone())
                .or_insert_with(|| expected_event_id(&self.namespace, &self.eventhub, partition, *seq, body));
            self.sent.insert(key);
        }
        match status {
            Some(s) if (200..300).contains(&s) => {
                if let (Some((first, _)), Some((last, _))) = (events.first(), events.last()) {
                    self.acked_batches.insert((partition.to_string(), *first, *last));
                }
                for (seq, _) in events {
                    self.acked.insert((partition.to_string(), *seq));
                }
            }
            Some(s) if s >= 500 => self.answered_5xx += 1,
            None => self.answered_5xx += 1,
            Some(_) => {}
        }
    }
}

/// The `event_id` the README promises: a change event's resume token (`_id._data`),
/// otherwise `<namespace>:<eventhub>:<partition>:<sequence>`.
pub fn expected_event_id(namespace: &str, eventhub: &str, partition: &str, seq: i64, body: &[u8]) -> String {
    let fallback = format!("{namespace}:{eventhub}:{partition}:{seq}");
    let Ok(text) = std::str::from_utf8(body) else {
        return fallback;
    };
    let Ok(v) = serde_json::from_str::<serde_json::Value>(text.trim_matches([' ', '\t', '\n', '\r'])) else {
        return fallback;
    };
    if v.get("operationType").and_then(|o| o.as_str()).is_some() {
        match v.get("_id") {
            Some(serde_json::Value::Object(o)) => {
                if let Some(serde_json::Value::String(s)) = o.get("_data") {
                    return s.clone();
                }
            }
            Some(serde_json::Value::String(s)) => return s.clone(),
            _ => {}
        }
    }
    fallback
}

/// The outcome of one cell, as the summary table shows it.
#[derive(Debug, Default, Clone)]
pub struct Outcome {
    pub produced: u64,
    pub acknowledged: u64,
    /// Distinct events in the manifest-listed objects after the seal.
    pub in_lake: u64,
    /// Extra copies of events among all data objects after the seal (a glob).
    pub duplicates: u64,
    pub gap_ranges: u64,
    pub gap_events: u64,
    pub dead_letters: u64,
    pub answered_5xx: u64,
    pub restarts: u64,
    /// Data objects no manifest lists after the seal: objects without receipt that
    /// hold events no receipt covers (left by failed deliveries; reported in their
    /// hour's manifest, or in a folder no receipt reached).
    pub orphans: u64,
    /// Objects without receipt the (first) seal removed as redundant copies.
    pub copies_removed: u64,
    /// Local lakes: object_store staging files left by a killed handler.
    pub staging_leftovers: u64,
    /// Warnings of the (first) seal run, as the timer logs them.
    pub seal_warnings: Vec<String>,
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
struct RecordKey<'a> {
    #[serde(borrow)]
    event_id: Cow<'a, str>,
    #[serde(borrow)]
    partition_id: Cow<'a, str>,
    sequence_number: i64,
}

#[derive(Deserialize)]
struct DeadKey {
    reason: String,
    partition_id: String,
    sequence_number: i64,
    raw_body_base64: String,
}

/// Reads (event_id, partition, seq) of every line of a data object. Only these three
/// fields are parsed, so arbitrarily deep `raw_event`s are fine.
pub fn record_keys(path: &str, bytes: &[u8]) -> Vec<(String, Key)> {
    let text = decode_object(bytes).unwrap_or_else(|e| panic!("{path} does not decode: {e}"));
    assert!(
        text.is_empty() || text.ends_with(b"\n"),
        "{path}: JSON Lines end with a newline"
    );
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .enumerate()
        .map(|(i, line)| {
            let k: RecordKey =
                serde_json::from_slice(line).unwrap_or_else(|e| panic!("{path} line {}: not a record ({e})", i + 1));
            (
                k.event_id.into_owned(),
                (k.partition_id.into_owned(), k.sequence_number),
            )
        })
        .collect()
}

/// Seals as of `now` (far enough ahead that every hour is ready), twice.
pub async fn seal_all(view: &LakeView, now: DateTime<Utc>) -> (SealReport, SealReport) {
    let timer = TimerInfo::default();
    let first = hub2lake::seal::run(&view.settings, &view.lake, &timer, now)
        .await
        .unwrap_or_else(|e| panic!("seal run fails: {e}"));
    let second = hub2lake::seal::run(&view.settings, &view.lake, &timer, now)
        .await
        .unwrap_or_else(|e| panic!("second seal run fails: {e}"));
    (first, second)
}

/// A `now` at which every hour the tests write (at most a day ahead) is ready.
pub fn far_future() -> DateTime<Utc> {
    Utc::now() + TimeDelta::days(3)
}

/// Raw objects that a committed manifest has consumed (and may have deleted).
async fn consumed_by_manifests(lake: &Lake) -> BTreeSet<String> {
    let mut consumed = BTreeSet::new();
    for o in lake.list("").await.expect("lake lists") {
        if o.path.ends_with("/_manifest.json") {
            let m: Manifest = serde_json::from_slice(&lake.get(&o.path).await.unwrap())
                .unwrap_or_else(|e| panic!("{} does not parse: {e}", o.path));
            consumed.extend(m.inputs.raw_objects);
        }
    }
    consumed
}

/// 1. Before the (final) seal: receipts are commit records of durable objects — each
///    object exists, matches its SHA-256 and decodes to exactly the records the
///    receipt says, unless a committed manifest has already consumed it — and every
///    2xx has a receipt. Returns the sequence ranges the receipts cover, per partition.
pub async fn check_receipts(view: &LakeView, expect: &Expect) -> BTreeMap<String, Vec<(i64, i64)>> {
    let lake = &view.lake;
    let consumed = consumed_by_manifests(lake).await;
    let mut covered: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let listed = lake.list(layout::RECEIPTS_DIR).await.expect("receipts list");
    let mut paths = BTreeSet::new();
    for o in listed {
        let bytes = lake.get(&o.path).await.expect("receipt reads");
        let r: Receipt =
            serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("receipt {} does not parse: {e}", o.path));
        let mut records = 0u64;
        for obj in &r.objects {
            records += obj.records;
            if consumed.contains(&obj.path) {
                // Sealed: the manifest's objects hold these records now (a copy may
                // reappear from a re-delivery until the next seal deletes it).
                continue;
            }
            let data = match lake.get_if_exists(&obj.path).await.expect("object reads") {
                Some(d) => d,
                None => panic!("receipt {} names {} which is not in the lake", o.path, obj.path),
            };
            assert_eq!(
                digest_hex(&data),
                obj.sha256,
                "{}: SHA-256 differs from receipt {}",
                obj.path,
                o.path
            );
            let lines: Vec<Key> = match obj.kind {
                ObjectKind::Data => record_keys(&obj.path, &data).into_iter().map(|(_, k)| k).collect(),
                ObjectKind::DeadLetter => dead_letters(&obj.path, &data)
                    .into_iter()
                    .map(|d| (d.partition_id, d.sequence_number))
                    .collect(),
            };
            assert_eq!(lines.len() as u64, obj.records, "{}: record count", obj.path);
            for (p, s) in &lines {
                assert_eq!(p, &r.partition_id, "{}: record of another partition", obj.path);
                assert!(
                    (obj.first_sequence_number..=obj.last_sequence_number).contains(s),
                    "{}: seq {s} outside {}..{}",
                    obj.path,
                    obj.first_sequence_number,
                    obj.last_sequence_number
                );
            }
        }
        assert_eq!(
            records, r.event_count,
            "receipt {}: objects hold {records} records, the batch had {}",
            o.path, r.event_count
        );
        covered
            .entry(r.partition_id.clone())
            .or_default()
            .push((r.first_sequence_number, r.last_sequence_number));
        paths.insert(o.path);
    }
    for (p, first, last) in &expect.acked_batches {
        let path = layout::receipt_path(&expect.eventhub, &expect.consumer_group, p, *first, *last);
        assert!(
            paths.contains(&path),
            "batch {p} {first}..{last} was answered 2xx but has no receipt {path}"
        );
    }
    covered
}

fn dead_letters(path: &str, bytes: &[u8]) -> Vec<DeadKey> {
    let text = decode_object(bytes).unwrap_or_else(|e| panic!("{path} does not decode: {e}"));
    text.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| serde_json::from_slice(line).unwrap_or_else(|e| panic!("{path}: dead letter line ({e})")))
        .collect()
}

/// The whole check; returns the outcome row (panics with a precise message otherwise).
pub async fn check(view: &LakeView, expect: &Expect, now: DateTime<Utc>) -> Outcome {
    let t = std::time::Instant::now();
    let covered = check_receipts(view, expect).await;
    let t_receipts = t.elapsed();
    let (first, second) = seal_all(view, now).await;
    let t_seal = t.elapsed() - t_receipts;
    assert_eq!(first.units_not_ready, 0, "every hour is ready: {}", first.message);
    assert_eq!(
        first.units_skipped, 0,
        "no hour is skipped: {} {:?}",
        first.message, first.warnings
    );
    assert_eq!(
        second.units_sealed
            + second.units_resealed
            + second.units_skipped
            + second.units_cleaned
            + second.manifests_updated
            + second.copies_removed,
        0,
        "a second seal run finds nothing to do: {}",
        second.message
    );
    let mut out = check_sealed(view, expect, &covered).await;
    out.copies_removed = first.copies_removed;
    out.seal_warnings = first.warnings.clone();
    out.notes.push(format!(
        "check: receipts {} ms, 2 seals {} ms ({} units), lake {} ms",
        t_receipts.as_millis(),
        t_seal.as_millis(),
        first.units_sealed,
        (t.elapsed() - t_receipts - t_seal).as_millis()
    ));
    if first.units_cleaned > 0 {
        out.notes.push(format!("{} units cleaned", first.units_cleaned));
    }
    out
}

/// 3. After the seal.
pub async fn check_sealed(view: &LakeView, expect: &Expect, covered: &BTreeMap<String, Vec<(i64, i64)>>) -> Outcome {
    let lake = &view.lake;
    let mut out = Outcome {
        produced: expect.produced.len() as u64,
        acknowledged: expect.acked.len() as u64,
        answered_5xx: expect.answered_5xx,
        restarts: expect.restarts,
        ..Outcome::default()
    };
    let listed = lake.list("").await.expect("lake lists");
    let mut manifests: Vec<(String, Manifest)> = Vec::new();
    let mut data_paths = Vec::new();
    let mut dead: BTreeMap<Key, Vec<DeadKey>> = BTreeMap::new();
    let mut markers: BTreeSet<String> = BTreeSet::new();
    for o in &listed {
        let p = o.path.as_str();
        if p.starts_with("_receipts/") && p.ends_with(".json") {
            continue;
        } else if p.starts_with("_deadletter/") && p.ends_with(".jsonl") {
            for d in dead_letters(p, &lake.get(p).await.unwrap()) {
                out.dead_letters += 1;
                dead.entry((d.partition_id.clone(), d.sequence_number))
                    .or_default()
                    .push(d);
            }
        } else if p.ends_with("/_manifest.json") {
            let m: Manifest = serde_json::from_slice(&lake.get(p).await.unwrap())
                .unwrap_or_else(|e| panic!("{p} does not parse: {e}"));
            manifests.push((p.to_string(), m));
        } else if let Some(dir) = p.strip_suffix("/_recheck") {
            markers.insert(dir.to_string());
        } else if layout::is_internal(p) {
            // The start-up probe, left behind when its delete failed (storage outage).
            out.notes.push(format!("start-up probe left behind: {p}"));
        } else if p.ends_with(".jsonl.gz") || p.ends_with(".jsonl") {
            data_paths.push(p.to_string());
        } else {
            panic!("unexpected object in the lake: {p}");
        }
    }

    // The glob: every data object in the lake.
    let mut glob: BTreeMap<Key, u64> = BTreeMap::new();
    let mut ids: BTreeMap<Key, BTreeSet<String>> = BTreeMap::new();
    let mut records_of: BTreeMap<String, Vec<(String, Key)>> = BTreeMap::new();
    for p in &data_paths {
        let recs = record_keys(p, &lake.get(p).await.unwrap());
        for (id, k) in &recs {
            *glob.entry(k.clone()).or_default() += 1;
            ids.entry(k.clone()).or_default().insert(id.clone());
        }
        records_of.insert(p.clone(), recs);
    }
    // The exact read: the objects the manifests list.
    let mut listed_paths = BTreeSet::new();
    let mut exact: BTreeMap<Key, u64> = BTreeMap::new();
    let mut gaps: BTreeSet<(String, i64, i64)> = BTreeSet::new();
    for (path, m) in &manifests {
        let dir = path.trim_end_matches("/_manifest.json");
        assert!(m.compacted, "{path}: compacted");
        let mut total = 0;
        for o in &m.objects {
            assert!(o.path.starts_with(dir), "{path} lists {} outside its folder", o.path);
            let recs = records_of
                .get(&o.path)
                .unwrap_or_else(|| panic!("{path} lists {} which is not in the lake", o.path));
            let bytes = lake.get(&o.path).await.unwrap();
            assert_eq!(digest_hex(&bytes), o.sha256, "{}: SHA-256 differs from {path}", o.path);
            assert_eq!(recs.len() as u64, o.records, "{}: record count in {path}", o.path);
            total += o.records;
            for (_, k) in recs {
                *exact.entry(k.clone()).or_default() += 1;
            }
            listed_paths.insert(o.path.clone());
        }
        assert_eq!(total, m.total_records, "{path}: total_records");
        assert_eq!(m.complete, m.gaps.is_empty(), "{path}: complete iff no gaps");
        assert!(
            (m.gaps.is_empty() && m.unreceipted.is_empty()) || markers.contains(dir),
            "{path} lists gaps or objects without receipt but its folder has no _recheck marker: later changes \
             would not reach it"
        );
        for g in &m.gaps {
            assert_eq!(
                g.missing,
                (g.last_missing - g.first_missing + 1) as u64,
                "{path}: gap size"
            );
            gaps.insert((g.partition_id.clone(), g.first_missing, g.last_missing));
        }
    }
    let is_covered = |p: &str, s: i64| {
        covered
            .get(p)
            .is_some_and(|rs| rs.iter().any(|(f, l)| (*f..=*l).contains(&s)))
    };
    // The glob: a sealed hour's folder holds the objects its manifest lists and, only
    // when its manifest reports them, objects no receipt names that hold events no
    // receipt covers (so nothing in the folder is a copy the seal could have removed).
    let reported: BTreeMap<&str, &UnreceiptedObject> = manifests
        .iter()
        .flat_map(|(_, m)| m.unreceipted.iter().map(|u| (u.path.as_str(), u)))
        .collect();
    let sealed_dirs: BTreeSet<&str> = manifests
        .iter()
        .map(|(p, _)| p.trim_end_matches("/_manifest.json"))
        .collect();
    for p in data_paths.iter().filter(|p| !listed_paths.contains(*p)) {
        out.orphans += 1;
        let keys: Vec<&Key> = records_of[p].iter().map(|(_, k)| k).collect();
        let (covered_keys, uncovered): (Vec<&Key>, Vec<&Key>) = keys.iter().partition(|k| is_covered(&k.0, k.1));
        for k in &uncovered {
            assert!(
                !expect.acked.contains(*k),
                "{k:?} is acknowledged, but no receipt covers it"
            );
        }
        match reported.get(p.as_str()) {
            Some(u) => {
                assert!(
                    !uncovered.is_empty(),
                    "{p} is left in a sealed hour, but receipts cover every event it holds: a redundant copy the \
                     seal must remove"
                );
                let mut in_runs = 0;
                for run in &u.uncovered {
                    let inside: Vec<&&Key> = keys
                        .iter()
                        .filter(|k| {
                            k.0 == run.partition_id
                                && (run.first_sequence_number..=run.last_sequence_number).contains(&k.1)
                        })
                        .collect();
                    assert!(
                        inside.iter().all(|k| !is_covered(&k.0, k.1)) && inside.len() as u64 == run.records,
                        "{p}: the reported uncovered run {run:?} does not match the object ({inside:?})"
                    );
                    in_runs += run.records;
                }
                assert_eq!(in_runs, uncovered.len() as u64, "{p}: reported uncovered records");
                out.notes.push(format!(
                    "left without receipt and reported: {p} ({} of {} events in no receipt)",
                    uncovered.len(),
                    keys.len()
                ));
            }
            None => {
                let dir = p.rsplit_once('/').map_or("", |(d, _)| d);
                assert!(
                    !sealed_dirs.contains(dir),
                    "{p} is in the sealed folder {dir}, but its manifest neither lists nor reports it"
                );
                assert!(
                    covered_keys.is_empty(),
                    "{p} (in a folder no receipt reached) holds {covered_keys:?}, which receipts cover"
                );
                out.notes.push(format!("orphan in a folder no receipt reached: {p}"));
            }
        }
    }

    // Exactly once, by key and by event_id.
    let glob_total: u64 = glob.values().sum();
    out.duplicates = glob_total - glob.len() as u64;
    out.in_lake = exact.len() as u64;
    for (k, n) in &exact {
        assert_eq!(*n, 1, "{k:?} is {n} times in the sealed (manifest) objects");
        assert!(expect.sent.contains(k), "{k:?} is in the lake but was never sent");
        assert!(!expect.poison.contains_key(k), "poison event {k:?} is in a data object");
    }
    for k in glob.keys() {
        assert!(expect.sent.contains(k), "{k:?} is in the lake but was never sent");
    }
    for k in &expect.acked {
        if let Some(bytes) = expect.poison.get(k) {
            let letters = dead
                .get(k)
                .unwrap_or_else(|| panic!("acknowledged poison event {k:?} is not in _deadletter/"));
            for d in letters {
                assert!(!d.reason.trim().is_empty(), "dead letter {k:?} has no reason");
                if let Some(bytes) = bytes {
                    let raw = base64::engine::general_purpose::STANDARD
                        .decode(&d.raw_body_base64)
                        .expect("raw_body_base64 decodes");
                    assert!(raw == *bytes, "dead letter {k:?} does not hold the exact bytes");
                }
            }
            assert!(!glob.contains_key(k), "poison event {k:?} is in a data object");
        } else {
            assert_eq!(
                exact.get(k).copied().unwrap_or(0),
                1,
                "acknowledged event {k:?} is not exactly once in the sealed objects"
            );
            let want = &expect.produced[k];
            let got = &ids[k];
            assert!(
                got.len() == 1 && got.contains(want),
                "{k:?}: event_id {got:?}, expected {want:?}"
            );
        }
    }
    // Distinct events have distinct ids (a MERGE on event_id keeps them all).
    let mut by_id: BTreeMap<&str, &Key> = BTreeMap::new();
    for (k, set) in &ids {
        for id in set {
            if let Some(other) = by_id.insert(id, k) {
                panic!("event_id {id:?} is shared by {other:?} and {k:?}");
            }
        }
    }
    // Nothing the lake holds outside data or dead letters... and dead letters only
    // for events that were sent.
    for k in dead.keys() {
        assert!(expect.sent.contains(k), "dead letter for {k:?}, which was never sent");
    }

    // Gaps: between acknowledged events, every number no receipt covers is reported,
    // and no reported gap holds a covered or acknowledged number.
    let in_gap = |p: &str, s: i64| gaps.iter().any(|(gp, f, l)| gp == p && (*f..=*l).contains(&s));
    for (p, f, l) in &gaps {
        out.gap_ranges += 1;
        out.gap_events += (l - f + 1) as u64;
        for s in *f..=*l {
            let k = (p.clone(), s);
            assert!(
                !expect.acked.contains(&k),
                "reported gap {p} {f}..{l} holds acknowledged {s}"
            );
            assert!(
                !is_covered(p, s),
                "reported gap {p} {f}..{l} holds {s}, which a receipt covers"
            );
        }
    }
    let mut by_partition: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    for (p, s) in &expect.acked {
        by_partition.entry(p).or_default().insert(*s);
    }
    for (p, seqs) in &by_partition {
        let (lo, hi) = (*seqs.first().unwrap(), *seqs.last().unwrap());
        for s in lo..=hi {
            if seqs.contains(&s) {
                continue;
            }
            let k = (p.to_string(), s);
            if is_covered(p, s) {
                assert!(
                    exact.contains_key(&k) || dead.contains_key(&k),
                    "{k:?} is covered by a receipt but in no sealed object or dead letter"
                );
            } else if expect.produced.contains_key(&k) {
                assert!(
                    in_gap(p, s),
                    "{k:?} was never written between acknowledged events and is not reported as a gap"
                );
            }
        }
    }
    if let Some(want) = &expect.exact_gaps {
        assert_eq!(&gaps, want, "reported gaps");
    }

    check_outside(view, expect, &mut out).await;
    if out.staging_leftovers > 0 {
        out.notes.push(format!(
            "{} object_store staging files (`name#N`) left by killed writes",
            out.staging_leftovers
        ));
    }
    out
}

/// Nothing outside the lake prefix; for local lakes also counts staging leftovers.
async fn check_outside(view: &LakeView, expect: &Expect, out: &mut Outcome) {
    if let (Some(parent), Some(root)) = (&view.local_parent, &view.local_root) {
        for f in walk(parent) {
            if f.starts_with(root) {
                let name = f.file_name().unwrap().to_string_lossy().to_string();
                if is_staging(&name) {
                    out.staging_leftovers += 1;
                }
                continue;
            }
            assert!(
                expect.allowed_outside.iter().any(|a| f.starts_with(a)),
                "written outside the lake: {}",
                f.display()
            );
        }
    }
    if let Some((whole, prefix)) = &view.container {
        for o in whole.list("").await.expect("container lists") {
            assert!(
                o.path.starts_with(&format!("{prefix}/")),
                "written outside the lake prefix {prefix}/: {}",
                o.path
            );
        }
    }
}

/// object_store's local staging files: `<name>#<digits>`.
fn is_staging(name: &str) -> bool {
    name.rsplit_once('#')
        .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Every file below `dir` (symlinks are not followed).
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                _ => out.push(p),
            }
        }
    }
    out.sort();
    out
}

/// Asserts the handler's output has no panic; returns its number of lines.
pub fn assert_no_panic(log: &Path) -> usize {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    assert!(
        !text.contains("panicked at"),
        "the handler panicked; {}:\n{}",
        log.display(),
        text.lines()
            .filter(|l| l.contains("panicked"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    text.lines().count()
}
