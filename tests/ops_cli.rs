//! The `hub2lake ls | verify | get | replay` commands, run as the real binary against
//! lakes made by ingesting host-shaped batches through the library.
//!
//! Needs `LakeCommand` flattened into the `hub2lake` CLI (`cli/mod.rs`).

use std::ops::RangeInclusive;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use hub2lake::config::{EventEncoding, Settings};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition};
use hub2lake::host::{EventHubBatch, Invocation, TimerInfo};
use hub2lake::ingest::Ingestor;
use hub2lake::lake::Lake;
use serde_json::{json, Value};

fn hour(offset: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap() + TimeDelta::hours(offset)
}

fn events(pid: &str, seqs: RangeInclusive<i64>, at: DateTime<Utc>) -> Vec<WireEvent> {
    seqs.map(|seq| WireEvent {
        body: json!({
            "_id": {"_data": format!("tok-{pid}-{seq}")},
            "operationType": "update",
            "ns": {"db": "shop", "coll": "orders"},
            "documentKey": {"_id": seq},
            "updateDescription": {"updatedFields": {"qty": seq}},
        })
        .to_string()
        .into_bytes(),
        sequence_number: seq,
        offset: seq * 10,
        enqueued_time: at + TimeDelta::milliseconds(seq),
        partition_key: Some(format!("doc-{seq}")),
        properties: json!({"n": seq}),
    })
    .collect()
}

async fn ingest(lake: &Lake, settings: &Settings, pid: &str, seqs: RangeInclusive<i64>, at: DateTime<Utc>) {
    let partition = WirePartition {
        partition_id: pid.into(),
        ..WirePartition::default()
    };
    let body = eventhub_request(
        "events",
        &partition,
        &events(pid, seqs, at),
        WireDataType::String,
        None,
        "ingest",
    );
    let inv = Invocation::parse(body.as_bytes()).unwrap();
    let batch = EventHubBatch::from_invocation(&inv, EventEncoding::Auto, "hub", "$Default").unwrap();
    Ingestor::new(Arc::new(settings.clone()), lake.clone())
        .ingest(batch)
        .await
        .unwrap();
}

/// A local lake with partition 0: 0..=99 (hour 10) and 200..=299 (hour 11) when `hole`,
/// else 0..=299; partition 1: 0..=49.
async fn local_lake(dir: &Path, hole: bool) -> String {
    let root = dir.join("lake");
    let settings = Settings::local(&root);
    let lake = Lake::open(&settings).unwrap();
    ingest(&lake, &settings, "0", 0..=99, hour(0)).await;
    if !hole {
        ingest(&lake, &settings, "0", 100..=199, hour(0) + TimeDelta::minutes(30)).await;
    }
    ingest(&lake, &settings, "0", 200..=299, hour(1)).await;
    ingest(&lake, &settings, "1", 0..=49, hour(1)).await;
    format!("file://{}", root.display())
}

