//! `server::app()` in process, one request at a time through `tower::ServiceExt::oneshot`:
//! every status the router can answer and the JSON body that says why. The same routes
//! over a real socket, from the real binary, are in handler_http.rs.

mod common;

use std::fmt;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, Method, Request, StatusCode};
use futures::stream::{self, BoxStream, StreamExt};
use http_body_util::BodyExt;
use hub2lake::config::Settings;
use hub2lake::ingest::Ingestor;
use hub2lake::lake::Lake;
use hub2lake::server::{app, AppState};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, PutResult,
};
use serde_json::Value;
use tower::ServiceExt;

/// An app over a fresh local lake (kept for the test's lifetime).
struct LocalApp {
    router: axum::Router,
    lake: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn local_app(change: impl FnOnce(&mut Settings)) -> LocalApp {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut settings = Settings::local(&lake);
    change(&mut settings);
    let settings = Arc::new(settings);
    let store = Lake::open(&settings).unwrap();
    let router = app(AppState::new(settings.clone(), Ingestor::new(settings, store)));
    LocalApp {
        router,
        lake,
        _dir: dir,
    }
}

/// An app whose every storage call fails as an outage does.
fn outage_app() -> axum::Router {
    let settings = Arc::new(Settings::local("/nonexistent/never-opened"));
    let lake = Lake::from_store(Arc::new(Outage), "", true, "a store in an outage".into());
    app(AppState::new(settings.clone(), Ingestor::new(settings, lake)))
}

async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, String) {
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn get(uri: &str) -> Request<Body> {
    Request::builder().uri(uri).body(Body::empty()).unwrap()
}

fn post(uri: &str, body: impl Into<String>) -> Request<Body> {
    let body = body.into();
    Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::CONTENT_LENGTH, body.len())
        .body(Body::from(body))
        .unwrap()
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// The error text of an error answer, which is always `{"error": "..."}`.
fn error_of(body: &str) -> String {
    let v = json(body);
    assert_eq!(v.as_object().map(|o| o.len()), Some(1), "{body}");
    v["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error text: {body}"))
        .to_string()
}

#[tokio::test]
async fn readiness_and_health_answer_200() {
    let a = local_app(|_| {});
    let (status, body) = call(&a.router, get("/")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "hub2lake handler ready\n"));
    let (status, body) = call(&a.router, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&body);
    assert_eq!(v["status"], "ok");
    assert_eq!(v["version"], hub2lake::WRITER_VERSION);
    assert_eq!(v["lake"], format!("file://{}", a.lake.display()));
    assert_eq!(v["last_storage_error"], Value::Null);
    assert_eq!(v["partitions"], serde_json::json!({}));
}

