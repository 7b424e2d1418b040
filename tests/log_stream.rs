//! The log stream through the real handler binary: a log target that always fails
//! never costs a lake write (every batch is answered 2xx and lands, with the circuit
//! open), and the file target's JSON lines carry the schema and the span fields.

mod common;

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::{data_records, Handler};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition, WireRetry};
use serde_json::{json, Value};

/// A batch of `n` change events of partition `partition` from sequence number `first`.
fn batch(partition: &str, first: i64, n: i64) -> String {
    let t = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
    let events: Vec<WireEvent> = (first..first + n)
        .map(|seq| WireEvent {
            body: json!({
                "_id": {"_data": format!("8267{seq:08X}")},
                "operationType": "insert",
                "ns": {"db": "shop", "coll": "orders"},
                "documentKey": {"_id": seq},
                "fullDocument": {"_id": seq, "n": seq},
            })
            .to_string()
            .into_bytes(),
            sequence_number: seq,
            offset: 1000 * seq,
            enqueued_time: t,
            partition_key: None,
            properties: json!({}),
        })
        .collect();
    let p = WirePartition {
        partition_id: partition.into(),
        ..WirePartition::default()
    };
    eventhub_request(
        "events",
        &p,
        &events,
        WireDataType::String,
        Some(WireRetry {
            retry_count: 0,
            max_retry_count: -1,
        }),
        "ingest",
    )
}

async fn log_stream(h: &Handler) -> Value {
    let (status, body) = h.get("/healthz").await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    v["log_stream"].clone()
}

