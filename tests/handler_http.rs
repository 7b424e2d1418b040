//! The handler over a real socket: every host fixture, the lake it produces, and the
//! error answers the host (and an operator) sees.

mod common;

use chrono::{TimeZone, Utc};
use common::{data_records, files, fixture, json_lines, Handler};
use hub2lake::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition, WireRetry};
use serde_json::{json, Value};

fn change_event(db: &str, coll: &str, op: &str, n: i64) -> Vec<u8> {
    json!({
        "_id": {"_data": format!("8267{n:08X}")},
        "operationType": op,
        "clusterTime": {"$timestamp": {"t": 1736937173 + n, "i": 1}},
        "ns": {"db": db, "coll": coll},
        "documentKey": {"_id": {"$oid": format!("{n:024x}")}},
        "fullDocument": {"_id": {"$oid": format!("{n:024x}")}, "n": n, "at": {"$date": "2025-01-15T10:32:53.120Z"}},
    })
    .to_string()
    .into_bytes()
}

fn wire_events(start_seq: i64, bodies: Vec<(chrono::DateTime<Utc>, Vec<u8>)>) -> Vec<WireEvent> {
    bodies
        .into_iter()
        .enumerate()
        .map(|(i, (t, body))| WireEvent {
            body,
            sequence_number: start_seq + i as i64,
            offset: 1000 * (start_seq + i as i64),
            enqueued_time: t,
            partition_key: None,
            properties: json!({}),
        })
        .collect()
}

fn request(partition: &str, events: &[WireEvent]) -> String {
    let p = WirePartition {
        partition_id: partition.into(),
        ..WirePartition::default()
    };
    eventhub_request(
        "events",
        &p,
        events,
        WireDataType::String,
        Some(WireRetry {
            retry_count: 0,
            max_retry_count: -1,
        }),
        "ingest",
    )
}

fn assert_host_response(body: &str) {
    let v: Value = serde_json::from_str(body).expect("response is JSON");
    assert!(v["Outputs"].is_object(), "{body}");
    assert!(v["Logs"].is_array(), "{body}");
    assert!(v.get("ReturnValue").is_some(), "{body}");
}

#[tokio::test]
async fn readiness_probe_and_healthz_answer() {
    let h = Handler::start(&[]);
    let (status, _) = h.get("/").await;
    assert_eq!(status, 200);
    let (status, body) = h.get("/healthz").await;
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).unwrap();
    assert!(v["version"].as_str().unwrap().starts_with("hub2lake/"));
    assert!(v["lake"].as_str().unwrap().contains("lake"));
}

