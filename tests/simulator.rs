//! The real `handler` binary driven by the host simulator (`hub2lake_cli::simulator`) into a
//! local lake: completeness, crashes, storage failures with and without a retry policy,
//! the seal timer, and the `simulate` / `demo` commands.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use hub2lake::lake::receipt::Receipt;
use hub2lake_cli::simulator::{
    self, AppFiles, ChangeStreamConfig, EventSource, FaultPlan, RetryPolicy, SealPlan, SimulationSummary,
    SimulatorConfig,
};

/// Every test run is bounded; a hang fails instead of blocking CI.
const RUN_LIMIT: Duration = Duration::from_secs(120);

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 9, 40, 0).unwrap()
}

/// A hermetic run: the real handler, a local lake, fixed events, fast retries, no timer.
fn config(lake: &Path, events: u64, partitions: u32) -> SimulatorConfig {
    let mut c = SimulatorConfig::new(hub2lake_testkit::handler_exe(), format!("file://{}", lake.display()));
    c.inherit_env = false;
    c.settings.insert("RUST_LOG".into(), "warn".into());
    c.settings.insert("EVENTHUB_NAME".into(), "mongo-changes".into());
    c.settings.insert("EVENTHUB_CONSUMER_GROUP".into(), "hub2lake".into());
    c.app_root = lake.parent().unwrap().to_path_buf();
    c.source = EventSource::ChangeStream(ChangeStreamConfig {
        events,
        event_size: 400,
        seed: 7,
    });
    c.partitions = partitions;
    c.start = start();
    c.span = Duration::from_secs(2 * 3600);
    c.batch_size = 100;
    c.time_scale = 0.001;
    c
}

async fn run(c: SimulatorConfig) -> SimulationSummary {
    tokio::time::timeout(RUN_LIMIT, simulator::run(c))
        .await
        .expect("the simulation finishes")
        .expect("the simulation runs")
}

/// What the lake holds, read back from the files themselves.
struct LakeContents {
    /// (partition, sequence number) of every record in every data object.
    records: Vec<(String, i64)>,
    data_objects: usize,
    receipts: Vec<Receipt>,
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn read_lake(root: &Path) -> LakeContents {
    let mut contents = LakeContents {
        records: Vec::new(),
        data_objects: 0,
        receipts: Vec::new(),
    };
    for path in files(root) {
        let rel = path.strip_prefix(root).unwrap().to_string_lossy().to_string();
        let bytes = std::fs::read(&path).unwrap();
        if rel.starts_with("_receipts/") {
            contents
                .receipts
                .push(serde_json::from_slice(&bytes).expect("receipts are JSON"));
        } else if rel.ends_with(".jsonl.gz") && !rel.starts_with('_') {
            contents.data_objects += 1;
            let text = hub2lake::lake::encode::decode_object(&bytes).expect("data objects gunzip");
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).expect("each line is JSON");
                let partition = v["partition_id"].as_str().expect("partition_id").to_string();
                let seq = v["sequence_number"].as_i64().expect("sequence_number");
                contents.records.push((partition, seq));
            }
        }
    }
    contents
}

/// Sequence numbers per partition, asserting no (partition, seq) appears twice.
fn coverage(records: &[(String, i64)]) -> BTreeMap<String, BTreeSet<i64>> {
    let mut out: BTreeMap<String, BTreeSet<i64>> = BTreeMap::new();
    for (p, s) in records {
        assert!(
            out.entry(p.clone()).or_default().insert(*s),
            "partition {p} seq {s} is in the lake twice"
        );
    }
    out
}

/// Every event of every partition is in the data objects exactly once, and the receipts
/// cover every sequence number exactly once.
fn assert_complete(summary: &SimulationSummary, lake: &LakeContents) {
    let cov = coverage(&lake.records);
    assert_eq!(lake.records.len() as u64, summary.events_total(), "record count");
    for p in &summary.partitions {
        let expected: BTreeSet<i64> = (p.first_sequence_number..=p.last_sequence_number).collect();
        assert_eq!(
            cov.get(&p.partition_id),
            Some(&expected),
            "partition {} coverage",
            p.partition_id
        );
        assert_eq!(
            p.checkpoint,
            Some(p.last_sequence_number),
            "partition {} checkpoint",
            p.partition_id
        );
        let mut covered: Vec<i64> = lake
            .receipts
            .iter()
            .filter(|r| r.partition_id == p.partition_id)
            .flat_map(|r| r.first_sequence_number..=r.last_sequence_number)
            .collect();
        covered.sort();
        assert_eq!(
            covered,
            expected.into_iter().collect::<Vec<_>>(),
            "receipts of partition {}",
            p.partition_id
        );
    }
}