/// Polls `/healthz` until `check` holds for `log_stream`, or fails after `within`.
async fn wait_for(h: &Handler, within: Duration, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let s = log_stream(h).await;
        if check(&s) {
            return s;
        }
        assert!(Instant::now() < deadline, "{what}: log_stream is {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn closed_port() -> u16 {
    // Bound then released: nothing listens there, so connecting is refused.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test]
async fn a_log_target_that_always_fails_never_costs_a_lake_write() {
    let port = closed_port();
    let cs = format!(
        "Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=send;SharedAccessKey=a2V5;EntityPath=application-logs"
    );
    let h = Handler::start(&[
        ("HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING", &cs),
        ("HUB2LAKE_LOG_STREAM_BATCH_SIZE", "2"),
        ("HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS", "20"),
        ("HUB2LAKE_LOG_STREAM_CIRCUIT_THRESHOLD", "2"),
        ("HUB2LAKE_LOG_STREAM_CIRCUIT_OPEN_SECS", "3600"),
        ("HUB2LAKE_LOG_STREAM_LEVEL", "debug"),
        ("RUST_LOG", "info"),
    ]);
    let initial = log_stream(&h).await;
    for key in ["state", "queued", "sent", "dropped", "failed_batches", "last_error"] {
        assert!(initial.get(key).is_some(), "{key} missing from {initial}");
    }
    assert_ne!(initial["state"], "disabled", "{initial}");

    // Several batches while the stream fails; each one is answered 2xx and lands.
    let mut expected = 0;
    for b in 0..6 {
        let (status, body) = h.post("ingest", batch("0", b * 50, 50)).await;
        assert_eq!(status, 200, "{body}");
        expected += 50;
    }
    let open = wait_for(&h, Duration::from_secs(60), "the circuit opens", |s| {
        s["state"] == "open"
    })
    .await;
    assert!(open["failed_batches"].as_u64().unwrap() >= 2, "{open}");
    assert_eq!(open["sent"], 0, "{open}");
    assert!(open["dropped"].as_u64().unwrap() >= 4, "{open}");
    assert!(
        open["last_error"].as_str().is_some_and(|e| e.contains("127.0.0.1")),
        "{open}"
    );

    // With the circuit open, ingest goes on exactly as before.
    for b in 6..9 {
        let (status, body) = h.post("ingest", batch("1", b * 50, 50)).await;
        assert_eq!(status, 200, "{body}");
        expected += 50;
    }
    let records: usize = data_records(&h.lake).iter().map(|(_, r)| r.len()).sum();
    assert_eq!(records, expected, "every event of every batch is in the lake");
    assert_eq!(log_stream(&h).await["state"], "open");
}

#[tokio::test]
async fn the_rollback_switch_turns_the_event_hub_target_off() {
    let cs = "Endpoint=sb://127.0.0.1:1/;SharedAccessKeyName=send;SharedAccessKey=a2V5";
    let h = Handler::start(&[
        ("HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING", cs),
        ("HUB2LAKE_LOG_EVENTHUB_ENABLED", "false"),
    ]);
    let (status, body) = h.post("ingest", batch("0", 0, 5)).await;
    assert_eq!(status, 200, "{body}");
    let s = log_stream(&h).await;
    assert_eq!(
        s,
        json!({"state": "disabled", "queued": 0, "sent": 0, "dropped": 0, "failed_batches": 0, "last_error": null})
    );
}

#[tokio::test]
async fn the_file_target_writes_schema_lines_with_the_span_fields() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logs/handler.jsonl");
    let mut h = Handler::start(&[
        ("HUB2LAKE_LOG_STREAM_FILE", file.to_str().unwrap()),
        // Long enough that only the shutdown flush can send the last records.
        ("HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS", "60000"),
        ("WEBSITE_INSTANCE_ID", "instance-under-test"),
    ]);
    let (status, body) = h.post("ingest", batch("3", 100, 5)).await;
    assert_eq!(status, 200, "{body}");
    let s = log_stream(&h).await;
    assert_eq!(s["state"], "closed", "{s}");
    assert!(
        s["queued"].as_u64().unwrap() >= 2,
        "start-up and batch lines wait for their batch: {s}"
    );
    assert_eq!(s["sent"], 0, "{s}");

    let started = Instant::now();
    let exit = h.terminate();
    assert!(exit.success(), "{exit:?}");
    assert!(started.elapsed() < Duration::from_secs(10));

    let text = std::fs::read_to_string(&file).expect("the flush at shutdown wrote the file");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    for v in &lines {
        for key in [
            "timestamp",
            "level",
            "message",
            "target",
            "service",
            "instance",
            "version",
        ] {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert_eq!(v["service"], "handler", "{v}");
        assert_eq!(v["instance"], "instance-under-test", "{v}");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(
            ts.ends_with('Z') && chrono::DateTime::parse_from_rfc3339(ts).is_ok(),
            "{ts}"
        );
        assert!(v.get("fields").is_none(), "the message is not nested: {v}");
    }
    let written = lines
        .iter()
        .find(|v| v["message"] == "batch written")
        .unwrap_or_else(|| panic!("no `batch written` line in {text}"));
    assert_eq!(written["level"], "INFO");
    assert_eq!(written["target"], "hub2lake::server");
    assert_eq!(written["function"], "ingest");
    assert_eq!(written["invocation_id"], "00000000-0000-0000-0000-000000000001");
    assert_eq!(written["partition"], "3");
    assert_eq!(written["first_seq"], 100);
    assert_eq!(written["last_seq"], 104);
    assert_eq!(written["records"], 5);
    assert!(
        lines.iter().any(|v| v["message"] == "hub2lake handler listening"),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|v| v["message"] == "hub2lake handler stopped gracefully"),
        "lines logged during shutdown are flushed too: {text}"
    );
}

#[tokio::test]
async fn object_spans_add_route_and_hour() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("handler.jsonl");
    let mut h = Handler::start(&[
        ("HUB2LAKE_LOG_STREAM_FILE", file.to_str().unwrap()),
        ("HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS", "10"),
    ]);
    let body = batch("2", 0, 3);
    assert_eq!(h.post("ingest", body.clone()).await.0, 200);
    // A redelivery logs, per object, that it was already written: inside the object span.
    assert_eq!(h.post("ingest", body).await.0, 200);
    h.terminate();
    let text = std::fs::read_to_string(&file).unwrap();
    let verified: Value = text
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|v| v["message"].as_str().is_some_and(|m| m.contains("already written")))
        .unwrap_or_else(|| panic!("no redelivery line in {text}"));
    assert_eq!(verified["route"], "shop/orders", "{verified}");
    assert_eq!(verified["hour"], "2025-03-01T08:00:00.000Z", "{verified}");
    assert_eq!(verified["partition"], "2", "{verified}");
}

#[test]
fn malformed_log_settings_refuse_to_start_naming_the_setting() {
    let cases = [
        ("HUB2LAKE_LOG_STREAM_QUEUE_SIZE", "lots"),
        ("HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS", "1s"),
        ("HUB2LAKE_LOG_EVENTHUB_ENABLED", "perhaps"),
        (
            "HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING",
            "SharedAccessKeyName=a;SharedAccessKey=TOPSECRET",
        ),
    ];
    for (setting, value) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .env("HUB2LAKE_LAKE_URL", "file:///tmp/hub2lake-log-stream-test")
            .env(setting, value)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{setting}={value} should not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(setting), "{setting}: {stderr}");
        assert!(!stderr.contains("TOPSECRET"), "{stderr}");
    }
}

