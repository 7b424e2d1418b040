//! HTTP transport: the routes the Functions host calls. Only transport lives here;
//! decoding is in [`crate::host`], the work in [`crate::ingest`] and [`crate::seal`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use http_body_util::BodyExt;
use serde::Serialize;
use tracing::Instrument;

use crate::config::Settings;
use crate::host::{EventHubBatch, Invocation, InvocationResponse, RequestError, TimerInfo};
use crate::ingest::{IngestError, Ingestor};

/// Shared state of the server.
#[derive(Debug)]
pub struct AppState {
    pub settings: Arc<Settings>,
    pub ingestor: Ingestor,
    pub health: Health,
}

impl AppState {
    pub fn new(settings: Arc<Settings>, ingestor: Ingestor) -> Arc<Self> {
        Arc::new(Self {
            settings,
            ingestor,
            health: Health::default(),
        })
    }
}

/// Counters shown by `/healthz`.
#[derive(Debug, Default)]
pub struct Health {
    partitions: Mutex<BTreeMap<String, PartitionHealth>>,
    last_storage_error: Mutex<Option<String>>,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PartitionHealth {
    pub batches: u64,
    pub events: u64,
    pub bytes: u64,
    pub dead_letters: u64,
    pub last_sequence_number: Option<i64>,
    pub failed_batches: u64,
    pub last_error: Option<String>,
}

impl Health {
    fn partition(&self, key: &str, update: impl FnOnce(&mut PartitionHealth)) {
        if let Ok(mut map) = self.partitions.lock() {
            update(map.entry(key.to_string()).or_default());
        }
    }

    fn storage_error(&self, message: &str) {
        if let Ok(mut last) = self.last_storage_error.lock() {
            *last = Some(format!("{} {message}", chrono::Utc::now().to_rfc3339()));
        }
    }
}

/// The router the handler serves.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(ready))
        .route("/healthz", get(healthz))
        .route("/ingest", post(ingest))
        .route("/seal", post(seal))
        .fallback(not_found)
        .with_state(state)
}

/// An error answer: the status decides whether the host retries; the JSON body says why.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<RequestError> for ApiError {
    fn from(e: RequestError) -> Self {
        Self::new(StatusCode::BAD_REQUEST, e.0)
    }
}

impl From<IngestError> for ApiError {
    fn from(e: IngestError) -> Self {
        match e {
            IngestError::BadBatch(m) => Self::new(StatusCode::BAD_REQUEST, m),
            // Every storage failure is a 500: the host's retry policy re-delivers the
            // batch instead of checkpointing past it.
            e @ (IngestError::Lake(_) | IngestError::Internal(_)) => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(serde_json::json!({ "error": self.message }))).into_response()
    }
}

async fn ready() -> &'static str {
    "hub2lake handler ready\n"
}

async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("no function at {method} {uri}; this handler serves POST /ingest, POST /seal, GET / and GET /healthz"),
    )
}

#[derive(Serialize)]
struct HealthReport {
    status: &'static str,
    version: &'static str,
    lake: String,
    last_storage_error: Option<String>,
    partitions: BTreeMap<String, PartitionHealth>,
    log_stream: crate::telemetry::LogStreamHealth,
}

async fn healthz(State(state): State<Arc<AppState>>) -> Json<HealthReport> {
    Json(HealthReport {
        status: "ok",
        version: crate::WRITER_VERSION,
        lake: state.ingestor.lake().description().to_string(),
        last_storage_error: state.health.last_storage_error.lock().ok().and_then(|l| l.clone()),
        partitions: state.health.partitions.lock().map(|m| m.clone()).unwrap_or_default(),
        log_stream: crate::telemetry::log_stream_health(),
    })
}

/// Reads the body up to the configured limit; beyond it answers 413 with the limit.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    let too_large = |got: Option<u64>| {
        let got = got.map(|g| format!(" ({g} bytes)")).unwrap_or_default();
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request body{got} exceeds HUB2LAKE_MAX_REQUEST_BYTES={limit}; lower maxEventBatchSize in host.json \
                 or raise the setting"
            ),
        )
    };
    let declared = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large(declared));
    }
    // Read into one buffer of the declared size: collecting frames and joining them
    // afterwards (axum::body::to_bytes) holds the request twice at the peak.
    let mut buf = bytes::BytesMut::with_capacity(declared.map_or(0, |n| n as usize));
    let mut body = body;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, format!("could not read the request body: {e}")))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(too_large(None));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

