//! What replay sends: the event rebuilt from a lake record, and where it goes.

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use hub2lake::eventhub::{OutEvent, Target};
use hub2lake::lake::encode::minify_json;

/// How recorded events choose their destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PartitionMode {
    /// Events with a partition key are sent with it; events without one go to the
    /// partition id they were read from (the destination needs at least as many
    /// partitions).
    #[default]
    Auto,
    /// Every event goes to the partition id it was read from (keys are not sent: the
    /// service takes a key or a partition, not both).
    Same,
    /// Events with a key are sent with it, events without one to any partition.
    Any,
}

impl PartitionMode {
    pub fn target(self, event: &OutEvent) -> Target {
        match (self, &event.partition_key) {
            (Self::Same, _) => Target::Partition(event.source_partition.clone()),
            (Self::Auto | Self::Any, Some(k)) => Target::Key(k.clone()),
            (Self::Auto, None) => Target::Partition(event.source_partition.clone()),
            (Self::Any, None) => Target::Any,
        }
    }
}

/// The fields of a record replay needs.
#[derive(Debug, Deserialize)]
struct ReplayRecord<'a> {
    partition_id: String,
    sequence_number: i64,
    #[serde(borrow)]
    raw_event: Option<&'a RawValue>,
    #[serde(default)]
    partition_key: Option<String>,
    #[serde(default)]
    properties: Option<Value>,
}

/// Rebuilds the event a record was made from.
pub fn out_event(line: &[u8]) -> Result<OutEvent, String> {
    let r: ReplayRecord<'_> = serde_json::from_slice(line).map_err(|e| format!("not a record: {e}"))?;
    let raw = r
        .raw_event
        .ok_or_else(|| format!("record {}/{} has no raw_event", r.partition_id, r.sequence_number))?;
    let body = match raw.get().trim_start() {
        text if text.starts_with('"') => serde_json::from_str::<String>(text)
            .map_err(|e| format!("raw_event string: {e}"))?
            .into_bytes(),
        "null" => Vec::new(),
        text => minify_json(text).into_bytes(),
    };
    let properties = match r.properties {
        Some(Value::Object(m)) => m,
        _ => Map::new(),
    };
    Ok(OutEvent {
        body,
        partition_key: r.partition_key,
        properties,
        source_partition: r.partition_id,
        source_sequence_number: r.sequence_number,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_come_back_from_raw_event() {
        let line = br#"{"partition_id":"3","sequence_number":7,"raw_event":{"b":1, "a":[ "x y" ]},"partition_key":"k","properties":{"p":1,"q":"v"}}"#;
        let e = out_event(line).unwrap();
        assert_eq!(e.body, br#"{"b":1,"a":["x y"]}"#);
        assert_eq!(e.partition_key.as_deref(), Some("k"));
        assert_eq!(e.properties["q"], "v");
        assert_eq!((e.source_partition.as_str(), e.source_sequence_number), ("3", 7));

        let line = br#"{"partition_id":"3","sequence_number":8,"raw_event":"plain \"text\"\n","partition_key":null,"properties":null}"#;
        let e = out_event(line).unwrap();
        assert_eq!(e.body, b"plain \"text\"\n");
        assert!(e.partition_key.is_none() && e.properties.is_empty());

        assert!(out_event(br#"{"partition_id":"3","sequence_number":8}"#).is_err());
        assert!(out_event(b"nope").is_err());
    }

    #[test]
    fn partition_modes_choose_targets() {
        let mut e =
            out_event(br#"{"partition_id":"3","sequence_number":1,"raw_event":1,"partition_key":"k"}"#).unwrap();
        assert_eq!(PartitionMode::Auto.target(&e), Target::Key("k".into()));
        assert_eq!(PartitionMode::Same.target(&e), Target::Partition("3".into()));
        assert_eq!(PartitionMode::Any.target(&e), Target::Key("k".into()));
        e.partition_key = None;
        assert_eq!(PartitionMode::Auto.target(&e), Target::Partition("3".into()));
        assert_eq!(PartitionMode::Any.target(&e), Target::Any);
    }
}