#[test]
fn the_adx_mapping_reads_every_field_the_stream_writes() {
    let kql = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/adx/pipeline-logs.kql")).unwrap();
    let span_fields = [
        "invocation_id",
        "function",
        "eventhub",
        "partition",
        "first_seq",
        "last_seq",
        "retry",
        "route",
        "hour",
    ];
    for key in hub2lake::telemetry::schema::FIXED_KEYS.iter().chain(span_fields.iter()) {
        let path = format!("\"path\": \"$.{key}\"");
        assert!(kql.contains(&path), "the PipelineLogs mapping has no column for {key}");
    }
    assert!(kql.contains("\"path\": \"$.message\""));
    assert!(
        kql.contains("\"path\": \"$\",") || kql.contains("\"path\": \"$\" "),
        "the whole record is kept (Properties) so event fields are never lost"
    );
    assert!(kql.contains(".alter table PipelineLogs policy streamingingestion enable"));
}

/// Runs the handler with `env`, posts one batch, stops it with SIGTERM and returns its
/// stderr (the console logs).
async fn console_of_one_batch(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let port = hub2lake_testkit::free_port();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("FUNCTIONS_CUSTOMHANDLER_PORT", port.to_string())
        .env(
            "HUB2LAKE_LAKE_URL",
            format!("file://{}", dir.path().join("lake").display()),
        )
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "handler did not listen");
        std::thread::sleep(Duration::from_millis(25));
    }
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/ingest"))
        .header("X-Azure-Functions-InvocationId", "inv-console")
        .body(batch("5", 7, 2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    // SAFETY: kill(2) on our own child, not yet waited for.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let out = tokio::task::spawn_blocking(move || {
        let _ = child.wait();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut text).unwrap();
        text
    })
    .await
    .unwrap();
    out
}

#[tokio::test]
async fn console_json_uses_the_same_schema_as_the_stream() {
    let stderr = console_of_one_batch(&[("HUB2LAKE_LOG_FORMAT", "json")]).await;
    let lines: Vec<Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(lines.len() >= 3, "{stderr}");
    for v in &lines {
        for key in hub2lake::telemetry::schema::FIXED_KEYS {
            assert!(v.get(key).is_some(), "{key} missing: {v}");
        }
        assert!(
            v.get("fields").is_none() && v.get("span").is_none(),
            "nothing nested: {v}"
        );
    }
    let written = lines
        .iter()
        .find(|v| v["message"] == "batch written")
        .expect("batch written");
    assert_eq!(written["invocation_id"], "inv-console");
    assert_eq!(written["partition"], "5");
    assert_eq!(
        (written["first_seq"].as_i64(), written["last_seq"].as_i64()),
        (Some(7), Some(8))
    );
}

#[tokio::test]
async fn stdout_off_means_stream_only() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stream.jsonl");
    let stderr = console_of_one_batch(&[
        ("HUB2LAKE_LOG_FORMAT", "json"),
        ("HUB2LAKE_LOG_STDOUT", "false"),
        ("HUB2LAKE_LOG_STREAM_FILE", file.to_str().unwrap()),
    ])
    .await;
    assert!(stderr.trim().is_empty(), "no console logs: {stderr}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("\"message\":\"batch written\""), "{text}");
}

#[tokio::test]
async fn the_stream_figures_are_logged_periodically() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stream.jsonl");
    let h = Handler::start(&[
        ("HUB2LAKE_LOG_STREAM_FILE", file.to_str().unwrap()),
        ("HUB2LAKE_LOG_STREAM_BATCH_TIMEOUT_MS", "10"),
        ("HUB2LAKE_LOG_STREAM_STATS_SECS", "1"),
    ]);
    let deadline = Instant::now() + Duration::from_secs(20);
    let stats = loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let found = text
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .find(|v| v["message"] == "log stream stats");
        if let Some(v) = found {
            break v;
        }
        assert!(Instant::now() < deadline, "no stats line in {text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(stats["stream"], "file");
    assert_eq!(stats["state"], "closed");
    for key in ["queued", "sent", "dropped", "failed_batches"] {
        assert!(stats[key].is_u64(), "{key}: {stats}");
    }
    assert!(stats["sent"].as_u64().unwrap() >= 1, "{stats}");
    drop(h);
}