fn invocation_id(headers: &HeaderMap) -> String {
    headers
        .get("x-azure-functions-invocationid")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string()
}

async fn ingest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<InvocationResponse>, ApiError> {
    let started = Instant::now();
    let span = tracing::info_span!(
        "invocation",
        function = "ingest",
        invocation_id = %invocation_id(&headers),
        eventhub = tracing::field::Empty,
        partition = tracing::field::Empty,
        first_seq = tracing::field::Empty,
        last_seq = tracing::field::Empty,
        events = tracing::field::Empty,
        bytes = tracing::field::Empty,
        retry = tracing::field::Empty,
    );
    async move {
        let bytes = read_body(&headers, body, state.settings.max_request_bytes)
            .await
            .inspect_err(|e| tracing::warn!(status = %e.status, error = %e.message, "request refused"))?;
        let span = tracing::Span::current();
        span.record("bytes", bytes.len());
        let batch = decode_off_runtime(state.settings.clone(), bytes)
            .await
            .inspect_err(|e| tracing::warn!(error = %e.message, "bad request"))?;
        let health_key = format!(
            "{}/{}",
            batch.partition.eventhub,
            batch.partition.partition_id.as_deref().unwrap_or("unknown")
        );
        span.record("eventhub", batch.partition.eventhub.as_str());
        span.record("partition", batch.partition.partition_id.as_deref().unwrap_or("unknown"));
        span.record("events", batch.events.len());
        if let Some((first, last)) = batch.sequence_range() {
            span.record("first_seq", first);
            span.record("last_seq", last);
        }
        if let Some(retry) = batch.retry {
            span.record("retry", retry.retry_count);
        }
        match state.ingestor.ingest(batch).await {
            Ok(report) => {
                let elapsed = started.elapsed();
                let elapsed_ms = elapsed.as_millis() as u64;
                // The handler's own share (reading, decoding, encoding), apart from
                // waiting on storage: what to look at when invocations get slow.
                let own = elapsed.saturating_sub(report.storage_time);
                tracing::info!(
                    records = report.records,
                    dead_letters = report.dead_letters,
                    objects_created = report.objects_created,
                    objects_existing = report.objects_existing,
                    stored_bytes = report.stored_bytes,
                    duration_ms = elapsed_ms,
                    storage_us = report.storage_time.as_micros() as u64,
                    handler_us = own.as_micros() as u64,
                    "batch written"
                );
                state.health.partition(&health_key, |h| {
                    h.batches += 1;
                    h.events += report.events;
                    h.bytes += report.body_bytes;
                    h.dead_letters += report.dead_letters;
                    if report.events > 0 {
                        h.last_sequence_number = Some(report.last_sequence_number);
                    }
                });
                let mut logs = vec![format!(
                    "hub2lake wrote {} records ({} dead letters) of partition {} seq {}..{} in {} objects ({} already present) in {} ms",
                    report.records,
                    report.dead_letters,
                    report.partition_id,
                    report.first_sequence_number,
                    report.last_sequence_number,
                    report.objects_created + report.objects_existing,
                    report.objects_existing,
                    elapsed_ms
                )];
                if report.dead_letters > 0 {
                    logs.push(format!("{} events could not be decoded and went to _deadletter/", report.dead_letters));
                }
                Ok(Json(InvocationResponse::with_logs(logs)))
            }
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "batch NOT written; answering non-2xx so the host retries");
                let message = e.to_string();
                if matches!(e, IngestError::Lake(_)) {
                    state.health.storage_error(&message);
                }
                state.health.partition(&health_key, |h| {
                    h.failed_batches += 1;
                    h.last_error = Some(message.clone());
                });
                Err(e.into())
            }
        }
    }
    .instrument(span)
    .await
}

/// Requests up to this size are decoded on the async worker: spawning costs more
/// than decoding them.
const INLINE_DECODE_BYTES: usize = 64 * 1024;

