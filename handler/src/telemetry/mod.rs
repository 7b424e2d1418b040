//! Logging: one JSON schema ([`schema`]) for the console and the log stream, readable
//! text on a terminal, and the log stream ([`stream`]) to an Event Hub and/or a
//! JSON-lines file ([`targets`]) configured by the `HUB2LAKE_LOG_*` settings
//! ([`settings`]).
//!
//! The handler calls [`init`] with its settings; a long-running operator command (the
//! Redis bridge) calls [`init_service`] with its own service name. Either way the
//! process keeps one [`LogStream`], which `/healthz` reads ([`log_stream_health`]) and
//! which is flushed at shutdown within its budget ([`flush`]).

pub mod schema;
pub mod settings;
pub mod stream;
pub mod targets;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::LogFormat;
use schema::Origin;
pub use settings::LogStreamSettings;
pub use stream::{CircuitState, LogStreamHealth};
use stream::{Pipeline, StreamConfig};

/// An error with its sources, `outer: inner: …`, for one log line or message. A
/// source whose text the message already holds (many errors repeat their cause in
/// their own message) is not repeated.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// Whether the Functions host started this process (it sets these variables).
pub fn under_functions_host() -> bool {
    std::env::var_os("FUNCTIONS_CUSTOMHANDLER_WORKER_ID").is_some() || std::env::var_os("WEBSITE_SITE_NAME").is_some()
}

/// The stream pipelines of this process (none when no target is set).
#[derive(Debug, Default)]
pub struct LogStream {
    pipelines: Vec<Pipeline>,
    flush_budget: Duration,
    stats_period: Option<Duration>,
}

impl LogStream {
    /// Starts a worker per configured target. Nothing here waits for the network.
    pub fn start(settings: &LogStreamSettings) -> Self {
        let config = StreamConfig::from_settings(settings);
        let mut pipelines = Vec::new();
        if let Some(target) = settings.eventhub.clone() {
            let destination = target.destination.describe();
            match stream::spawn("eventhub", destination, config.clone(), move || {
                targets::LazyEventHub::new(target)
            }) {
                Ok(p) => pipelines.push(p),
                Err(e) => eprintln!("hub2lake: cannot start the Event Hub log stream: {e}"),
            }
        }
        if let Some(path) = settings.file.clone() {
            let destination = format!("file://{}", path.display());
            match stream::spawn("file", destination, config, move || targets::JsonLinesFile::new(path)) {
                Ok(p) => pipelines.push(p),
                Err(e) => eprintln!("hub2lake: cannot start the file log stream: {e}"),
            }
        }
        Self {
            pipelines,
            flush_budget: settings.flush_budget,
            stats_period: settings.stats_period,
        }
    }

    /// What `/healthz` shows: the Event Hub target's figures when it runs, else the
    /// file target's, else `disabled`.
    pub fn health(&self) -> LogStreamHealth {
        self.pipelines
            .first()
            .map_or_else(LogStreamHealth::disabled, |p| p.queue.health())
    }

    /// Every pipeline's name, destination and figures (the periodic stats line).
    pub fn each_health(&self) -> Vec<(&'static str, &str, LogStreamHealth)> {
        self.pipelines
            .iter()
            .map(|p| (p.name, p.destination.as_str(), p.queue.health()))
            .collect()
    }

    /// Sends what is queued within `budget` (all pipelines at once), then stops them.
    pub fn flush(&self, budget: Duration) {
        std::thread::scope(|scope| {
            for p in &self.pipelines {
                scope.spawn(move || p.flush(budget));
            }
        });
    }

    fn offer(&self, record: Vec<u8>) {
        if let Some((last, rest)) = self.pipelines.split_last() {
            for p in rest {
                p.queue.offer(record.clone());
            }
            last.queue.offer(record);
        }
    }
}

static LOG_STREAM: OnceLock<Arc<LogStream>> = OnceLock::new();

/// The `log_stream` object of `/healthz`.
pub fn log_stream_health() -> LogStreamHealth {
    LOG_STREAM.get().map_or_else(LogStreamHealth::disabled, |s| s.health())
}

/// Flushes the process's log stream within its configured budget (default 2 s).
pub fn flush() {
    if let Some(s) = LOG_STREAM.get() {
        s.flush(s.flush_budget);
    }
}

