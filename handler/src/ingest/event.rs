//! One event → one record: body classification, MongoDB change-stream fields, route.

use std::borrow::Cow;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::host::{EventBody, EventData};
use crate::lake::encode::minify_json;

/// Route values used when an event does not name its own. No leading `_`: Spark and
/// other Hadoop-style readers skip paths that start with `_` or `.`.
pub const DEFAULT_ROUTE: &str = "unrouted";
/// Route part of a change event that has none (e.g. `invalidate`, `dropDatabase`).
pub const NO_ROUTE: &str = "none";

/// The body of an event, classified.
#[derive(Debug)]
pub enum Body<'a> {
    /// Valid JSON, on one line (minified only if it held newlines).
    Json(Cow<'a, str>),
    /// Not JSON (plain text, empty, whitespace): kept as a string.
    Text(&'a str),
}

/// Why an event goes to the dead-letter area instead of the data objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable(pub String);

/// Classifies a body. Text that claims to be JSON (starts with `{` or `[`) but does not
/// parse is undecodable: it is data that was meant to be structured and got damaged.
pub fn classify(event: &EventData) -> Result<Body<'_>, Undecodable> {
    let text: &str = match &event.body {
        EventBody::Text(t) => t,
        EventBody::Bytes(b) => {
            std::str::from_utf8(b).map_err(|e| Undecodable(format!("binary body is not valid UTF-8: {e}")))?
        }
        EventBody::Undecodable { reason, .. } => return Err(Undecodable(reason.clone())),
    };
    let trimmed = text.trim_matches(|c| matches!(c, ' ' | '\t' | '\n' | '\r'));
    let claims_json = trimmed.starts_with('{') || trimmed.starts_with('[');
    match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
        Ok(_) if trimmed.contains(['\n', '\r']) => Ok(Body::Json(Cow::Owned(minify_json(trimmed)))),
        Ok(_) => Ok(Body::Json(Cow::Borrowed(trimmed))),
        Err(e) if claims_json => Err(Undecodable(format!("body is not valid JSON: {e}"))),
        Err(_) => Ok(Body::Text(text)),
    }
}

/// The fields of a MongoDB change event we lift into the record; raw where possible
/// so Extended JSON (`{"$oid":…}`, `{"$date":…}`) is kept byte for byte.
#[derive(Debug, Default, Deserialize)]
pub struct ChangeFields<'a> {
    #[serde(rename = "_id", borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(rename = "operationType", borrow, default)]
    operation_type: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ns: Option<&'a RawValue>,
    #[serde(rename = "documentKey", borrow, default)]
    pub document_key: Option<&'a RawValue>,
    #[serde(rename = "fullDocument", borrow, default)]
    pub full_document: Option<&'a RawValue>,
    #[serde(rename = "updateDescription", borrow, default)]
    pub update_description: Option<&'a RawValue>,
    #[serde(rename = "clusterTime", borrow, default)]
    pub cluster_time: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct Namespace<'a> {
    #[serde(borrow, default)]
    db: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    coll: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ResumeToken<'a> {
    #[serde(rename = "_data", borrow)]
    data: Cow<'a, str>,
}

/// A JSON body read as a change event (or not).
#[derive(Debug, Default)]
pub struct Parsed<'a> {
    pub change: ChangeFields<'a>,
    pub operation_type: Option<Cow<'a, str>>,
    pub database: Option<Cow<'a, str>>,
    pub collection: Option<Cow<'a, str>>,
    pub resume_token: Option<Cow<'a, str>>,
    /// Whether the body is a MongoDB change event (has a string `operationType`).
    pub is_change_event: bool,
}

