//! One event → one record: body classification, MongoDB change-stream fields, route.

use std::borrow::Cow;
use std::io::Write as _;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::host::{EventBody, EventData, EventHubBatch};
use crate::lake::encode::minify_json;

/// Route values used when an event does not name its own. No leading `_`: Spark and
/// other Hadoop-style readers skip paths that start with `_` or `.`.
pub const DEFAULT_ROUTE: &str = "unrouted";
/// Route part of a change event that has none (e.g. `invalidate`, `dropDatabase`).
pub const NO_ROUTE: &str = "none";

/// The body of an event, validated.
#[derive(Debug, Clone, Copy)]
pub enum Body<'a> {
    /// Valid JSON on one line, written into the record verbatim.
    Json(&'a str),
    /// Not JSON (plain text, empty, whitespace): kept as a string.
    Text(&'a str),
}

/// Why an event goes to the dead-letter area instead of the data objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undecodable(pub String);

/// A decoded body and, for JSON objects, its change-stream fields.
#[derive(Debug)]
pub struct Decoded<'a> {
    pub body: Body<'a>,
    pub parsed: Parsed<'a>,
}

/// `text` without leading and trailing JSON whitespace. By bytes: the four are ASCII,
/// and `str::trim_matches` with a char set costs ~2 % of the encoder.
fn trim_json_ws(text: &str) -> &str {
    let is_ws = |b: &u8| matches!(b, b' ' | b'\t' | b'\n' | b'\r');
    let bytes = text.as_bytes();
    let start = bytes.iter().position(|b| !is_ws(b)).unwrap_or(bytes.len());
    let end = bytes.iter().rposition(|b| !is_ws(b)).map_or(start, |i| i + 1);
    // Both ends sit next to ASCII bytes, so they are char boundaries.
    &text[start..end]
}

/// The body as text. A JSON-looking body that spans lines is put on one line here,
/// so the record can hold it verbatim (JSON Lines allows no raw newline).
pub fn body_text(event: &EventData) -> Result<Cow<'_, str>, Undecodable> {
    let text: &str = match &event.body {
        EventBody::Text(t) => t,
        EventBody::Bytes(b) => {
            std::str::from_utf8(b).map_err(|e| Undecodable(format!("binary body is not valid UTF-8: {e}")))?
        }
        EventBody::Undecodable { reason, .. } => return Err(Undecodable(reason.clone())),
    };
    let trimmed = trim_json_ws(text);
    let looks_like_json = trimmed.starts_with('{') || trimmed.starts_with('[');
    if looks_like_json && memchr::memchr2(b'\n', b'\r', trimmed.as_bytes()).is_some() {
        Ok(Cow::Owned(minify_json(trimmed)))
    } else {
        Ok(Cow::Borrowed(text))
    }
}

/// Each event's body as text ([`body_text`]), in batch order.
pub fn body_texts(batch: &EventHubBatch) -> Vec<Result<Cow<'_, str>, Undecodable>> {
    batch.events.iter().map(body_text).collect()
}

