//! Stream entries as Redis returns them, and what each becomes: an event for the hub, or
//! a dead letter with the reason.
//!
//! Replies are parsed from [`redis::Value`] directly (not through a map type) so an
//! entry's fields keep their order and their bytes, as the dead-letter copy needs.

use redis::Value;
use serde_json::{Map, Value as Json};

use hub2lake::eventhub::OutEvent;

/// An entry's fields, in order, as bytes.
pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

/// One entry of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: String,
    /// The fields in their order; `None` when the entry was deleted (XDEL, XTRIM) while
    /// pending: there is nothing to deliver, only to acknowledge.
    pub fields: Option<Fields>,
}

/// A reply Redis should not have sent: a bug here or a server that is not Redis.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply to {command}: {detail}")]
pub struct ReplyError {
    pub command: &'static str,
    pub detail: String,
}

fn unexpected(command: &'static str, detail: impl Into<String>) -> ReplyError {
    ReplyError {
        command,
        detail: detail.into(),
    }
}

/// The entries of an XREADGROUP reply for one stream (nil when the block timed out).
pub fn parse_read_reply(reply: Value) -> Result<Vec<StreamEntry>, ReplyError> {
    const CMD: &str = "XREADGROUP";
    let streams: Vec<(Value, Value)> = match reply {
        Value::Nil => return Ok(Vec::new()),
        Value::Map(pairs) => pairs,
        Value::Array(items) => items
            .into_iter()
            .map(|item| match item {
                Value::Array(pair) if pair.len() == 2 => {
                    let mut pair = pair.into_iter();
                    Ok((pair.next().unwrap_or_default(), pair.next().unwrap_or_default()))
                }
                other => Err(unexpected(CMD, format!("stream item {other:?}"))),
            })
            .collect::<Result<_, _>>()?,
        other => return Err(unexpected(CMD, format!("{other:?}"))),
    };
    let mut entries = Vec::new();
    for (_, list) in streams {
        entries.extend(parse_entries(CMD, list)?);
    }
    Ok(entries)
}

/// What one XAUTOCLAIM call returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claimed {
    /// Where the next call starts; `0-0` when the scan of the pending list is complete.
    pub next: String,
    pub entries: Vec<StreamEntry>,
    /// Pending entries that no longer exist in the stream (Redis 7 drops them itself).
    pub deleted: Vec<String>,
}

/// An XAUTOCLAIM reply: `[next-start, [entries], [deleted ids]]` (two items before Redis 7).
pub fn parse_autoclaim_reply(reply: Value) -> Result<Claimed, ReplyError> {
    const CMD: &str = "XAUTOCLAIM";
    let Value::Array(items) = reply else {
        return Err(unexpected(CMD, format!("{reply:?}")));
    };
    let mut items = items.into_iter();
    let next = items
        .next()
        .and_then(text)
        .ok_or_else(|| unexpected(CMD, "no next start id"))?;
    let entries = parse_entries(CMD, items.next().unwrap_or(Value::Array(Vec::new())))?;
    let deleted = match items.next() {
        Some(Value::Array(ids)) => ids.into_iter().filter_map(text).collect(),
        _ => Vec::new(),
    };
    Ok(Claimed { next, entries, deleted })
}

fn parse_entries(command: &'static str, list: Value) -> Result<Vec<StreamEntry>, ReplyError> {
    let items = match list {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        other => return Err(unexpected(command, format!("entry list {other:?}"))),
    };
    items.into_iter().map(|item| parse_entry(command, item)).collect()
}

fn parse_entry(command: &'static str, item: Value) -> Result<StreamEntry, ReplyError> {
    let Value::Array(parts) = item else {
        return Err(unexpected(command, format!("entry {item:?}")));
    };
    let mut parts = parts.into_iter();
    let id = parts
        .next()
        .and_then(text)
        .ok_or_else(|| unexpected(command, "entry without an id"))?;
    let fields = match parts.next() {
        None | Some(Value::Nil) => None,
        Some(Value::Array(flat)) => Some(pair_up(command, &id, flat)?),
        Some(Value::Map(pairs)) => Some(
            pairs
                .into_iter()
                .map(|(k, v)| {
                    Ok((
                        bytes(k).ok_or_else(|| bad_field(command, &id))?,
                        bytes(v).unwrap_or_default(),
                    ))
                })
                .collect::<Result<_, ReplyError>>()?,
        ),
        Some(other) => return Err(unexpected(command, format!("fields of {id}: {other:?}"))),
    };
    Ok(StreamEntry { id, fields })
}