#[tokio::test]
async fn string_fixture_lands_as_one_gzip_object_with_records_and_a_receipt() {
    let h = Handler::start(&[]);
    let (status, body) = h.post("ingest", fixture("eventhub-batch-string.json")).await;
    assert_eq!(status, 200, "{body}");
    assert_host_response(&body);

    let objects = data_records(&h.lake);
    assert_eq!(objects.len(), 1, "{objects:?}");
    let (path, records) = &objects[0];
    assert_eq!(path, "shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz");
    assert_eq!(records.len(), 3);
    let r = &records[0];
    assert_eq!(r["event_id"], "82678790D5000000012B042C0100296E5A1004A1B2C3D4E5F60718293A4B5C6D7E8F9046645F69640064678790D5E1F2A3B4C5D6E7F80004");
    assert_eq!(r["partition_id"], "3");
    assert_eq!(r["offset"], "1048576");
    assert_eq!(r["sequence_number"], 5812);
    assert_eq!(r["enqueued_time"], "2025-01-15T10:32:53.184Z");
    assert_eq!(r["operation_type"], "insert");
    assert_eq!(r["database_name"], "shop");
    assert_eq!(r["collection_name"], "orders");
    assert_eq!(r["document_key"], json!({"_id": {"$oid": "678790d5e1f2a3b4c5d6e7f8"}}));
    assert_eq!(r["full_document"]["customer"], "Zoë Müller");
    assert_eq!(r["full_document"]["total"], json!({"$numberDecimal": "149.90"}));
    assert_eq!(r["full_document"]["note"], "path C:\\tmp \"quoted\"");
    assert_eq!(r["cluster_time"], json!({"$timestamp": {"t": 1736937173, "i": 1}}));
    assert_eq!(r["raw_event"]["ns"], json!({"db": "shop", "coll": "orders"}));
    assert_eq!(r["properties"], json!({"source": "mongo-cdc", "schemaVersion": "1"}));
    assert!(r["processed_timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(records[1]["update_description"]["removedFields"], json!(["draft"]));
    assert_eq!(records[2]["operation_type"], "delete");
    assert_eq!(records[2]["full_document"], Value::Null);
    assert_eq!(records[2]["enqueued_time"], "2025-01-15T10:32:55.500Z");

    let receipt_path = h.lake.join("_receipts/mongo-changes/rust-handler/3/5812-5814.json");
    let receipt: Value = serde_json::from_slice(&std::fs::read(receipt_path).unwrap()).unwrap();
    assert_eq!(receipt["event_count"], 3);
    assert_eq!(
        receipt["objects"][0]["path"],
        "shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz"
    );
    assert_eq!(receipt["objects"][0]["records"], 3);
}

#[tokio::test]
async fn retry_fixture_after_the_first_delivery_changes_nothing() {
    let h = Handler::start(&[]);
    let (status, _) = h.post("ingest", fixture("eventhub-batch-string.json")).await;
    assert_eq!(status, 200);
    let before = files(&h.lake);
    let (status, body) = h.post("ingest", fixture("eventhub-batch-retry.json")).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("already present"), "{body}");
    assert_eq!(
        files(&h.lake),
        before,
        "a re-delivered batch must not change or add objects"
    );
}

#[tokio::test]
async fn redelivered_batch_does_not_duplicate_files() {
    let h = Handler::start(&[]);
    let t = Utc.with_ymd_and_hms(2025, 3, 1, 8, 0, 0).unwrap();
    let events = wire_events(
        100,
        (0..50).map(|i| (t, change_event("db", "c", "insert", i))).collect(),
    );
    let req = request("1", &events);
    assert_eq!(h.post("ingest", req.clone()).await.0, 200);
    let before = files(&h.lake);
    for _ in 0..3 {
        assert_eq!(h.post("ingest", req.clone()).await.0, 200);
    }
    assert_eq!(files(&h.lake), before);
}

#[tokio::test]
async fn binary_fixture_decodes_base64_and_dead_letters_non_utf8() {
    let h = Handler::start(&[]);
    let (status, body) = h.post("ingest", fixture("eventhub-batch-binary.json")).await;
    assert_eq!(status, 200, "{body}");
    let objects = data_records(&h.lake);
    assert_eq!(objects.len(), 1);
    assert_eq!(objects[0].0, "shop/orders/2025/01/15/10/3-5812-5813.jsonl.gz");
    assert_eq!(objects[0].1[0]["partition_key"], "orders");
    let dead = std::fs::read(h.lake.join("_deadletter/2025/01/15/10/3-5814-5814.jsonl")).unwrap();
    let lines = json_lines(&dead);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["raw_body_base64"], "AP8QgH8=", "raw bytes are kept exactly");
    assert!(lines[0]["reason"].as_str().unwrap().contains("UTF-8"));
    assert_eq!(lines[0]["sequence_number"], 5814);
}