/// Runs `hub2lake` with only the given environment.
fn hub2lake(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_hub2lake"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("hub2lake runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[tokio::test]
async fn ls_prints_a_table_and_json() {
    let dir = tempfile::tempdir().unwrap();
    let url = local_lake(dir.path(), false).await;
    let out = hub2lake(&["ls", "--lake", &url, "--from", "2025-01-15"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let table = text(&out.stdout);
    assert!(
        table.contains("HOUR (UTC)") && table.contains("2025-01-15T10") && table.contains("orders"),
        "{table}"
    );

    let out = hub2lake(&["ls", "--json", "--db", "shop"], &[("HUB2LAKE_LAKE_URL", &url)]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["units"].as_array().unwrap().len(), 2);
    assert_eq!(v["totals"]["records"], 350);
    assert_eq!(v["units"][0]["partitions"], 1);
    assert_eq!(v["units"][1]["partitions"], 2);
}

#[tokio::test]
async fn verify_exits_0_when_clean_and_1_naming_a_hole() {
    let dir = tempfile::tempdir().unwrap();
    let clean = local_lake(&dir.path().join("a"), false).await;
    let holed = local_lake(&dir.path().join("b"), true).await;

    let out = hub2lake(&["verify", "--lake", &clean], &[]);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("OK"));

    let out = hub2lake(&["verify", "--lake", &holed], &[]);
    assert_eq!(code(&out), 1, "{}{}", text(&out.stdout), text(&out.stderr));
    let stdout = text(&out.stdout);
    assert!(stdout.contains("missing sequence numbers 100..199"), "{stdout}");
    assert!(
        stdout.contains("2025-01-15T10") && stdout.contains("2025-01-15T11"),
        "{stdout}"
    );

    let out = hub2lake(&["verify", "--lake", &holed, "--json"], &[]);
    assert_eq!(code(&out), 1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clean"], false);
    let gap = &v["findings"][0];
    assert_eq!(
        (
            gap["kind"].as_str(),
            gap["first_missing"].as_i64(),
            gap["last_missing"].as_i64()
        ),
        (Some("gap"), Some(100), Some(199))
    );
}

#[tokio::test]
async fn usage_and_configuration_errors_exit_2_with_clear_messages() {
    let dir = tempfile::tempdir().unwrap();
    let url = local_lake(dir.path(), false).await;
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["ls", "--lake", &url, "--from", "yesterday"], "--from"),
        (
            vec!["ls", "--lake", &url, "--from", "2025-01-16", "--to", "2025-01-15"],
            "empty",
        ),
        (vec!["verify", "--lake", "ftp://nowhere"], "HUB2LAKE_LAKE_URL"),
        (vec!["verify"], "--lake"),
        (vec!["ls", "--lake", "file:///no/such/hub2lake/lake"], "does not exist"),
        (
            vec![
                "replay",
                "--lake",
                &url,
                "--to-eventhub",
                "--connection-string",
                "Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=a",
            ],
            "SharedAccessKey",
        ),
        (vec!["replay", "--lake", &url, "--to-eventhub"], "--connection-string"),
        (
            vec!["replay", "--lake", &url, "--to-eventhub", "--namespace", "contoso"],
            "--eventhub",
        ),
        (vec!["get", "--lake", &url], "--out"),
        (vec!["replay", "--lake", &url], "--to-eventhub"),
    ];
    for (args, needle) in cases {
        let out = hub2lake(&args, &[]);
        assert_eq!(code(&out), 2, "{args:?}: {}{}", text(&out.stdout), text(&out.stderr));
        assert!(text(&out.stderr).contains(needle), "{args:?}: {}", text(&out.stderr));
    }
    let out = hub2lake(
        &[
            "replay",
            "--lake",
            &url,
            "--to-eventhub",
            "--connection-string",
            "Endpoint=sb://x/;SharedAccessKeyName=a;SharedAccessKey=TOPSECRET;EntityPath=a/b",
        ],
        &[],
    );
    assert_eq!(code(&out), 2);
    assert!(!text(&out.stderr).contains("TOPSECRET"), "{}", text(&out.stderr));
}

/// The objects a delivery of `seqs` writes, without its receipt: delivered to a scratch
/// lake, and its data objects copied into `root` under the same (deterministic) names —
/// what a delivery whose receipt write failed leaves, when the host gave up on it.
async fn objects_without_receipt(scratch: &Path, root: &Path, pid: &str, seqs: RangeInclusive<i64>, at: DateTime<Utc>) {
    let settings = Settings::local(scratch);
    let lake = Lake::open(&settings).unwrap();
    ingest(&lake, &settings, pid, seqs, at).await;
    let folder = Path::new("shop/orders").join(at.format("%Y/%m/%d/%H").to_string());
    for entry in std::fs::read_dir(scratch.join(&folder)).unwrap() {
        let name = entry.unwrap().file_name();
        std::fs::copy(scratch.join(&folder).join(&name), root.join(&folder).join(&name)).unwrap();
    }
}

async fn seal(lake: &Lake, settings: &Settings) -> hub2lake::seal::SealReport {
    hub2lake::seal::run(
        settings,
        lake,
        &TimerInfo::default(),
        Utc::now() + TimeDelta::minutes(20),
    )
    .await
    .unwrap()
}

/// A delivery of 50..=99 wrote its object, never its receipt, and the host gave up:
/// the seal keeps the object (it holds the only copy of those events) and lists it in
/// the manifest's `unreceipted`, with a `_recheck` marker. `verify` fails on the gap
/// and warns about the object; `ls` shows it. Replaying the gap makes it a copy, which
/// the seal removes: the lake verifies clean again.
#[tokio::test]
async fn verify_and_ls_follow_an_object_the_seal_keeps_until_a_replay_covers_it() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let settings = Settings::local(&root);
    let lake = Lake::open(&settings).unwrap();
    ingest(&lake, &settings, "0", 0..=49, hour(0)).await;
    ingest(&lake, &settings, "0", 100..=149, hour(0) + TimeDelta::minutes(20)).await;
    objects_without_receipt(
        &dir.path().join("scratch"),
        &root,
        "0",
        50..=99,
        hour(0) + TimeDelta::minutes(10),
    )
    .await;
    let report = seal(&lake, &settings).await;
    assert_eq!((report.units_sealed, report.unreceipted_left), (1, 1), "{report:?}");
    let url = format!("file://{}", root.display());
    let kept = "shop/orders/2025/01/15/10/0-50-99.jsonl.gz";

    let out = hub2lake(&["verify", "--lake", &url], &[]);
    let stdout = text(&out.stdout);
    assert_eq!(code(&out), 1, "{stdout}{}", text(&out.stderr));
    assert!(
        stdout.contains("FAIL gap: partition 0") && stdout.contains("missing sequence numbers 50..99"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("WARN unreceipted: {kept}"))
            && stdout.contains("partition 0 sequence numbers 50..99 (50 events)")
            && stdout.contains("docs/recovery.md"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("FAIL orphan") && !stdout.contains("not a lake object"),
        "{stdout}"
    );
    assert!(stdout.contains("FAILED: 1 problems, 1 warning"), "{stdout}");

    let out = hub2lake(&["verify", "--lake", &url, "--json"], &[]);
    assert_eq!(code(&out), 1);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["gap"]);
    let warning = &v["warnings"][0];
    assert_eq!(
        (warning["kind"].as_str(), warning["path"].as_str()),
        (Some("unreceipted"), Some(kept))
    );
    assert_eq!(warning["uncovered"][0]["first_sequence_number"], 50);
    assert_eq!(warning["uncovered"][0]["last_sequence_number"], 99);

    let out = hub2lake(&["ls", "--lake", &url, "--json"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let unit = &v["units"][0];
    assert_eq!(
        (
            &unit["unreceipted"],
            &unit["orphans"],
            &unit["recheck"],
            &unit["complete"]
        ),
        (&json!(1), &json!(0), &json!(true), &json!(false)),
        "{unit}"
    );
    assert_eq!(v["totals"]["unreceipted"], 1);
    let out = hub2lake(&["ls", "--lake", &url], &[]);
    let table = text(&out.stdout);
    assert!(
        table.contains("sealed g1 (gaps)") && table.contains("(1 unreceipted)"),
        "{table}"
    );

    // The operator replays the range (other boundaries): the kept object is a copy now.
    ingest(&lake, &settings, "0", 40..=109, hour(0) + TimeDelta::minutes(10)).await;
    let report = seal(&lake, &settings).await;
    assert_eq!(report.copies_removed, 1, "{report:?}");
    let out = hub2lake(&["verify", "--lake", &url], &[]);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        text(&out.stdout).contains("OK: the lake is clean"),
        "{}",
        text(&out.stdout)
    );
    let out = hub2lake(&["ls", "--lake", &url, "--json"], &[]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let unit = &v["units"][0];
    assert_eq!(
        (
            &unit["unreceipted"],
            &unit["removed_copies"],
            &unit["recheck"],
            &unit["complete"]
        ),
        (&json!(0), &json!(1), &json!(true), &json!(true)),
        "{unit}"
    );
}

#[test]
fn every_command_documents_examples_and_exit_codes() {
    for cmd in ["ls", "verify", "get", "replay"] {
        let out = hub2lake(&[cmd, "--help"], &[]);
        assert_eq!(code(&out), 0);
        let help = text(&out.stdout);
        assert!(
            help.contains("Examples:") && help.contains("Exit codes:"),
            "{cmd}: {help}"
        );
        assert!(help.contains("--from") && help.contains("--lake"), "{cmd}: {help}");
        assert!(
            help.contains("0  success") && help.contains("3  storage"),
            "{cmd}: {help}"
        );
    }
    let help = text(&hub2lake(&["verify", "--help"], &[]).stdout);
    assert!(
        help.contains("Warnings (printed as WARN, exit code stays 0)") && help.contains("removed_copies"),
        "{help}"
    );
}

#[tokio::test]
async fn get_downloads_a_day_resumably_and_merges_it() {
    let dir = tempfile::tempdir().unwrap();
    let url = local_lake(dir.path(), false).await;
    let out_dir = dir.path().join("day");
    let merged = dir.path().join("day.jsonl");
    let args = [
        "get",
        "--lake",
        &url,
        "--from",
        "2025-01-15",
        "--to",
        "2025-01-15",
        "--out",
        out_dir.to_str().unwrap(),
        "--merge",
        merged.to_str().unwrap(),
        "--json",
    ];
    let out = hub2lake(&args, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let first: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(first["fetched_objects"], 4);
    assert_eq!(first["merge"]["records_out"], 350);
    let lake_root = dir.path().join("lake");
    let day = out_dir.join("shop/orders/2025/01/15/10/0-0-99.jsonl.gz");
    assert_eq!(
        std::fs::read(&day).unwrap(),
        std::fs::read(lake_root.join("shop/orders/2025/01/15/10/0-0-99.jsonl.gz")).unwrap()
    );
    let out = hub2lake(&args, &[]);
    let second: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (second["fetched_objects"].as_u64(), second["skipped_objects"].as_u64()),
        (Some(0), Some(4))
    );
    let lines = std::fs::read_to_string(&merged).unwrap();
    assert_eq!(lines.lines().count(), 350);
}

/// The binary on a zstd lake: ls counts it, verify passes it, get --decompress writes
/// `.jsonl` files; a zstd level out of range is refused naming the setting.
#[tokio::test]
async fn ls_verify_and_get_decompress_read_a_zstd_lake() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("lake");
    let mut settings = Settings::local(&root);
    settings.compression = hub2lake::config::Compression::Zstd { level: 3 };
    let lake = Lake::open(&settings).unwrap();
    ingest(&lake, &settings, "0", 0..=99, hour(0)).await;
    ingest(&lake, &settings, "1", 0..=49, hour(0)).await;
    let url = format!("file://{}", root.display());
    let stored = root.join("shop/orders/2025/01/15/10/0-0-99.jsonl.zst");
    assert!(stored.is_file());

    let out = hub2lake(&["ls", "--lake", &url, "--json"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let ls: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ls["totals"]["records"], 150, "{ls}");
    let out = hub2lake(&["verify", "--lake", &url], &[]);
    assert_eq!(code(&out), 0, "{}{}", text(&out.stdout), text(&out.stderr));

    let out_dir = dir.path().join("day");
    let args = [
        "get",
        "--lake",
        &url,
        "--from",
        "2025-01-15",
        "--to",
        "2025-01-15",
        "--out",
        out_dir.to_str().unwrap(),
        "--decompress",
    ];
    let out = hub2lake(&args, &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let local = std::fs::read_to_string(out_dir.join("shop/orders/2025/01/15/10/0-0-99.jsonl")).unwrap();
    assert_eq!(local.lines().count(), 100);
    assert_eq!(
        local.as_bytes(),
        hub2lake::lake::codec::decode_object(&std::fs::read(&stored).unwrap()).unwrap()
    );

    let out = hub2lake(
        &["ls", "--lake", &url],
        &[("HUB2LAKE_COMPRESSION", "zstd"), ("HUB2LAKE_ZSTD_LEVEL", "30")],
    );
    assert_eq!(code(&out), 2);
    assert!(
        text(&out.stderr).contains("HUB2LAKE_ZSTD_LEVEL"),
        "{}",
        text(&out.stderr)
    );
}

#[tokio::test]
async fn replay_to_files_and_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let url = local_lake(dir.path(), false).await;
    let sent = dir.path().join("sent");
    let pos = dir.path().join("pos.json");
    let out = hub2lake(
        &[
            "replay",
            "--lake",
            &url,
            "--from",
            "2025-01-15T10",
            "--to",
            "2025-01-15T10",
            "--to-file",
            sent.to_str().unwrap(),
            "--position",
            pos.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("sent 200 events"), "{}", text(&out.stdout));
    let lines = std::fs::read_to_string(sent.join("0.jsonl")).unwrap();
    let first: Value = serde_json::from_str(lines.lines().next().unwrap()).unwrap();
    assert_eq!(first["source_sequence_number"], 0);
    assert_eq!(first["partition_key"], "doc-0");
    let body: Value = serde_json::from_str(first["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["_id"]["_data"], "tok-0-0");

    let out = hub2lake(&["replay", "--lake", &url, "--dry-run", "--from", "2025-01-15T11"], &[]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("would send"), "{}", text(&out.stdout));
}

#[tokio::test]
async fn verify_and_ls_read_an_azurite_lake_with_object_store_credentials() {
    use hub2lake_testkit::azurite::Azurite;
    let az = Azurite::start().await.expect("Azurite starts (run `npm ci` first)");
    az.create_container("lake").await.unwrap();
    let store = az.object_store_builder("lake").build().unwrap();
    let lake = Lake::from_store(Arc::new(store), "raw", true, "azurite".into());
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::local(dir.path().join("unused"));
    ingest(&lake, &settings, "0", 0..=99, hour(0)).await;
    ingest(&lake, &settings, "0", 200..=209, hour(0)).await;

    let env = az.env_for_object_store("lake");
    let vars: Vec<(&str, &str)> = env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let url = format!("{}/raw", env.lake_url);
    let out = hub2lake(&["verify", "--lake", &url], &vars);
    assert_eq!(code(&out), 1, "{}{}", text(&out.stdout), text(&out.stderr));
    assert!(text(&out.stdout).contains("100..199"), "{}", text(&out.stdout));
    let out = hub2lake(&["ls", "--lake", &url, "--json"], &vars);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["totals"]["records"], 110);
}