fn bad_field(command: &'static str, id: &str) -> ReplyError {
    unexpected(command, format!("a field name of {id} is not a string"))
}

fn pair_up(command: &'static str, id: &str, flat: Vec<Value>) -> Result<Fields, ReplyError> {
    if !flat.len().is_multiple_of(2) {
        return Err(unexpected(command, format!("{id} has an odd number of field items")));
    }
    let mut fields = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(k), Some(v)) = (flat.next(), flat.next()) {
        let name = bytes(k).ok_or_else(|| bad_field(command, id))?;
        fields.push((name, bytes(v).unwrap_or_default()));
    }
    Ok(fields)
}

fn bytes(v: Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.into_bytes()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::VerbatimString { text, .. } => Some(text.into_bytes()),
        _ => None,
    }
}

fn text(v: Value) -> Option<String> {
    bytes(v).and_then(|b| String::from_utf8(b).ok())
}

/// How entries become events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventShape {
    pub stream: String,
    /// The field whose value is the body; `None`: the fields as a JSON object.
    pub body_field: Option<String>,
    /// The field whose value is the partition key.
    pub partition_key_field: Option<String>,
}

impl EventShape {
    /// The event of `fields` (entry `id`), or why it cannot be one (a dead letter's reason).
    /// `number` identifies the event in this run (its `source_sequence_number`).
    pub fn event(&self, id: &str, fields: &[(Vec<u8>, Vec<u8>)], number: i64) -> Result<OutEvent, String> {
        let body = match &self.body_field {
            Some(name) => field(fields, name)
                .ok_or_else(|| format!("the entry has no field {name:?} (--body-field)"))?
                .to_vec(),
            None => fields_as_json(fields)?,
        };
        let partition_key = match &self.partition_key_field {
            Some(name) => match field(fields, name) {
                None => None,
                Some(value) => Some(
                    String::from_utf8(value.to_vec())
                        .map_err(|_| format!("the value of {name:?} (--partition-key-field) is not UTF-8 text"))?,
                ),
            },
            None => None,
        };
        let mut properties = Map::new();
        properties.insert("redis_stream".into(), Json::String(self.stream.clone()));
        properties.insert("redis_id".into(), Json::String(id.to_string()));
        Ok(OutEvent {
            body,
            partition_key,
            properties,
            source_partition: self.stream.clone(),
            source_sequence_number: number,
        })
    }
}

/// The value of the first field named `name`.
fn field<'a>(fields: &'a [(Vec<u8>, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(k, _)| k.as_slice() == name.as_bytes())
        .map(|(_, v)| v.as_slice())
}