/// Decoding a batch of ~1000 events is milliseconds of CPU: it runs on the blocking
/// pool, so the async workers go on reading the other partitions' requests. The
/// request's bytes are freed as soon as the batch is decoded.
async fn decode_off_runtime(settings: Arc<Settings>, bytes: bytes::Bytes) -> Result<EventHubBatch, ApiError> {
    if bytes.len() <= INLINE_DECODE_BYTES {
        return decode_batch(&settings, &bytes);
    }
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(|| decode_batch(&settings, &bytes)))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("decoding task failed: {e}")))?
}

fn decode_batch(settings: &Settings, bytes: &[u8]) -> Result<EventHubBatch, ApiError> {
    let inv = Invocation::parse(bytes)?;
    Ok(EventHubBatch::from_invocation(
        &inv,
        settings.event_encoding,
        &settings.fallback_eventhub,
        &settings.fallback_consumer_group,
    )?)
}

async fn seal(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<InvocationResponse>, ApiError> {
    let span = tracing::info_span!("invocation", function = "seal", invocation_id = %invocation_id(&headers));
    async move {
        let bytes = read_body(&headers, body, state.settings.max_request_bytes).await?;
        let inv = Invocation::parse(&bytes)?;
        let timer = TimerInfo::from_invocation(&inv)?;
        let lake = state.ingestor.lake();
        match crate::seal::run(&state.settings, lake, &timer, chrono::Utc::now()).await {
            // `seal::run` logs its own summary; the host gets the same lines.
            Ok(report) => Ok(Json(InvocationResponse::with_logs(report.log_lines()))),
            Err(e) => {
                tracing::error!(error = %e, retryable = e.is_retryable(), "seal run failed; answering 500");
                if matches!(e, crate::seal::SealError::Lake(_)) {
                    state.health.storage_error(&e.to_string());
                }
                Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("seal run failed: {e}"),
                ))
            }
        }
    }
    .instrument(span)
    .await
}

/// The port the host gives us (`FUNCTIONS_CUSTOMHANDLER_PORT`, or the legacy name).
pub fn port_from_env() -> anyhow::Result<u16> {
    let raw = std::env::var("FUNCTIONS_CUSTOMHANDLER_PORT")
        .or_else(|_| std::env::var("FUNCTIONS_HTTPWORKER_PORT"))
        .unwrap_or_else(|_| "7071".to_string());
    raw.trim().parse::<u16>().map_err(|_| {
        anyhow::anyhow!("invalid setting FUNCTIONS_CUSTOMHANDLER_PORT={raw:?}: must be a TCP port number (1-65535)")
    })
}

/// Opens the lake, binds 127.0.0.1 on the host's port and serves until SIGTERM/Ctrl-C,
/// letting in-flight invocations finish (the host stops workers that way).
pub async fn run(settings: Settings) -> anyhow::Result<()> {
    let port = port_from_env()?;
    let settings = Arc::new(settings);
    let lake = crate::lake::Lake::open(&settings)?;
    let state = AppState::new(settings.clone(), Ingestor::new(settings.clone(), lake.clone()));
    // Bind first: the host probes readiness within seconds, so nothing slow goes before.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on 127.0.0.1:{port}: {e}"))?;
    tracing::info!(
        port,
        lake = %lake.description(),
        template = settings.path_template.as_str(),
        version = crate::WRITER_VERSION,
        "hub2lake handler listening"
    );
    let probe_state = state.clone();
    tokio::spawn(async move {
        match lake.probe_writable().await {
            Ok(()) => tracing::info!(lake = %lake.description(), "lake is reachable and writable"),
            Err(e) => {
                tracing::error!(lake = %lake.description(), error = %e, "lake is NOT writable; batches will fail with 500 until this is fixed");
                probe_state.health.storage_error(&format!("start-up probe: {e}"));
            }
        }
    });
    let stats = tokio::spawn(crate::telemetry::log_stream_stats());
    let served = axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown_signal())
        .await;
    stats.abort();
    served?;
    tracing::info!("hub2lake handler stopped gracefully");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested; finishing in-flight invocations");
}
