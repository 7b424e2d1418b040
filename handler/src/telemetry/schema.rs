//! The one JSON log schema, for the console and the stream alike.
//!
//! One event is one JSON object on one line:
//! `timestamp` (RFC 3339 UTC), `level`, `message`, `target`, `service`, `instance`,
//! `version`, then the fields of the enclosing spans (outermost first, so an inner
//! span's value wins: `invocation_id`, `function`, `eventhub`, `partition`,
//! `first_seq`, `last_seq`, `route`, `hour` where known) and the event's own fields.
//! A field named like one of the fixed keys is written as `field_<name>`, so the fixed
//! keys always mean the same thing (the ADX mapping in infra/adx/ reads them).

use std::fmt;
use std::io::Write;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Record};
use tracing::{Event, Id, Subscriber};
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Keys every record has, in this order.
pub const FIXED_KEYS: [&str; 7] = [
    "timestamp",
    "level",
    "message",
    "target",
    "service",
    "instance",
    "version",
];

/// Longest string value kept (bytes); longer ones are cut at a character boundary and
/// marked, so one huge message cannot make a batch too large or the queue's memory grow.
pub const MAX_VALUE_BYTES: usize = 8 * 1024;

/// Who is logging: the same on every record of the process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `handler`, `bridge`, …
    pub service: String,
    /// `WEBSITE_INSTANCE_ID` in Azure, else the host name.
    pub instance: String,
    pub version: String,
}

impl Origin {
    /// The origin of this process for `service`.
    pub fn of_process(service: &str) -> Self {
        Self::new(service, &|k| std::env::var(k).ok())
    }

    pub fn new(service: &str, env: &dyn Fn(&str) -> Option<String>) -> Self {
        let instance = env("WEBSITE_INSTANCE_ID")
            .filter(|v| !v.trim().is_empty())
            .or_else(host_name)
            .unwrap_or_else(|| "unknown".to_string());
        Self {
            service: service.to_string(),
            instance,
            version: env!("CARGO_PKG_VERSION").to_string(),
        }
    }
}

fn host_name() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that many
    // bytes and we read only up to the first NUL inside it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = String::from_utf8_lossy(&buf[..end]).trim().to_string();
    (!name.is_empty()).then_some(name)
}

/// The fields a span was created or recorded with, kept in its extensions.
#[derive(Debug, Default)]
pub struct SpanFields(pub Map<String, Value>);

/// Collects tracing fields as JSON values.
#[derive(Default)]
pub struct JsonVisitor {
    pub message: Option<String>,
    pub fields: Map<String, Value>,
}

impl JsonVisitor {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_string(), value);
        }
    }
}

impl Visit for JsonVisitor {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.put(
            field,
            serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number),
        );
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(bounded(value)));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(bounded(&super::error_chain(value))));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(bounded(&format!("{value:?}"))));
    }
}

/// `text` cut to [`MAX_VALUE_BYTES`] at a character boundary.
pub fn bounded(text: &str) -> String {
    if text.len() <= MAX_VALUE_BYTES {
        return text.to_string();
    }
    let mut end = MAX_VALUE_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…[{} bytes cut]", &text[..end], text.len() - end)
}

/// Stores each span's fields in its extensions (idempotent, so several layers of this
/// module can do it for the same span).
pub fn record_new_span<S>(attrs: &Attributes<'_>, id: &Id, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let mut extensions = span.extensions_mut();
    if extensions.get_mut::<SpanFields>().is_some() {
        return;
    }
    let mut visitor = JsonVisitor::default();
    attrs.record(&mut visitor);
    extensions.insert(SpanFields(visitor.fields));
}

/// Adds fields recorded later (`span.record(...)`) to the span's stored fields.
pub fn record_span_values<S>(id: &Id, values: &Record<'_>, ctx: &Context<'_, S>)
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(span) = ctx.span(id) else { return };
    let mut extensions = span.extensions_mut();
    let mut visitor = JsonVisitor::default();
    values.record(&mut visitor);
    match extensions.get_mut::<SpanFields>() {
        Some(stored) => stored.0.extend(visitor.fields),
        None => extensions.insert(SpanFields(visitor.fields)),
    }
}