/// The fields as one JSON object of strings. Names and values must be UTF-8 and names
/// unique, or the object would not say what the entry holds.
fn fields_as_json(fields: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>, String> {
    let mut object = Map::new();
    for (k, v) in fields {
        let name = std::str::from_utf8(k).map_err(|_| "a field name is not UTF-8 text".to_string())?;
        let value = std::str::from_utf8(v)
            .map_err(|_| format!("the value of {name:?} is not UTF-8 text (use --body-field for binary bodies)"))?;
        if object
            .insert(name.to_string(), Json::String(value.to_string()))
            .is_some()
        {
            return Err(format!("the field {name:?} appears more than once"));
        }
    }
    serde_json::to_vec(&Json::Object(object)).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    fn entry(id: &str, fields: &[(&str, &str)]) -> Value {
        let flat = fields.iter().flat_map(|(k, v)| [bulk(k), bulk(v)]).collect();
        Value::Array(vec![bulk(id), Value::Array(flat)])
    }

    fn owned(fields: &[(&str, &str)]) -> Vec<(Vec<u8>, Vec<u8>)> {
        fields
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn resp2_and_resp3_read_replies_parse_alike() {
        let list = Value::Array(vec![
            entry("1-0", &[("data", "{}"), ("key", "k")]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let resp2 = Value::Array(vec![Value::Array(vec![bulk("s"), list.clone()])]);
        let resp3 = Value::Map(vec![(bulk("s"), list)]);
        let expected = vec![
            StreamEntry {
                id: "1-0".into(),
                fields: Some(owned(&[("data", "{}"), ("key", "k")])),
            },
            StreamEntry {
                id: "2-0".into(),
                fields: None,
            },
        ];
        assert_eq!(parse_read_reply(resp2).unwrap(), expected);
        assert_eq!(parse_read_reply(resp3).unwrap(), expected);
        assert_eq!(parse_read_reply(Value::Nil).unwrap(), vec![]);
        assert!(parse_read_reply(Value::Int(3)).is_err());
    }

    #[test]
    fn autoclaim_replies_of_redis_6_and_7_parse() {
        let r7 = Value::Array(vec![
            bulk("0-0"),
            Value::Array(vec![entry("5-1", &[("a", "b")])]),
            Value::Array(vec![bulk("4-0")]),
        ]);
        let claimed = parse_autoclaim_reply(r7).unwrap();
        assert_eq!(claimed.next, "0-0");
        assert_eq!(claimed.entries.len(), 1);
        assert_eq!(claimed.deleted, vec!["4-0".to_string()]);
        let r6 = Value::Array(vec![bulk("9-0"), Value::Array(vec![])]);
        let claimed = parse_autoclaim_reply(r6).unwrap();
        assert_eq!((claimed.next.as_str(), claimed.entries.len()), ("9-0", 0));
    }

    #[test]
    fn an_odd_field_list_is_refused() {
        let bad = Value::Array(vec![Value::Array(vec![
            bulk("s"),
            Value::Array(vec![Value::Array(vec![bulk("1-0"), Value::Array(vec![bulk("a")])])]),
        ])]);
        assert!(parse_read_reply(bad).is_err());
    }

    fn shape(body: Option<&str>, key: Option<&str>) -> EventShape {
        EventShape {
            stream: "changes".into(),
            body_field: body.map(str::to_string),
            partition_key_field: key.map(str::to_string),
        }
    }

    #[test]
    fn the_body_field_is_the_body_verbatim_and_the_key_field_the_key() {
        let e = shape(Some("data"), Some("key"))
            .event("7-1", &owned(&[("key", "doc-1"), ("data", "{\"a\": 1}")]), 3)
            .unwrap();
        assert_eq!(e.body, b"{\"a\": 1}");
        assert_eq!(e.partition_key.as_deref(), Some("doc-1"));
        assert_eq!(e.properties["redis_stream"], "changes");
        assert_eq!(e.properties["redis_id"], "7-1");
        assert_eq!((e.source_partition.as_str(), e.source_sequence_number), ("changes", 3));
        let empty = shape(Some("data"), Some("key"))
            .event("7-2", &owned(&[("data", "")]), 4)
            .unwrap();
        assert!(empty.body.is_empty());
        assert_eq!(empty.partition_key, None);
    }

    #[test]
    fn without_a_body_field_the_fields_are_a_json_object() {
        let e = shape(None, None)
            .event("1-0", &owned(&[("b", "2"), ("a", "x\"y")]), 0)
            .unwrap();
        let parsed: Json = serde_json::from_slice(&e.body).unwrap();
        assert_eq!(parsed, serde_json::json!({"a": "x\"y", "b": "2"}));
    }

    #[test]
    fn entries_that_cannot_be_events_say_why() {
        let missing = shape(Some("data"), None).event("1-0", &owned(&[("other", "x")]), 0);
        assert!(missing.unwrap_err().contains("\"data\""));
        let twice = shape(None, None).event("1-0", &owned(&[("a", "1"), ("a", "2")]), 0);
        assert!(twice.unwrap_err().contains("more than once"));
        let binary = vec![(b"a".to_vec(), vec![0xff, 0xfe])];
        assert!(shape(None, None)
            .event("1-0", &binary, 0)
            .unwrap_err()
            .contains("UTF-8"));
        let key = vec![(b"data".to_vec(), b"x".to_vec()), (b"k".to_vec(), vec![0xff])];
        assert!(shape(Some("data"), Some("k"))
            .event("1-0", &key, 0)
            .unwrap_err()
            .contains("UTF-8"));
        // A binary body is fine with --body-field.
        let body = vec![(b"data".to_vec(), vec![0xff])];
        assert_eq!(
            shape(Some("data"), None).event("1-0", &body, 0).unwrap().body,
            vec![0xff]
        );
    }
}