#[tokio::test]
async fn every_sent_event_is_in_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut c = config(&lake, 1500, 3).with_app(&AppFiles::bundled().unwrap());
    c.app_root = dir.path().to_path_buf();
    c.batch_size = 100;
    c.seal = None;
    let summary = run(c).await;

    assert_eq!(summary.events_total(), 1500);
    assert_eq!(summary.events_acknowledged(), 1500);
    assert_eq!(summary.batches(), 15);
    assert!(summary.skipped_batches().is_empty());
    assert!(summary.restarts.is_empty());
    assert!(summary
        .invocations
        .iter()
        .all(|i| i.retry_count == 0 && i.outcome.is_success()));
    assert!(summary
        .invocations
        .iter()
        .all(|i| i.checkpoint == Some(i.last_sequence_number)));
    let contents = read_lake(&lake);
    assert_complete(&summary, &contents);
    assert_eq!(contents.receipts.len(), 15);
    assert_eq!(contents.receipts.iter().map(|r| r.event_count).sum::<u64>(), 1500);
    let listed = summary.lake.as_ref().expect("the lake was listed");
    assert_eq!(listed.data_objects as usize, contents.data_objects);
    assert_eq!(listed.receipts, 15);
    assert!(listed
        .directories
        .iter()
        .any(|d| d.path.starts_with("shop/orders/2025/01/15/")));
    let text = summary.to_string();
    assert!(text.contains("1500 in the hub"), "{text}");
}

#[tokio::test]
async fn a_handler_killed_mid_batch_is_restarted_and_nothing_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut c = config(&lake, 1200, 3);
    c.ingest.retry = Some(RetryPolicy::exponential(
        -1,
        Duration::from_secs(5),
        Duration::from_secs(300),
    ));
    c.faults = FaultPlan::new()
        .kill_during(1, 2, Duration::from_millis(2))
        .kill_during(2, 0, Duration::ZERO);
    let summary = run(c).await;

    assert_eq!(summary.restarts.len(), 2, "{:#?}", summary.restarts);
    assert!(
        summary.restarts.iter().all(|r| r.reason.contains("SIGKILL")),
        "{:#?}",
        summary.restarts
    );
    assert!(summary.redeliveries() >= 1, "in-flight batches are delivered again");
    assert!(summary.skipped_batches().is_empty());
    assert_eq!(summary.events_acknowledged(), 1200);
    // At-least-once delivery, but create-only writes with deterministic names: every
    // (partition, sequence number) is in the raw objects exactly once.
    assert_complete(&summary, &read_lake(&lake));
}

/// Makes every write below `<lake>/shop` fail with a real I/O error: a regular file
/// stands where the handler needs the `shop` directory (root ignores chmod).
fn block_shop(lake: &Path) -> PathBuf {
    std::fs::create_dir_all(lake).unwrap();
    let blocker = lake.join("shop");
    std::fs::write(&blocker, b"not a directory").unwrap();
    blocker
}

#[tokio::test]
async fn a_storage_failure_with_a_retry_policy_is_redelivered_and_not_checkpointed_past() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let blocker = block_shop(&lake);
    let mut c = config(&lake, 400, 2);
    c.ingest.retry = Some(RetryPolicy::exponential(
        -1,
        Duration::from_secs(5),
        Duration::from_secs(300),
    ));
    // The outage ends after the first failure.
    c.faults = FaultPlan::new().after_failures(1, move |_| std::fs::remove_file(&blocker).unwrap());
    let summary = run(c).await;

    assert!(summary.failed_invocations() >= 1, "the blocked write failed");
    assert!(
        summary.max_retry_count() >= 1,
        "the batch was re-delivered with RetryCount >= 1"
    );
    assert!(summary.skipped_batches().is_empty(), "nothing was checkpointed past");
    for failed in summary.invocations.iter().filter(|i| !i.outcome.is_success()) {
        assert_eq!(
            failed.checkpoint, None,
            "no checkpoint after a failed attempt: {failed:?}"
        );
        let retried = summary
            .invocations
            .iter()
            .find(|i| {
                i.partition_id == failed.partition_id
                    && i.batch == failed.batch
                    && i.retry_count > failed.retry_count
                    && i.outcome.is_success()
            })
            .unwrap_or_else(|| panic!("no successful retry of {failed:?}"));
        assert_eq!(
            retried.checkpoint,
            Some(retried.last_sequence_number),
            "checkpoint only after the retry"
        );
    }
    assert_complete(&summary, &read_lake(&lake));
}