/// One event as one JSON line (with the trailing newline).
pub fn render<S>(event: &Event<'_>, ctx: &Context<'_, S>, origin: &Origin) -> Vec<u8>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let mut merged = Map::new();
    if let Some(scope) = ctx.event_scope(event) {
        for span in scope.from_root() {
            if let Some(fields) = span.extensions().get::<SpanFields>() {
                merged.extend(fields.0.iter().map(|(k, v)| (k.clone(), v.clone())));
            }
        }
    }
    let mut visitor = JsonVisitor::default();
    event.record(&mut visitor);
    merged.extend(visitor.fields);
    let meta = event.metadata();
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    render_record(
        &timestamp,
        meta.level().as_str(),
        visitor.message.as_deref().unwrap_or(""),
        meta.target(),
        origin,
        merged,
    )
}

/// The record of already collected parts (the fixed keys first, then `fields`).
pub fn render_record(
    timestamp: &str,
    level: &str,
    message: &str,
    target: &str,
    origin: &Origin,
    fields: Map<String, Value>,
) -> Vec<u8> {
    use serde::ser::SerializeMap;
    let mut out = Vec::with_capacity(256 + 32 * fields.len());
    let mut serializer = serde_json::Serializer::new(&mut out);
    // Writing into a Vec cannot fail, and every key is a string: no error to handle.
    let written = (|| -> Result<(), serde_json::Error> {
        let mut map = serde::Serializer::serialize_map(&mut serializer, None)?;
        map.serialize_entry("timestamp", timestamp)?;
        map.serialize_entry("level", level)?;
        map.serialize_entry("message", &bounded(message))?;
        map.serialize_entry("target", target)?;
        map.serialize_entry("service", &origin.service)?;
        map.serialize_entry("instance", &origin.instance)?;
        map.serialize_entry("version", &origin.version)?;
        for (key, value) in &fields {
            if FIXED_KEYS.contains(&key.as_str()) {
                map.serialize_entry(&format!("field_{key}"), value)?;
            } else {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    })();
    debug_assert!(written.is_ok());
    out.push(b'\n');
    out
}

/// Renders every event as one line of the schema and hands it to `write`: the console
/// layer writes it to stderr, tests collect it.
pub struct JsonLinesLayer<W> {
    origin: Origin,
    write: W,
}

/// Console logs in the schema (JSON on stderr, which the Functions host collects).
pub type ConsoleJsonLayer = JsonLinesLayer<fn(Vec<u8>)>;

impl<W: Fn(Vec<u8>) + Send + Sync + 'static> JsonLinesLayer<W> {
    pub fn new(origin: Origin, write: W) -> Self {
        Self { origin, write }
    }
}

impl ConsoleJsonLayer {
    /// The console layer.
    pub fn console(origin: Origin) -> Self {
        JsonLinesLayer::new(origin, write_stderr)
    }
}

fn write_stderr(line: Vec<u8>) {
    // One write of the whole line, so concurrent lines never interleave.
    let _ = std::io::stderr().lock().write_all(&line);
}

impl<S, W> Layer<S> for JsonLinesLayer<W>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    W: Fn(Vec<u8>) + Send + Sync + 'static,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        record_new_span(attrs, id, &ctx);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        record_span_values(id, values, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        (self.write)(render(event, &ctx, &self.origin));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt;

    fn origin() -> Origin {
        Origin::new("handler", &|k| {
            (k == "WEBSITE_INSTANCE_ID").then(|| "inst-7".to_string())
        })
    }

    fn capture(f: impl FnOnce()) -> Vec<Value> {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let collected = lines.clone();
        let subscriber = tracing_subscriber::registry().with(JsonLinesLayer::new(origin(), move |line: Vec<u8>| {
            assert!(line.ends_with(b"\n") && !line[..line.len() - 1].contains(&b'\n'));
            collected
                .lock()
                .unwrap()
                .push(serde_json::from_slice::<Value>(&line).unwrap());
        }));
        tracing::subscriber::with_default(subscriber, f);
        let out = lines.lock().unwrap().clone();
        out
    }

    #[test]
    fn an_event_in_spans_carries_the_fixed_keys_and_every_span_field() {
        let lines = capture(|| {
            let outer = tracing::info_span!(
                "invocation",
                function = "ingest",
                invocation_id = "abc",
                partition = tracing::field::Empty,
                first_seq = tracing::field::Empty,
                last_seq = tracing::field::Empty,
            );
            let _o = outer.enter();
            outer.record("partition", "3");
            outer.record("first_seq", 10);
            outer.record("last_seq", 19);
            let inner = tracing::info_span!("route", route = "shop/orders", hour = "2025-01-15T10");
            let _i = inner.enter();
            tracing::warn!(records = 10, message_bytes = 5u64, "batch written");
        });
        assert_eq!(lines.len(), 1);
        let v = &lines[0];
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        for key in FIXED_KEYS {
            assert!(keys.contains(&key), "{key} missing: {v}");
        }
        assert_eq!(v["message"], "batch written");
        assert_eq!(v["level"], "WARN");
        assert_eq!(v["target"], module_path!());
        assert_eq!(v["service"], "handler");
        assert_eq!(v["instance"], "inst-7");
        assert_eq!(v["version"], env!("CARGO_PKG_VERSION"));
        assert_eq!(v["function"], "ingest");
        assert_eq!(v["invocation_id"], "abc");
        assert_eq!(v["partition"], "3");
        assert_eq!(v["first_seq"], 10);
        assert_eq!(v["last_seq"], 19);
        assert_eq!(v["route"], "shop/orders");
        assert_eq!(v["hour"], "2025-01-15T10");
        assert_eq!(v["records"], 10);
        assert!(v.get("fields").is_none(), "nothing is nested: {v}");
        let ts = v["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z'), "{ts}");
        chrono::DateTime::parse_from_rfc3339(ts).unwrap();
    }

    #[test]
    fn fields_named_like_fixed_keys_do_not_overwrite_them() {
        let lines = capture(|| {
            let span = tracing::info_span!("s", service = "spoof");
            let _e = span.enter();
            tracing::info!(level = "x", target_name = "t", "hello");
        });
        let v = &lines[0];
        assert_eq!(v["service"], "handler");
        assert_eq!(v["field_service"], "spoof");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["field_level"], "x");
        assert_eq!(v["message"], "hello");
    }

    #[test]
    fn errors_are_chained_and_huge_values_are_cut() {
        let big = "é".repeat(MAX_VALUE_BYTES);
        let lines = capture(|| {
            let e = std::io::Error::other("disk on fire");
            tracing::error!(
                error = &e as &(dyn std::error::Error + 'static),
                big = big.as_str(),
                "{}",
                big
            );
        });
        let v = &lines[0];
        assert_eq!(v["error"], "disk on fire");
        let cut = v["big"].as_str().unwrap();
        assert!(
            cut.len() < MAX_VALUE_BYTES + 64 && cut.contains("bytes cut"),
            "{}",
            cut.len()
        );
        assert!(v["message"].as_str().unwrap().len() < MAX_VALUE_BYTES + 64);
    }

    #[test]
    fn an_event_outside_spans_has_only_its_own_fields() {
        let lines = capture(|| tracing::info!(port = 7071, "listening"));
        let v = lines[0].as_object().unwrap();
        assert_eq!(v.len(), FIXED_KEYS.len() + 1, "{v:?}");
        assert_eq!(v["port"], 7071);
    }

    #[test]
    fn the_instance_falls_back_to_the_host_name() {
        let o = Origin::new("bridge", &|_| None);
        assert_eq!(o.service, "bridge");
        assert!(!o.instance.is_empty() && o.instance != "unknown", "{o:?}");
    }
}
