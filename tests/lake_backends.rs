//! The same lake suite on every backend: the local filesystem and Azure Blob
//! (Azurite, started by the test on a free port). Plus what only Azure has:
//! content headers and metadata, and outages of the storage service.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use hub2lake::config::{Compression, Settings};
use hub2lake::host::{EventHubBatch, Invocation};
use hub2lake::ingest::{IngestError, Ingestor};
use hub2lake::lake::codec::ZSTD_MAGIC;
use hub2lake::lake::{Lake, ObjectAttributes};
use hub2lake_testkit::azurite::Azurite;
use object_store::ObjectStoreExt;

/// A lake under test and whatever keeps its backend alive.
struct Backend {
    lake: Lake,
    _tmp: tempfile::TempDir,
    _azurite: Option<Azurite>,
}

async fn local() -> Backend {
    let tmp = tempfile::tempdir().unwrap();
    let lake = Lake::open(&Settings::local(tmp.path().join("lake"))).unwrap();
    Backend {
        lake,
        _tmp: tmp,
        _azurite: None,
    }
}

async fn azurite() -> Backend {
    let tmp = tempfile::tempdir().unwrap();
    let az = Azurite::start().await.expect("Azurite starts (run `npm ci` first)");
    az.create_container("lake").await.unwrap();
    let store = az.object_store_builder("lake").build().unwrap();
    let lake = Lake::from_store(Arc::new(store), "raw/events", true, "azurite".into());
    Backend {
        lake,
        _tmp: tmp,
        _azurite: Some(az),
    }
}

fn ingestor(b: &Backend) -> Ingestor {
    Ingestor::new(Arc::new(Settings::local(b._tmp.path().join("unused"))), b.lake.clone())
}

fn batch(fixture: &str) -> EventHubBatch {
    let body = common::fixture(fixture);
    let inv = Invocation::parse(body.as_bytes()).unwrap();
    EventHubBatch::from_invocation(&inv, hub2lake::config::EventEncoding::Auto, "hub", "$Default").unwrap()
}

async fn snapshot(lake: &Lake) -> Vec<(String, Bytes)> {
    let mut out = Vec::new();
    for o in lake.list("").await.unwrap() {
        let bytes = lake.get(&o.path).await.unwrap();
        out.push((o.path, bytes));
    }
    out
}