#[tokio::test]
async fn mixed_bodies_are_kept_and_truncated_json_is_dead_lettered_with_its_reason() {
    let h = Handler::start(&[]);
    let (status, body) = h.post("ingest", fixture("eventhub-batch-mixed-bodies.json")).await;
    assert_eq!(status, 200, "{body}");
    let objects = data_records(&h.lake);
    let by_path: std::collections::BTreeMap<_, _> = objects.into_iter().collect();
    let shop = &by_path["shop/orders/2025/01/15/10/3-7001-7001.jsonl.gz"];
    assert_eq!(shop.len(), 1);
    let other = &by_path["unrouted/unrouted/2025/01/15/10/3-7002-7008.jsonl.gz"];
    let raw: Vec<Value> = other.iter().map(|r| r["raw_event"].clone()).collect();
    assert_eq!(
        raw,
        vec![
            json!("plain text, not JSON: déjà vu ✓"),
            json!(""),
            json!("   "),
            Value::Null,
            json!(42),
            json!("a JSON string")
        ]
    );
    assert!(other.iter().all(|r| r["operation_type"].is_null()));
    assert!(other.iter().all(|r| r["event_id"].as_str().unwrap().contains(":3:")));
    let dead = json_lines(&std::fs::read(h.lake.join("_deadletter/2025/01/15/10/3-7005-7005.jsonl")).unwrap());
    assert_eq!(dead[0]["raw_body_text"], "{\"truncated\": ");
    assert!(dead[0]["reason"].as_str().unwrap().contains("not valid JSON"));
    let receipt: Value = serde_json::from_slice(
        &std::fs::read(h.lake.join("_receipts/mongo-changes/rust-handler/3/7001-7008.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(receipt["event_count"], 8);
    assert_eq!(receipt["dead_letter_count"], 1);
}

#[tokio::test]
async fn timer_fixtures_are_acknowledged_with_a_host_response() {
    let h = Handler::start(&[]);
    for name in ["timer.json", "timer-pastdue.json", "timer-no-monitor.json"] {
        let (status, body) = h.post("seal", fixture(name)).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_host_response(&body);
    }
}

#[tokio::test]
async fn hour_boundary_inside_one_batch_writes_two_hour_folders() {
    let h = Handler::start(&[]);
    let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 59, 59).unwrap();
    let events = wire_events(
        10,
        vec![
            (t, change_event("shop", "orders", "insert", 1)),
            (
                t + chrono::TimeDelta::milliseconds(999),
                change_event("shop", "orders", "update", 2),
            ),
            (
                t + chrono::TimeDelta::seconds(1),
                change_event("shop", "orders", "delete", 3),
            ),
        ],
    );
    assert_eq!(h.post("ingest", request("0", &events)).await.0, 200);
    let paths: Vec<_> = data_records(&h.lake).into_iter().map(|(p, r)| (p, r.len())).collect();
    assert_eq!(
        paths,
        vec![
            ("shop/orders/2025/01/15/10/0-10-11.jsonl.gz".to_string(), 2),
            ("shop/orders/2025/01/15/11/0-12-12.jsonl.gz".to_string(), 1)
        ]
    );
}

#[tokio::test]
async fn multiple_collections_in_one_batch_get_one_object_each() {
    let h = Handler::start(&[]);
    let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
    let events = wire_events(
        0,
        vec![
            (t, change_event("shop", "orders", "insert", 1)),
            (t, change_event("shop", "customers", "insert", 2)),
            (t, change_event("crm", "leads", "insert", 3)),
            (t, change_event("shop", "orders", "update", 4)),
        ],
    );
    assert_eq!(h.post("ingest", request("2", &events)).await.0, 200);
    let paths: Vec<_> = data_records(&h.lake).into_iter().map(|(p, r)| (p, r.len())).collect();
    assert_eq!(
        paths,
        vec![
            ("crm/leads/2025/01/15/10/2-2-2.jsonl.gz".to_string(), 1),
            ("shop/customers/2025/01/15/10/2-1-1.jsonl.gz".to_string(), 1),
            ("shop/orders/2025/01/15/10/2-0-3.jsonl.gz".to_string(), 2),
        ]
    );
}

#[tokio::test]
async fn gzip_objects_pass_gzip_t_and_parse_line_by_line() {
    let h = Handler::start(&[]);
    let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
    let events = wire_events(
        0,
        (0..200)
            .map(|i| (t, change_event("shop", "orders", "insert", i)))
            .collect(),
    );
    assert_eq!(h.post("ingest", request("0", &events)).await.0, 200);
    let path = h.lake.join("shop/orders/2025/01/15/10/0-0-199.jsonl.gz");
    let status = std::process::Command::new("gzip")
        .arg("-t")
        .arg(&path)
        .status()
        .expect("gzip is installed");
    assert!(status.success(), "gzip -t rejected {}", path.display());
    let lines = json_lines(&std::fs::read(&path).unwrap());
    assert_eq!(lines.len(), 200);
    let seqs: Vec<i64> = lines.iter().map(|l| l["sequence_number"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn uncompressed_output_is_plain_json_lines() {
    let h = Handler::start(&[("HUB2LAKE_COMPRESSION", "none")]);
    assert_eq!(h.post("ingest", fixture("eventhub-batch-string.json")).await.0, 200);
    let bytes = std::fs::read(h.lake.join("shop/orders/2025/01/15/10/3-5812-5814.jsonl")).unwrap();
    assert_eq!(json_lines(&bytes).len(), 3);
}

#[tokio::test]
async fn path_traversal_in_database_and_collection_names_stays_inside_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let h = Handler::start_with_lake(&lake, &[]);
    let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
    let hostile = [
        ("..", ".."),
        ("../../etc", "passwd"),
        ("/abs", "x/../../y"),
        ("%2e%2e", "%2f"),
        ("a\u{0}b", "c\\d"),
        ("_receipts", "evil"),
        ("ok", &"z".repeat(10_000)),
        ("\u{FF0E}\u{FF0E}", "\u{2215}slash"),
    ];
    let events = wire_events(
        0,
        hostile
            .iter()
            .map(|(db, c)| (t, change_event(db, c, "insert", 1)))
            .collect(),
    );
    let (status, body) = h.post("ingest", request("0", &events)).await;
    assert_eq!(status, 200, "{body}");
    let outside: Vec<_> = files(dir.path())
        .into_iter()
        .map(|(p, _)| p)
        .filter(|p| !p.starts_with("lake/"))
        .collect();
    assert!(outside.is_empty(), "written outside the lake: {outside:?}");
    let objects = data_records(&lake);
    assert_eq!(objects.iter().map(|(_, r)| r.len()).sum::<usize>(), hostile.len());
    for (path, records) in &objects {
        assert!(!path.split('/').any(|s| s == ".." || s == "."), "{path}");
        assert!(!path.starts_with("_receipts/"), "{path}");
        assert!(path.split('/').all(|s| s.len() <= 100), "{path}");
        // The original value stays in the record.
        assert!(records[0]["database_name"].is_string());
    }
    let names: Vec<String> = objects
        .iter()
        .flat_map(|(_, r)| r.iter().map(|x| x["database_name"].as_str().unwrap().to_string()))
        .collect();
    assert!(names.contains(&"../../etc".to_string()));
}

#[tokio::test]
async fn oversized_body_is_answered_413_with_the_limit() {
    let h = Handler::start(&[("HUB2LAKE_MAX_REQUEST_BYTES", "2048")]);
    let (status, body) = h.post("ingest", fixture("eventhub-batch-string.json")).await;
    assert_eq!(status, 413, "{body}");
    assert!(body.contains("HUB2LAKE_MAX_REQUEST_BYTES=2048"), "{body}");
    // A streamed body without Content-Length is refused the same way.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = vec![Ok(vec![b' '; 1500]), Ok(vec![b' '; 1500])];
    let stream = futures::stream::iter(chunks);
    let (status, _) = h.post("ingest", reqwest::Body::wrap_stream(stream)).await;
    assert_eq!(status, 413);
}

#[tokio::test]
async fn a_thousand_events_of_a_megabyte_fit_under_the_default_limit() {
    let s = hub2lake::config::Settings::local("/tmp/unused");
    assert!(
        s.max_request_bytes as u64 > 1000 * 1024 * 1024 * 2,
        "1000 x 1 MB, JSON-escaped, must fit"
    );
}

#[tokio::test]
async fn malformed_requests_get_400_naming_the_problem() {
    let h = Handler::start(&[]);
    let cases = [
        ("", "empty request body"),
        ("{not json", "not a custom-handler invocation"),
        ("{\"Metadata\":{}}", "no Data"),
        (
            "{\"Data\":{\"events\":\"[\\\"a\\\"]\"},\"Metadata\":{}}",
            "SequenceNumberArray is missing",
        ),
        ("{\"Data\":{\"events\":42},\"Metadata\":{}}", "no Event Hub batch"),
        (
            "{\"Data\":{\"events\":\"[\\\"a\\\",\\\"b\\\"]\"},\"Metadata\":{\"SequenceNumberArray\":\"[1]\"}}",
            "has 1 entries but the batch has 2",
        ),
    ];
    for (body, expected) in cases {
        let (status, text) = h.post("ingest", body.to_string()).await;
        assert_eq!(status, 400, "{body} -> {text}");
        assert!(text.contains(expected), "{body} -> {text}");
    }
    // The server keeps serving after bad input.
    assert_eq!(h.post("ingest", fixture("eventhub-batch-string.json")).await.0, 200);
}

#[tokio::test]
async fn unknown_functions_get_404_listing_what_is_served() {
    let h = Handler::start(&[]);
    let (status, body) = h.post("nosuch", "{}").await;
    assert_eq!(status, 404);
    assert!(body.contains("POST /ingest"), "{body}");
}

#[tokio::test]
async fn storage_failure_answers_500_and_shows_in_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let h = Handler::start_with_lake(&lake, &[]);
    // A file where the handler needs a directory: a real I/O failure, even as root.
    std::fs::write(lake.join("shop"), b"in the way").unwrap();
    let (status, body) = h.post("ingest", fixture("eventhub-batch-string.json")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("shop/orders"), "the message names the object: {body}");
    assert!(
        !lake.join("_receipts").exists(),
        "no receipt for a batch that is not durable"
    );
    let (_, health) = h.get("/healthz").await;
    let v: Value = serde_json::from_str(&health).unwrap();
    assert!(v["last_storage_error"].as_str().is_some(), "{health}");
    assert_eq!(v["partitions"]["mongo-changes/3"]["failed_batches"], 1, "{health}");
    // Once storage is back, the host's retry succeeds.
    std::fs::remove_file(lake.join("shop")).unwrap();
    assert_eq!(h.post("ingest", fixture("eventhub-batch-retry.json")).await.0, 200);
    assert_eq!(data_records(&lake).len(), 1);
}

#[tokio::test]
async fn concurrent_partitions_are_served_in_parallel() {
    let h = Handler::start(&[]);
    let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 0, 0).unwrap();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let events = wire_events(
            0,
            (0..100)
                .map(|i| (t, change_event("shop", "orders", "insert", i)))
                .collect(),
        );
        let req = request(&p.to_string(), &events);
        let url = h.url("/ingest");
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .body(req)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let objects = data_records(&h.lake);
    assert_eq!(objects.len(), 8);
    assert!(objects.iter().all(|(_, r)| r.len() == 100));
}

#[test]
fn bad_configuration_refuses_to_start_naming_the_setting() {
    let cases = [
        (vec![], "HUB2LAKE_LAKE_URL"),
        (vec![("HUB2LAKE_LAKE_URL", "s3://bucket")], "unsupported scheme"),
        (
            vec![("HUB2LAKE_LAKE_URL", "file:///tmp/x"), ("HUB2LAKE_GZIP_LEVEL", "11")],
            "HUB2LAKE_GZIP_LEVEL",
        ),
        (
            vec![
                ("HUB2LAKE_LAKE_URL", "file:///tmp/x"),
                ("HUB2LAKE_PATH_TEMPLATE", "{database}/x"),
            ],
            "HUB2LAKE_PATH_TEMPLATE",
        ),
        (
            vec![
                ("HUB2LAKE_LAKE_URL", "file:///tmp/x"),
                ("FUNCTIONS_CUSTOMHANDLER_PORT", "http"),
            ],
            "FUNCTIONS_CUSTOMHANDLER_PORT",
        ),
    ];
    for (env, expected) in cases {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_handler"))
            .env_clear()
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(!out.status.success(), "{env:?} should not start");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{env:?}: {stderr}");
    }
}