/// Each body decoded ([`decode`]), in batch order; an event whose text could not be
/// had keeps that reason.
pub fn decode_batch<'a>(texts: &'a [Result<Cow<'a, str>, Undecodable>]) -> Vec<Result<Decoded<'a>, Undecodable>> {
    texts
        .iter()
        .map(|text| text.as_ref().map_err(Clone::clone).and_then(|t| decode(t)))
        .collect()
}

/// Validates and reads a body in one parse where possible. Text that claims to be
/// JSON (starts with `{` or `[`) but does not parse is undecodable: it is data that
/// was meant to be structured and got damaged. Other non-JSON text is kept as text.
pub fn decode(text: &str) -> Result<Decoded<'_>, Undecodable> {
    let trimmed = trim_json_ws(text);
    let json = |parsed| Decoded {
        body: Body::Json(trimmed),
        parsed,
    };
    if trimmed.starts_with('{') {
        match serde_json::from_str::<ChangeFields<'_>>(trimmed) {
            Ok(fields) => Ok(json(Parsed::from_fields(fields))),
            // Valid JSON of another shape (e.g. a duplicate key the change-event
            // reader refuses) is still kept; only broken JSON is dead-lettered.
            Err(_) => match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
                Ok(_) => Ok(json(Parsed::default())),
                Err(e) => Err(Undecodable(format!("body is not valid JSON: {e}"))),
            },
        }
    } else {
        match serde_json::from_str::<serde::de::IgnoredAny>(trimmed) {
            Ok(_) => Ok(json(Parsed::default())),
            Err(e) if trimmed.starts_with('[') => Err(Undecodable(format!("body is not valid JSON: {e}"))),
            Err(_) => Ok(Decoded {
                body: Body::Text(text),
                parsed: Parsed::default(),
            }),
        }
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
    fn from_fields(change: ChangeFields<'a>) -> Self {
        let string = |raw: Option<&'a RawValue>| -> Option<Cow<'a, str>> {
            raw.and_then(|r| serde_json::from_str::<Cow<'a, str>>(r.get()).ok())
        };
        let operation_type = string(change.operation_type);
        let ns = change
            .ns
            .and_then(|r| serde_json::from_str::<Namespace<'a>>(r.get()).ok());
        let (database, collection) = ns.map(|n| (n.db, n.coll)).unwrap_or((None, None));
        let is_change_event = operation_type.is_some();
        // Only a change event's `_id` is a resume token, unique per change. A plain
        // document's `_id` names the document, which many events may share.
        let resume_token = change.id.filter(|_| is_change_event).and_then(|r| {
            serde_json::from_str::<ResumeToken<'a>>(r.get())
                .map(|t| t.data)
                .ok()
                .or_else(|| serde_json::from_str::<Cow<'a, str>>(r.get()).ok())
        });
        Self {
            is_change_event,
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

/// What one record line holds, in the documented field order.
pub struct Record<'a> {
    pub event_id: &'a str,
    pub processed_timestamp: &'a str,
    pub partition_id: &'a str,
    pub offset: Option<&'a str>,
    pub sequence_number: i64,
    pub enqueued_time: Option<&'a str>,
    pub parsed: &'a Parsed<'a>,
    pub body: Body<'a>,
    pub partition_key: Option<&'a str>,
    pub properties: Option<&'a RawValue>,
}

impl Record<'_> {
    /// Writes the record as one JSON line (without the newline). Raw JSON parts of
    /// the event are copied byte for byte: they were validated when decoded, and
    /// not re-serialising them is most of the encoder's speed.
    pub fn write(&self, out: &mut Vec<u8>) {
        let p = self.parsed;
        out.push(b'{');
        string_field(out, "event_id", Some(self.event_id), true);
        string_field(out, "processed_timestamp", Some(self.processed_timestamp), false);
        string_field(out, "partition_id", Some(self.partition_id), false);
        string_field(out, "offset", self.offset, false);
        key(out, "sequence_number", false);
        let _ = write!(out, "{}", self.sequence_number);
        string_field(out, "enqueued_time", self.enqueued_time, false);
        string_field(out, "operation_type", p.operation_type.as_deref(), false);
        string_field(out, "database_name", p.database.as_deref(), false);
        string_field(out, "collection_name", p.collection.as_deref(), false);
        raw_field(out, "document_key", p.change.document_key.map(RawValue::get));
        raw_field(out, "full_document", p.change.full_document.map(RawValue::get));
        raw_field(
            out,
            "update_description",
            p.change.update_description.map(RawValue::get),
        );
        raw_field(out, "cluster_time", p.change.cluster_time.map(RawValue::get));
        match self.body {
            Body::Json(json) => raw_field(out, "raw_event", Some(json)),
            Body::Text(text) => string_field(out, "raw_event", Some(text), false),
        }
        string_field(out, "partition_key", self.partition_key, false);
        raw_field(out, "properties", self.properties.map(RawValue::get));
        out.push(b'}');
    }
}

fn key(out: &mut Vec<u8>, name: &str, first: bool) {
    if !first {
        out.push(b',');
    }
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn string_field(out: &mut Vec<u8>, name: &str, value: Option<&str>, first: bool) {
    key(out, name, first);
    match value {
        // Serialising a str into a Vec cannot fail.
        Some(v) => {
            let _ = serde_json::to_writer(&mut *out, v);
        }
        None => out.extend_from_slice(b"null"),
    }
}

fn raw_field(out: &mut Vec<u8>, name: &str, value: Option<&str>) {
    key(out, name, false);
    out.extend_from_slice(value.unwrap_or("null").as_bytes());
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

    fn classify(body: &str) -> &'static str {
        let e = event(EventBody::Text(body.into()));
        let text = body_text(&e).unwrap();
        match decode(&text) {
            Ok(Decoded {
                body: Body::Json(_), ..
            }) => "json",
            Ok(Decoded {
                body: Body::Text(_), ..
            }) => "text",
            Err(_) => "dead",
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
            ("{\"ns\":1,\"ns\":2}", "json"),
        ];
        for (body, want) in cases {
            assert_eq!(classify(body), want, "{body:?}");
        }
    }

    #[test]
    fn pretty_json_is_put_on_one_line() {
        let e = event(EventBody::Text("{\n \"a\": \"x y\"\n}\n".into()));
        let text = body_text(&e).unwrap();
        match decode(&text).unwrap().body {
            Body::Json(j) => assert_eq!(j, "{\"a\":\"x y\"}"),
            Body::Text(_) => panic!("should be JSON"),
        }
    }

    #[test]
    fn invalid_utf8_is_undecodable() {
        let e = event(EventBody::Bytes(vec![0, 0xff, 0x10, 0x80]));
        assert!(body_text(&e).unwrap_err().0.contains("UTF-8"));
    }

    fn parsed(json: &str) -> Parsed<'_> {
        decode(json).unwrap().parsed
    }

    #[test]
    fn change_events_yield_their_fields() {
        let json = r#"{"_id":{"_data":"8267"},"operationType":"insert","clusterTime":{"$timestamp":{"t":1736937173,"i":1}},"ns":{"db":"shop","coll":"orders"},"documentKey":{"_id":{"$oid":"6787"}},"fullDocument":{"x":1}}"#;
        let p = parsed(json);
        assert!(p.is_change_event);
        assert_eq!(p.operation_type.as_deref(), Some("insert"));
        assert_eq!(p.database.as_deref(), Some("shop"));
        assert_eq!(p.collection.as_deref(), Some("orders"));
        assert_eq!(p.resume_token.as_deref(), Some("8267"));
        assert_eq!(p.change.document_key.unwrap().get(), r#"{"_id":{"$oid":"6787"}}"#);
        assert_eq!(p.cluster_time().unwrap().timestamp(), 1736937173);
    }

    #[test]
    fn records_are_valid_json_in_the_documented_order() {
        let json = r#"{"operationType":"insert","ns":{"db":"d\"q","coll":"c"},"fullDocument":{"x":[1,{"y":null}]}}"#;
        let p = parsed(json);
        let mut out = Vec::new();
        Record {
            event_id: "id",
            processed_timestamp: "t",
            partition_id: "0",
            offset: None,
            sequence_number: -5,
            enqueued_time: Some("e"),
            parsed: &p,
            body: Body::Json(json),
            partition_key: Some("k\n"),
            properties: None,
        }
        .write(&mut out);
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["database_name"], "d\"q");
        assert_eq!(v["full_document"]["x"][1]["y"], serde_json::Value::Null);
        assert_eq!(v["sequence_number"], -5);
        assert_eq!(v["partition_key"], "k\n");
        let text = String::from_utf8(out).unwrap();
        let keys = [
            "event_id",
            "processed_timestamp",
            "partition_id",
            "offset",
            "sequence_number",
            "enqueued_time",
            "operation_type",
            "database_name",
            "collection_name",
            "document_key",
            "full_document",
            "update_description",
            "cluster_time",
            "raw_event",
            "partition_key",
            "properties",
        ];
        let positions: Vec<_> = keys.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn odd_shapes_are_not_change_events() {
        for json in [r#"{"operationType":5}"#, "[1]", r#"{"ns":"x"}"#, "7"] {
            assert!(!parsed(json).is_change_event, "{json}");
        }
    }

    proptest::proptest! {
        #[test]
        fn trimming_by_bytes_matches_trimming_by_chars(text in "[ \t\r\na-zé{}\u{2003}]{0,12}") {
            proptest::prop_assert_eq!(trim_json_ws(&text), text.trim_matches([' ', '\t', '\n', '\r']));
        }
    }

    #[test]
    fn only_change_events_have_a_resume_token() {
        assert_eq!(parsed(r#"{"_id":"user-42","v":1}"#).resume_token, None);
        assert_eq!(parsed(r#"{"_id":{"_data":"82"},"v":1}"#).resume_token, None);
        let change = parsed(r#"{"_id":"tok","operationType":"delete"}"#);
        assert_eq!(change.resume_token.as_deref(), Some("tok"));
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