/// Logs the stream's figures every `HUB2LAKE_LOG_STREAM_STATS_SECS` (never, when no
/// target runs). Runs until the task is dropped.
pub async fn log_stream_stats() {
    let Some(stream) = LOG_STREAM.get().filter(|s| !s.pipelines.is_empty()) else {
        return;
    };
    let Some(period) = stream.stats_period else { return };
    let mut ticks = tokio::time::interval(period);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        for (name, destination, h) in stream.each_health() {
            tracing::info!(
                target: "hub2lake::telemetry",
                stream = name,
                destination,
                state = h.state.as_str(),
                queued = h.queued,
                sent = h.sent,
                dropped = h.dropped,
                failed_batches = h.failed_batches,
                last_error = h.last_error.as_deref().unwrap_or(""),
                "log stream stats"
            );
        }
    }
}

/// Turns each event into a schema record for the stream's queues.
struct StreamLayer {
    origin: Origin,
    stream: Arc<LogStream>,
}

impl<S> Layer<S> for StreamLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        schema::record_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        schema::record_span_values(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        // The worker's own events (and its producer's) would feed a failing target.
        if stream::on_worker_thread() {
            return;
        }
        let mut line = schema::render(event, &ctx, &self.origin);
        line.pop();
        self.stream.offer(line);
    }
}

/// Installs the console logger only (no stream): `RUST_LOG` overrides the default
/// `info` level.
pub fn init_console(format: LogFormat) {
    init_service("handler", format, &LogStreamSettings::default());
}

/// The handler's logging: console per `HUB2LAKE_LOG_FORMAT`, stream per `HUB2LAKE_LOG_*`.
pub fn init(settings: &crate::config::Settings) {
    init_service("handler", settings.log_format, &settings.log_stream);
}

/// Installs the global subscriber for `service` (`handler`, `bridge`, …): console logs
/// (unless `HUB2LAKE_LOG_STDOUT=false` with a stream target) filtered by `RUST_LOG`
/// (default `info`), and the stream filtered by `HUB2LAKE_LOG_STREAM_LEVEL`. Starts
/// the stream's workers; never waits for a target.
pub fn init_service(service: &str, format: LogFormat, settings: &LogStreamSettings) {
    let origin = Origin::of_process(service);
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Text => false,
        LogFormat::Auto => under_functions_host(),
    };
    let console = settings.console_effective().then(|| {
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
        if json {
            schema::ConsoleJsonLayer::console(origin.clone())
                .with_filter(filter)
                .boxed()
        } else {
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_target(false)
                .with_filter(filter)
                .boxed()
        }
    });
    let stream = Arc::new(LogStream::start(settings));
    let stream_layer = (!stream.pipelines.is_empty()).then(|| {
        StreamLayer {
            origin,
            stream: stream.clone(),
        }
        .with_filter(settings.level)
    });
    let installed = tracing_subscriber::registry()
        .with(console)
        .with(stream_layer)
        .try_init()
        .is_ok();
    if installed {
        let _ = LOG_STREAM.set(stream.clone());
        if settings.eventhub_switched_off {
            tracing::warn!(
                "HUB2LAKE_LOG_EVENTHUB_ENABLED=false: logs are not streamed to the Event Hub (rollback switch)"
            );
        }
        if !settings.console && !settings.streams() {
            tracing::warn!("HUB2LAKE_LOG_STDOUT=false ignored: no stream target is set, so console logs stay on");
        }
        for p in &stream.pipelines {
            tracing::info!(stream = p.name, destination = %p.destination, stream_level = %settings.level, "log stream started");
        }
    } else {
        // Another subscriber was installed first (tests): stop our workers at once.
        stream.flush(Duration::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct E {
        text: &'static str,
        #[source]
        source: Option<Box<E>>,
    }

    fn e(text: &'static str, source: Option<E>) -> E {
        E {
            text,
            source: source.map(Box::new),
        }
    }

    #[test]
    fn chains_sources_without_repeating_what_the_message_says() {
        let inner = e("connection reset", None);
        let middle = e("request failed: connection reset", Some(inner));
        let outer = e("put shop/x failed", Some(middle));
        assert_eq!(
            error_chain(&outer),
            "put shop/x failed: request failed: connection reset"
        );
        assert_eq!(error_chain(&e("alone", None)), "alone");
    }
}