async fn batch_lands_with_its_receipt(b: Backend) {
    let report = ingestor(&b).ingest(batch("eventhub-batch-string.json")).await.unwrap();
    assert_eq!(report.records, 3);
    assert_eq!(report.objects_created, 1);
    let data = b
        .lake
        .get("shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz")
        .await
        .unwrap();
    let lines = common::json_lines(&data);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["operation_type"], "update");
    let receipt: serde_json::Value = serde_json::from_slice(
        &b.lake
            .get("_receipts/mongo-changes/rust-handler/3/5812-5814.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(receipt["objects"][0]["records"], 3);
    assert_eq!(receipt["objects"][0]["bytes"], data.len());
}

async fn redelivery_changes_nothing(b: Backend) {
    let ing = ingestor(&b);
    ing.ingest(batch("eventhub-batch-mixed-bodies.json")).await.unwrap();
    let before = snapshot(&b.lake).await;
    let again = ing.ingest(batch("eventhub-batch-mixed-bodies.json")).await.unwrap();
    assert_eq!(again.objects_created, 0);
    assert_eq!(again.objects_existing, 3, "two data objects and one dead-letter object");
    assert_eq!(snapshot(&b.lake).await, before);
}

async fn foreign_object_in_the_way_is_a_conflict_not_a_success(b: Backend) {
    let attrs = ObjectAttributes {
        content_type: "application/x-ndjson",
        ..ObjectAttributes::default()
    };
    b.lake
        .put_new(
            "shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz",
            Bytes::from_static(b"{\"partition_id\":\"3\",\"sequence_number\":1}\n"),
            &attrs,
        )
        .await
        .unwrap();
    let err = ingestor(&b)
        .ingest(batch("eventhub-batch-string.json"))
        .await
        .unwrap_err();
    assert!(matches!(err, IngestError::Lake(_)), "{err}");
    assert!(!err.is_retryable(), "a conflict needs an operator: {err}");
    assert!(err.to_string().contains("3-5812-5814"), "{err}");
    assert!(b
        .lake
        .get_if_exists("_receipts/mongo-changes/rust-handler/3/5812-5814.json")
        .await
        .unwrap()
        .is_none());
}

async fn hours_are_listed_by_prefix(b: Backend) {
    let ing = ingestor(&b);
    ing.ingest(batch("eventhub-batch-string.json")).await.unwrap();
    ing.ingest(batch("eventhub-batch-mixed-bodies.json")).await.unwrap();
    let hour: Vec<_> = b
        .lake
        .list("shop/orders/2025/01/15/10")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    assert_eq!(
        hour,
        [
            "shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz",
            "shop/orders/2025/01/15/10/3-7001-7001.jsonl.gz"
        ]
    );
    let receipts = b.lake.list("_receipts").await.unwrap();
    assert_eq!(receipts.len(), 2);
}

fn ingestor_with(b: &Backend, compression: Compression) -> Ingestor {
    let mut settings = Settings::local(b._tmp.path().join("unused"));
    settings.compression = compression;
    Ingestor::new(Arc::new(settings), b.lake.clone())
}

/// A lake may hold both encodings (HUB2LAKE_COMPRESSION changed between batches):
/// each object is named, stored and read back by its own encoding, and its receipt
/// describes the stored bytes.
async fn zstd_and_gzip_objects_round_trip_side_by_side(b: Backend) {
    let zstd = ingestor_with(&b, Compression::Zstd { level: 3 });
    let report = zstd.ingest(batch("eventhub-batch-string.json")).await.unwrap();
    assert_eq!((report.records, report.objects_created), (3, 1));
    let gzip = ingestor_with(&b, Compression::Gzip { level: 6 });
    gzip.ingest(batch("eventhub-batch-mixed-bodies.json")).await.unwrap();

    let hour: Vec<_> = b
        .lake
        .list("shop/orders/2025/01/15/10")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.path)
        .collect();
    let zst_path = "shop/orders/2025/01/15/10/3-5812-5814.jsonl.zst";
    let gz_path = "shop/orders/2025/01/15/10/3-7001-7001.jsonl.gz";
    assert_eq!(hour, [zst_path, gz_path]);

    let zst = b.lake.get(zst_path).await.unwrap();
    assert!(zst.starts_with(&ZSTD_MAGIC), "a zstd frame");
    let lines = common::json_lines(&zst);
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1]["operation_type"], "update");
    let gz = b.lake.get(gz_path).await.unwrap();
    assert!(gz.starts_with(&[0x1f, 0x8b]), "a gzip member");
    assert_eq!(common::json_lines(&gz)[0]["sequence_number"], 7001);

    let receipt: serde_json::Value = serde_json::from_slice(
        &b.lake
            .get("_receipts/mongo-changes/rust-handler/3/5812-5814.json")
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(receipt["objects"][0]["path"], zst_path);
    assert_eq!(receipt["objects"][0]["bytes"], zst.len());
    assert_eq!(receipt["objects"][0]["sha256"], hub2lake::lake::digest_hex(&zst));

    // Re-delivered under zstd: the object is found, not written again.
    let again = zstd.ingest(batch("eventhub-batch-string.json")).await.unwrap();
    assert_eq!((again.objects_created, again.objects_existing), (0, 1));
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod local_fs { $( #[tokio::test] async fn $name() { super::$name(super::local().await).await } )* }
        mod azurite { $( #[tokio::test] async fn $name() { super::$name(super::azurite().await).await } )* }
    };
}

on_every_backend!(
    batch_lands_with_its_receipt,
    redelivery_changes_nothing,
    foreign_object_in_the_way_is_a_conflict_not_a_success,
    hours_are_listed_by_prefix,
    zstd_and_gzip_objects_round_trip_side_by_side,
);

#[tokio::test]
async fn azure_objects_carry_content_headers_and_lowercase_metadata() {
    let az = Azurite::start().await.unwrap();
    az.create_container("lake").await.unwrap();
    let store = Arc::new(az.object_store_builder("lake").build().unwrap());
    let lake = Lake::from_store(store.clone(), "", true, "azurite".into());
    let ing = Ingestor::new(Arc::new(Settings::local("/tmp/unused")), lake);
    ing.ingest(batch("eventhub-batch-string.json")).await.unwrap();
    let got = store
        .get(&"shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz".into())
        .await
        .unwrap();
    let attrs = got.attributes.clone();
    let get = |a: object_store::Attribute| attrs.get(&a).map(|v| v.as_ref().to_string());
    assert_eq!(
        get(object_store::Attribute::ContentType).as_deref(),
        Some("application/x-ndjson")
    );
    assert_eq!(get(object_store::Attribute::ContentEncoding).as_deref(), Some("gzip"));
    let meta = |k: &'static str| get(object_store::Attribute::Metadata(k.into()));
    assert_eq!(meta("record_count").as_deref(), Some("3"));
    assert_eq!(meta("first_sequence_number").as_deref(), Some("5812"));
    assert_eq!(meta("last_sequence_number").as_deref(), Some("5814"));
    assert_eq!(meta("partition_id").as_deref(), Some("3"));
    assert!(meta("writer_version").unwrap().starts_with("hub2lake/"));
    let bytes = got.bytes().await.unwrap();
    assert_eq!(meta("stored_bytes"), Some(bytes.len().to_string()));
    assert_eq!(meta("sha256"), Some(hub2lake::lake::digest_hex(&bytes)));
}

#[tokio::test]
async fn azure_zstd_objects_say_content_encoding_zstd() {
    let az = Azurite::start().await.unwrap();
    az.create_container("lake").await.unwrap();
    let store = Arc::new(az.object_store_builder("lake").build().unwrap());
    let lake = Lake::from_store(store.clone(), "", true, "azurite".into());
    let mut settings = Settings::local("/tmp/unused");
    settings.compression = Compression::Zstd { level: 3 };
    Ingestor::new(Arc::new(settings), lake)
        .ingest(batch("eventhub-batch-string.json"))
        .await
        .unwrap();
    let got = store
        .get(&"shop/orders/2025/01/15/10/3-5812-5814.jsonl.zst".into())
        .await
        .unwrap();
    let encoding = got
        .attributes
        .get(&object_store::Attribute::ContentEncoding)
        .map(|v| v.to_string());
    assert_eq!(encoding.as_deref(), Some("zstd"));
    let bytes = got.bytes().await.unwrap();
    assert_eq!(common::json_lines(&bytes).len(), 3);
}

/// The handler process on Azurite through object_store's emulator settings.
fn handler_on(az: &Azurite, extra: &[(&str, &str)]) -> common::Handler {
    let env = az.env_for_object_store("lake");
    let mut vars: Vec<(&str, &str)> = env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.extend_from_slice(extra);
    common::Handler::start_with_url(&env.lake_url, &vars)
}

#[tokio::test]
async fn storage_outage_answers_500_then_the_redelivered_batch_succeeds_without_duplicates() {
    let mut az = Azurite::start().await.unwrap();
    az.create_container("lake").await.unwrap();
    let h = handler_on(
        &az,
        &[
            ("HUB2LAKE_STORAGE_RETRY_SECS", "2"),
            ("HUB2LAKE_STORAGE_MAX_RETRIES", "1"),
        ],
    );
    let (status, body) = h.post("ingest", common::fixture("eventhub-batch-string.json")).await;
    assert_eq!(status, 200, "{body}");

    az.stop().await.unwrap();
    let (status, body) = h
        .post("ingest", common::fixture("eventhub-batch-mixed-bodies.json"))
        .await;
    assert_eq!(status, 500, "an outage must never be answered 2xx: {body}");
    let (_, health) = h.get("/healthz").await;
    assert!(health.contains("last_storage_error\":\""), "{health}");

    az.restart().await.unwrap();
    let (status, body) = h
        .post("ingest", common::fixture("eventhub-batch-mixed-bodies.json"))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, _) = h.post("ingest", common::fixture("eventhub-batch-retry.json")).await;
    assert_eq!(status, 200);

    let store = az.object_store_builder("lake").build().unwrap();
    let lake = Lake::from_store(Arc::new(store), "", true, "azurite".into());
    let names: Vec<_> = lake.list("").await.unwrap().into_iter().map(|o| o.path).collect();
    assert_eq!(
        names,
        [
            "_deadletter/2025/01/15/10/3-7005-7005.jsonl",
            "_receipts/mongo-changes/rust-handler/3/5812-5814.json",
            "_receipts/mongo-changes/rust-handler/3/7001-7008.json",
            "shop/orders/2025/01/15/10/3-5812-5814.jsonl.gz",
            "shop/orders/2025/01/15/10/3-7001-7001.jsonl.gz",
            "unrouted/unrouted/2025/01/15/10/3-7002-7008.jsonl.gz",
        ]
    );
}

#[tokio::test]
async fn throttling_and_server_errors_on_the_receipt_never_yield_2xx() {
    use hub2lake_testkit::fault_proxy::{FaultProxy, Rule};
    let az = Azurite::start().await.unwrap();
    az.create_container("lake").await.unwrap();
    let proxy = FaultProxy::start(az.addr(), 7).await.unwrap();
    let env = hub2lake_testkit::azurite::object_store_env(&proxy.base_url(), "lake");
    let mut vars: Vec<(&str, &str)> = env.vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    vars.extend_from_slice(&[
        ("HUB2LAKE_STORAGE_RETRY_SECS", "2"),
        ("HUB2LAKE_STORAGE_MAX_RETRIES", "2"),
    ]);
    let h = common::Handler::start_with_url(&env.lake_url, &vars);

    let rule = proxy.add_rule(Rule::status(503).method("PUT").path_contains("/_receipts/"));
    let (status, body) = h.post("ingest", common::fixture("eventhub-batch-string.json")).await;
    assert_eq!(status, 500, "{body}");
    assert!(body.contains("_receipts"), "the message names the object: {body}");
    assert!(proxy.fired(rule) >= 1);
    proxy.clear_rules();

    proxy.add_rule(Rule::throttle(1).method("PUT").first(1));
    let (status, body) = h.post("ingest", common::fixture("eventhub-batch-retry.json")).await;
    assert_eq!(status, 200, "a single 429 is retried inside the budget: {body}");

    let store = az.object_store_builder("lake").build().unwrap();
    let lake = Lake::from_store(Arc::new(store), "", true, "azurite".into());
    assert_eq!(lake.list("shop").await.unwrap().len(), 1, "no duplicate data objects");
    assert_eq!(lake.list("_receipts").await.unwrap().len(), 1);
}