#[tokio::test]
async fn the_same_failure_without_a_retry_policy_is_checkpointed_past() {
    // This is why functions/ingest/function.json has a retry policy: the host checkpoints
    // after every invocation, failed or not, once retries are exhausted. Without a policy
    // a failed batch is skipped and its events never reach the lake.
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let blocker = block_shop(&lake);
    let mut c = config(&lake, 400, 2);
    c.ingest.retry = None;
    c.faults = FaultPlan::new().after_failures(1, move |_| std::fs::remove_file(&blocker).unwrap());
    let summary = run(c).await;

    let skipped: Vec<_> = summary.skipped_batches().into_iter().cloned().collect();
    assert!(!skipped.is_empty(), "the failed batch was checkpointed past");
    assert!(
        summary.invocations.iter().all(|i| i.retry_count == 0),
        "no retries without a policy"
    );
    for failed in summary.invocations.iter().filter(|i| !i.outcome.is_success()) {
        assert_eq!(
            failed.checkpoint,
            Some(failed.last_sequence_number),
            "checkpointed past: {failed:?}"
        );
    }
    let text = summary.to_string();
    assert!(
        text.contains(&format!(
            "checkpointed past {} failed batches (events skipped)",
            skipped.len()
        )),
        "{text}"
    );

    let contents = read_lake(&lake);
    let cov = coverage(&contents.records);
    for p in &summary.partitions {
        assert_eq!(p.checkpoint, Some(p.last_sequence_number), "the partition moved on");
        let present = cov.get(&p.partition_id).cloned().unwrap_or_default();
        let in_skipped = |s: i64| {
            skipped.iter().any(|b| {
                b.partition_id == p.partition_id && (b.first_sequence_number..=b.last_sequence_number).contains(&s)
            })
        };
        for s in p.first_sequence_number..=p.last_sequence_number {
            if !in_skipped(s) {
                assert!(present.contains(&s), "partition {} seq {s} is missing", p.partition_id);
            }
        }
    }
    for b in &skipped {
        let missing = (b.first_sequence_number..=b.last_sequence_number)
            .filter(|s| !cov.get(&b.partition_id).is_some_and(|c| c.contains(s)))
            .count();
        assert!(
            missing > 0,
            "events of the skipped batch {b:?} are missing from the lake"
        );
        assert!(
            !contents
                .receipts
                .iter()
                .any(|r| r.partition_id == b.partition_id && r.first_sequence_number == b.first_sequence_number),
            "a skipped batch has no receipt"
        );
    }
}

#[tokio::test]
async fn the_timer_fires_on_its_schedule_in_simulated_time() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut c = config(&lake, 300, 2);
    c.settings
        .insert("HUB2LAKE_SEAL_SCHEDULE".into(), "0 */15 * * * *".into());
    c.seal = Some(SealPlan {
        function: "seal".into(),
        binding: "timer".into(),
        schedule: Some("%HUB2LAKE_SEAL_SCHEDULE%".into()),
        at_end: true,
    });
    let summary = run(c).await;

    let scheduled: Vec<String> = summary
        .seals
        .iter()
        .filter(|s| !s.at_end)
        .map(|s| s.scheduled.format("%H:%M").to_string())
        .collect();
    // 09:40 + 2 h, every 15 minutes.
    assert_eq!(
        scheduled,
        ["09:45", "10:00", "10:15", "10:30", "10:45", "11:00", "11:15", "11:30"]
    );
    assert_eq!(summary.seals.iter().filter(|s| s.at_end).count(), 1);
    assert!(
        summary.seals.iter().all(|s| s.status == Some(200)),
        "{:#?}",
        summary.seals
    );
    assert_eq!(summary.events_acknowledged(), 300);
}

#[test]
fn simulate_help_works() {
    let out = Command::new(env!("CARGO_BIN_EXE_hub2lake"))
        .args(["simulate", "--help"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for flag in [
        "--handler",
        "--settings",
        "--set",
        "--input",
        "--batch-size",
        "--time-scale",
        "--kill-at",
        "--seal-at-end",
    ] {
        assert!(text.contains(flag), "{flag} missing from:\n{text}");
    }
}

#[test]
fn demo_runs_prints_the_summary_and_only_clears_its_own_lake() {
    let dir = tempfile::tempdir().unwrap();
    let demo = |lake: &str| {
        Command::new(env!("CARGO_BIN_EXE_hub2lake"))
            .args(["demo", "--lake", lake, "--no-progress", "--events", "800"])
            .current_dir(dir.path())
            .env_remove("HUB2LAKE_LAKE_URL")
            .output()
            .unwrap()
    };
    let out = demo("lake");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    let lake = dir.path().join("lake");
    assert!(
        stdout.contains(&lake.display().to_string()),
        "the absolute lake path is shown:\n{stdout}"
    );
    for needle in [
        "What happened",
        "800 in the hub",
        "800 acknowledged",
        "receipts",
        "What to open next",
        "zcat lake/",
    ] {
        assert!(stdout.contains(needle), "{needle:?} missing from:\n{stdout}");
    }
    assert!(lake.join(".hub2lake-demo").is_file());
    assert!(lake.join("_receipts").is_dir());

    // A second demo clears the first one's lake.
    let out = demo("lake");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // A folder the demo did not make is left alone.
    let other = dir.path().join("precious");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("keep.txt"), b"x").unwrap();
    let out = demo("precious");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not created by `hub2lake demo`"));
    assert!(other.join("keep.txt").is_file());

    // A missing handler says how to build it.
    let out = Command::new(env!("CARGO_BIN_EXE_hub2lake"))
        .args(["demo", "--lake", "x", "--handler", "/nonexistent/handler"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cargo build --release"));
}