impl<'a> Parsed<'a> {
    pub fn from_json(json: &'a str) -> Self {
        if !json.starts_with('{') {
            return Self::default();
        }
        let Ok(change) = serde_json::from_str::<ChangeFields<'a>>(json) else {
            return Self::default();
        };
        let string = |raw: Option<&'a RawValue>| -> Option<Cow<'a, str>> {
            raw.and_then(|r| serde_json::from_str::<Cow<'a, str>>(r.get()).ok())
        };
        let operation_type = string(change.operation_type);
        let ns = change
            .ns
            .and_then(|r| serde_json::from_str::<Namespace<'a>>(r.get()).ok());
        let (database, collection) = ns.map(|n| (n.db, n.coll)).unwrap_or((None, None));
        let resume_token = change.id.and_then(|r| {
            serde_json::from_str::<ResumeToken<'a>>(r.get())
                .map(|t| t.data)
                .ok()
                .or_else(|| serde_json::from_str::<Cow<'a, str>>(r.get()).ok())
        });
        Self {
            is_change_event: operation_type.is_some(),
            change,
            operation_type,
            database,
            collection,
            resume_token,
        }
    }

    /// `clusterTime` (`{"$timestamp":{"t":…,"i":…}}`) as a time.
    pub fn cluster_time(&self) -> Option<DateTime<Utc>> {
        #[derive(Deserialize)]
        struct Ts {
            #[serde(rename = "$timestamp")]
            ts: Inner,
        }
        #[derive(Deserialize)]
        struct Inner {
            t: i64,
        }
        let raw = self.change.cluster_time?;
        let ts: Ts = serde_json::from_str(raw.get()).ok()?;
        Utc.timestamp_opt(ts.ts.t, 0).single()
    }
}

/// Finds a route value in a non-change JSON event by JSON pointer.
pub fn route_by_pointer(json: &str, pointer: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    match value.pointer(pointer)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Either the body's JSON or its text, as `raw_event`.
#[derive(Serialize)]
#[serde(untagged)]
pub enum RawEvent<'a> {
    Json(&'a RawValue),
    Text(&'a str),
}

/// One line of a data object. Field order is the documented record order.
#[derive(Serialize)]
pub struct Record<'a> {
    pub event_id: &'a str,
    pub processed_timestamp: &'a str,
    pub partition_id: &'a str,
    pub offset: Option<&'a str>,
    pub sequence_number: i64,
    pub enqueued_time: Option<&'a str>,
    pub operation_type: Option<&'a str>,
    pub database_name: Option<&'a str>,
    pub collection_name: Option<&'a str>,
    pub document_key: Option<&'a RawValue>,
    pub full_document: Option<&'a RawValue>,
    pub update_description: Option<&'a RawValue>,
    pub cluster_time: Option<&'a RawValue>,
    pub raw_event: RawEvent<'a>,
    pub partition_key: Option<&'a str>,
    pub properties: Option<&'a RawValue>,
}

/// One line of a dead-letter object: the reason and the exact bytes.
#[derive(Serialize, Deserialize, Debug)]
pub struct DeadLetter {
    pub reason: String,
    pub eventhub: String,
    pub consumer_group: String,
    pub partition_id: String,
    pub sequence_number: i64,
    pub offset: Option<String>,
    pub enqueued_time: Option<String>,
    pub partition_key: Option<String>,
    pub properties: Option<Box<RawValue>>,
    pub processed_timestamp: String,
    /// The body exactly as received, base64 (standard alphabet, padded).
    pub raw_body_base64: String,
    /// The body as text, when it is valid UTF-8.
    pub raw_body_text: Option<String>,
}

/// The bytes of a body as received (binary bodies that failed base64 keep their text).
pub fn raw_bytes(body: &EventBody) -> &[u8] {
    match body {
        EventBody::Text(t) => t.as_bytes(),
        EventBody::Bytes(b) => b,
        EventBody::Undecodable { raw, .. } => raw.as_bytes(),
    }
}

/// RFC 3339 UTC with milliseconds, the time format of every record field.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(body: EventBody) -> EventData {
        EventData {
            body,
            sequence_number: 1,
            offset: None,
            enqueued_time: None,
            partition_key: None,
            properties: None,
        }
    }

    #[test]
    fn bodies_are_classified() {
        let cases = [
            ("{\"a\":1}", "json"),
            ("plain text", "text"),
            ("", "text"),
            ("   ", "text"),
            ("null", "json"),
            ("42", "json"),
            ("\"a JSON string\"", "json"),
            ("{\"truncated\": ", "dead"),
            ("[1,2", "dead"),
        ];
        for (body, want) in cases {
            let e = event(EventBody::Text(body.into()));
            let got = match classify(&e) {
                Ok(Body::Json(_)) => "json",
                Ok(Body::Text(_)) => "text",
                Err(_) => "dead",
            };
            assert_eq!(got, want, "{body:?}");
        }
    }

    #[test]
    fn pretty_json_is_put_on_one_line() {
        let e = event(EventBody::Text("{\n \"a\": \"x y\"\n}\n".into()));
        match classify(&e).unwrap() {
            Body::Json(j) => assert_eq!(j, "{\"a\":\"x y\"}"),
            Body::Text(_) => panic!("should be JSON"),
        }
    }

    #[test]
    fn invalid_utf8_is_undecodable() {
        let e = event(EventBody::Bytes(vec![0, 0xff, 0x10, 0x80]));
        assert!(classify(&e).unwrap_err().0.contains("UTF-8"));
    }

    #[test]
    fn change_events_yield_their_fields() {
        let json = r#"{"_id":{"_data":"8267"},"operationType":"insert","clusterTime":{"$timestamp":{"t":1736937173,"i":1}},"ns":{"db":"shop","coll":"orders"},"documentKey":{"_id":{"$oid":"6787"}},"fullDocument":{"x":1}}"#;
        let p = Parsed::from_json(json);
        assert!(p.is_change_event);
        assert_eq!(p.operation_type.as_deref(), Some("insert"));
        assert_eq!(p.database.as_deref(), Some("shop"));
        assert_eq!(p.collection.as_deref(), Some("orders"));
        assert_eq!(p.resume_token.as_deref(), Some("8267"));
        assert_eq!(p.change.document_key.unwrap().get(), r#"{"_id":{"$oid":"6787"}}"#);
        assert_eq!(p.cluster_time().unwrap().timestamp(), 1736937173);
    }

    #[test]
    fn odd_shapes_are_not_change_events() {
        for json in [r#"{"operationType":5}"#, "[1]", r#"{"ns":"x"}"#, "7"] {
            assert!(!Parsed::from_json(json).is_change_event, "{json}");
        }
    }

    #[test]
    fn pointers_route_other_events() {
        assert_eq!(
            route_by_pointer(r#"{"source":{"db":"crm"}}"#, "/source/db").as_deref(),
            Some("crm")
        );
        assert_eq!(route_by_pointer(r#"{"type":3}"#, "/type").as_deref(), Some("3"));
        assert_eq!(route_by_pointer(r#"{"type":{}}"#, "/type"), None);
    }
}