#[tokio::test]
async fn a_batch_answers_200_with_host_logs_and_counts_in_healthz() {
    let a = local_app(|_| {});
    let (status, body) = call(
        &a.router,
        post("/ingest", common::fixture("eventhub-batch-string.json")),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json(&body);
    assert!(v["Outputs"].is_object() && v.get("ReturnValue").is_some(), "{body}");
    let logs = v["Logs"].as_array().unwrap();
    assert!(
        logs[0]
            .as_str()
            .unwrap()
            .starts_with("hub2lake wrote 3 records (0 dead letters)"),
        "{body}"
    );
    assert_eq!(
        common::files(&a.lake)
            .iter()
            .filter(|f| f.0.starts_with("_receipts/"))
            .count(),
        1
    );

    let (_, health) = call(&a.router, get("/healthz")).await;
    let partitions = &json(&health)["partitions"];
    let (key, counts) = partitions.as_object().unwrap().iter().next().unwrap();
    assert_eq!(key, "mongo-changes/3", "{health}");
    assert_eq!(
        (counts["batches"].as_u64(), counts["events"].as_u64()),
        (Some(1), Some(3)),
        "{health}"
    );
    assert_eq!(counts["failed_batches"], 0);
}

#[tokio::test]
async fn a_timer_answers_200_with_the_seal_summary() {
    let a = local_app(|_| {});
    let (status, body) = call(&a.router, post("/seal", common::fixture("timer.json"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let logs = json(&body)["Logs"].as_array().unwrap().clone();
    assert!(!logs.is_empty(), "{body}");
    assert!(logs.iter().any(|l| l.as_str().unwrap().contains("seal")), "{body}");
}

#[tokio::test]
async fn requests_the_host_never_sends_answer_400_naming_the_problem() {
    let a = local_app(|_| {});
    let cases = [
        ("/ingest", String::new(), "empty request body"),
        ("/ingest", "{not json".to_string(), "not a custom-handler invocation"),
        ("/ingest", r#"{"Data":{},"Metadata":{}}"#.to_string(), "Data"),
        ("/seal", "{not json".to_string(), "not a custom-handler invocation"),
        // Large requests are decoded off the async workers: the same answers.
        (
            "/ingest",
            format!(r#"{{"Data":{{"events":"[{}"#, "x".repeat(200_000)),
            "not a custom-handler invocation",
        ),
        (
            "/ingest",
            format!(r#"{{"Data":{{"notes":"{}"}},"Metadata":{{}}}}"#, "y".repeat(200_000)),
            "Data has no Event Hub batch",
        ),
    ];
    for (uri, body, named) in cases {
        let (status, answer) = call(&a.router, post(uri, body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{uri} {body:?}: {answer}");
        let error = error_of(&answer);
        assert!(error.contains(named), "{uri} {body:?}: {error}");
    }
    assert!(
        common::files(&a.lake).iter().all(|f| !f.0.starts_with("_receipts/")),
        "nothing is written"
    );
}

#[tokio::test]
async fn a_batch_that_cannot_be_written_as_sent_answers_400() {
    // Without enqueued times, HUB2LAKE_TIME_SOURCE=enqueued cannot pick an hour.
    let mut v = json(&common::fixture("eventhub-batch-string.json"));
    v["Metadata"]
        .as_object_mut()
        .unwrap()
        .retain(|k, _| !k.contains("EnqueuedTime") && k != "SystemPropertiesArray");
    let a = local_app(|_| {});
    let (status, body) = call(&a.router, post("/ingest", v.to_string())).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error_of(&body).contains("no enqueued time"), "{body}");
}

#[tokio::test]
async fn unknown_routes_answer_404_listing_the_routes() {
    let a = local_app(|_| {});
    for (method, uri) in [(Method::GET, "/nope"), (Method::POST, "/api/ingest")] {
        let request = Request::builder()
            .method(method.clone())
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        let (status, body) = call(&a.router, request).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let error = error_of(&body);
        assert!(error.contains(&format!("no function at {method} {uri}")), "{error}");
        assert!(
            error.contains("POST /ingest, POST /seal, GET / and GET /healthz"),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_known_route_with_another_method_answers_405() {
    let a = local_app(|_| {});
    let (status, _) = call(&a.router, get("/ingest")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn bodies_over_the_limit_answer_413_with_the_limit() {
    let a = local_app(|s| s.max_request_bytes = 1024);
    let big = common::fixture("eventhub-batch-string.json") + &" ".repeat(2048);
    // Declared too large: refused before reading.
    let (status, body) = call(&a.router, post("/ingest", big.clone())).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    let error = error_of(&body);
    assert!(error.contains(&format!("({} bytes)", big.len())), "{error}");
    assert!(error.contains("HUB2LAKE_MAX_REQUEST_BYTES=1024"), "{error}");
    // Not declared (chunked): refused while reading.
    let chunks = stream::iter(
        big.into_bytes()
            .chunks(256)
            .map(|c| Ok::<_, std::io::Error>(c.to_vec()))
            .collect::<Vec<_>>(),
    );
    let streamed = Request::builder()
        .method(Method::POST)
        .uri("/seal")
        .body(Body::from_stream(chunks))
        .unwrap();
    let (status, body) = call(&a.router, streamed).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(error_of(&body).contains("HUB2LAKE_MAX_REQUEST_BYTES=1024"), "{body}");
}

#[tokio::test]
async fn a_storage_outage_answers_500_and_shows_in_healthz() {
    let router = outage_app();
    let (status, body) = call(&router, post("/ingest", common::fixture("eventhub-batch-string.json"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    let error = error_of(&body);
    assert!(
        error.contains("storage call for") && error.contains("503 Server Busy"),
        "{error}"
    );

    let (status, body) = call(&router, post("/seal", common::fixture("timer.json"))).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(error_of(&body).starts_with("seal run failed: "), "{body}");

    let (status, health) = call(&router, get("/healthz")).await;
    assert_eq!(status, StatusCode::OK);
    let v = json(&health);
    assert!(
        v["last_storage_error"].as_str().unwrap().contains("503 Server Busy"),
        "{health}"
    );
    let failed: u64 = v["partitions"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p["failed_batches"].as_u64().unwrap())
        .sum();
    assert_eq!(failed, 1, "{health}");
}

/// A store that answers every call as Azure does while it is unavailable.
#[derive(Debug)]
struct Outage;

impl fmt::Display for Outage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Outage")
    }
}

fn busy() -> object_store::Error {
    object_store::Error::Generic {
        store: "Outage",
        source: "503 Server Busy: the server is currently unable to receive requests".into(),
    }
}

#[async_trait::async_trait]
impl ObjectStore for Outage {
    async fn put_opts(&self, _: &Path, _: PutPayload, _: PutOptions) -> object_store::Result<PutResult> {
        Err(busy())
    }

    async fn put_multipart_opts(
        &self,
        _: &Path,
        _: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        Err(busy())
    }

    async fn get_opts(&self, _: &Path, _: GetOptions) -> object_store::Result<GetResult> {
        Err(busy())
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        locations.map(|_| Err(busy())).boxed()
    }

    fn list(&self, _: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        stream::once(async { Err(busy()) }).boxed()
    }

    async fn list_with_delimiter(&self, _: Option<&Path>) -> object_store::Result<ListResult> {
        Err(busy())
    }

    async fn copy_opts(&self, _: &Path, _: &Path, _: CopyOptions) -> object_store::Result<()> {
        Err(busy())
    }
}
