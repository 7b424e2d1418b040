//! The partitioner: which object each event of a batch goes to. A decoded event goes
//! to the data object of its hour and route (database, collection, and operation when
//! the path template names it), compared after sanitising, because that is the name
//! the object gets; an undecodable event goes to the dead-letter object of its hour.
//! Pure: no encoding, no storage.

use std::borrow::Cow;

use chrono::{DateTime, Utc};

use super::error::IngestError;
use super::event::{self, Body, Decoded, Parsed, Undecodable, DEFAULT_ROUTE, NO_ROUTE};
use crate::config::{Settings, TimeSource};
use crate::host::{EventData, EventHubBatch};
use crate::lake::layout::{sanitize_segment, Token};
use crate::time::hour_of;

/// Which data object an event's record goes to: the hour and the sanitised route.
/// Sorting keys sorts objects by hour, then route.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub hour: DateTime<Utc>,
    pub database: String,
    pub collection: String,
    /// Empty unless the path template names `{operation}`.
    pub operation: String,
}

/// The events of one data object, as indexes into the batch, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataGroup {
    pub key: GroupKey,
    pub events: Vec<usize>,
}

/// The undecodable events of one hour, as indexes into the batch, in batch order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadGroup {
    pub hour: DateTime<Utc>,
    pub events: Vec<usize>,
}

/// A batch split into objects: data groups sorted by key, dead-letter groups by hour.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Groups {
    pub data: Vec<DataGroup>,
    pub dead: Vec<DeadGroup>,
}

/// Splits a decoded batch (`decoded[i]` is event `i`) into groups. Fails only when an
/// event lacks the time its hour is taken from.
pub fn partition(
    settings: &Settings,
    batch: &EventHubBatch,
    decoded: &[Result<Decoded<'_>, Undecodable>],
    now: DateTime<Utc>,
) -> Result<Groups, IngestError> {
    let by_operation = settings.path_template.uses(Token::Operation);
    let mut data = DataGroups::default();
    let mut dead: Vec<DeadGroup> = Vec::new();
    for (index, (ev, decoded)) in batch.events.iter().zip(decoded).enumerate() {
        let Ok(Decoded { body, parsed }) = decoded else {
            add_dead(&mut dead, hour_of(ev.enqueued_time.unwrap_or(now)), index);
            continue;
        };
        let json = match body {
            Body::Json(j) => Some(*j),
            Body::Text(_) => None,
        };
        let (database, collection) = route(settings, parsed, json);
        let operation = match by_operation {
            true => parsed.operation_type.as_deref().unwrap_or(DEFAULT_ROUTE),
            false => "",
        };
        let raw = RawRoute {
            hour: event_hour(settings.time_source, ev, parsed, now)?,
            database: &database,
            collection: &collection,
            operation,
        };
        data.add(raw, index);
    }
    let mut data = data.groups;
    data.sort_by(|a, b| a.key.cmp(&b.key));
    dead.sort_by_key(|g| g.hour);
    Ok(Groups { data, dead })
}

fn add_dead(dead: &mut Vec<DeadGroup>, hour: DateTime<Utc>, index: usize) {
    match dead.iter_mut().find(|g| g.hour == hour) {
        Some(group) => group.events.push(index),
        None => dead.push(DeadGroup {
            hour,
            events: vec![index],
        }),
    }
}

/// The hour folder of a decoded event, by the configured time source.
fn event_hour(
    source: TimeSource,
    ev: &EventData,
    parsed: &Parsed<'_>,
    now: DateTime<Utc>,
) -> Result<DateTime<Utc>, IngestError> {
    let enqueued = || {
        ev.enqueued_time.map(hour_of).ok_or_else(|| {
            IngestError::BadBatch(format!(
                "event {} has no enqueued time (Metadata.EnqueuedTimeUtcArray), which \
                 HUB2LAKE_TIME_SOURCE=enqueued needs to pick its hour",
                ev.sequence_number
            ))
        })
    };
    match source {
        TimeSource::Enqueued => enqueued(),
        TimeSource::Processed => Ok(hour_of(now)),
        TimeSource::ClusterTime => match parsed.cluster_time() {
            Some(t) => Ok(hour_of(t)),
            None => enqueued(),
        },
    }
}

/// (database, collection) of an event, unsanitised.
fn route<'a>(settings: &Settings, parsed: &Parsed<'a>, json: Option<&str>) -> (Cow<'a, str>, Cow<'a, str>) {
    if parsed.is_change_event {
        return (
            parsed.database.clone().unwrap_or(Cow::Borrowed(NO_ROUTE)),
            parsed.collection.clone().unwrap_or(Cow::Borrowed(NO_ROUTE)),
        );
    }
    let by_pointer = |pointer: &Option<String>| -> Cow<'a, str> {
        pointer
            .as_deref()
            .zip(json)
            .and_then(|(p, j)| event::route_by_pointer(j, p))
            .map(Cow::Owned)
            .unwrap_or(Cow::Borrowed(DEFAULT_ROUTE))
    };
    (
        by_pointer(&settings.route_database_pointer),
        by_pointer(&settings.route_collection_pointer),
    )
}

/// An event's hour and route as the event has them, before sanitising.
struct RawRoute<'r> {
    hour: DateTime<Utc>,
    database: &'r str,
    collection: &'r str,
    operation: &'r str,
}

/// Data groups being collected, with a cache from raw routes to groups.
#[derive(Default)]
struct DataGroups {
    groups: Vec<DataGroup>,
    /// Most events of a batch share a few routes: finding the group by the raw route
    /// avoids sanitising and allocating per event.
    seen: Vec<(GroupKey, usize)>,
}

impl DataGroups {
    fn add(&mut self, raw: RawRoute<'_>, event: usize) {
        let known = self.seen.iter().find(|(k, _)| {
            k.hour == raw.hour
                && k.database == raw.database
                && k.collection == raw.collection
                && k.operation == raw.operation
        });
        let group = match known {
            Some((_, group)) => *group,
            None => self.group_of_new_route(raw),
        };
        self.groups[group].events.push(event);
    }

    fn group_of_new_route(&mut self, raw: RawRoute<'_>) -> usize {
        let key = GroupKey {
            hour: raw.hour,
            database: sanitize_segment(raw.database),
            collection: sanitize_segment(raw.collection),
            operation: match raw.operation {
                "" => String::new(),
                operation => sanitize_segment(operation),
            },
        };
        // Distinct raw values can sanitise alike ("a/b", "a_b"): one group.
        let group = match self.groups.iter().position(|g| g.key == key) {
            Some(group) => group,
            None => {
                self.groups.push(DataGroup {
                    key,
                    events: Vec::new(),
                });
                self.groups.len() - 1
            }
        };
        let raw_key = GroupKey {
            hour: raw.hour,
            database: raw.database.to_string(),
            collection: raw.collection.to_string(),
            operation: raw.operation.to_string(),
        };
        self.seen.push((raw_key, group));
        group
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PathTemplate;
    use crate::host::EventBody;
    use crate::ingest::event::decode_batch;
    use crate::ingest::fixtures::batch;
    use chrono::{TimeDelta, TimeZone};

    fn at(h: u32, m: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2025, 1, 15, h, m, s).unwrap()
    }

    fn change(seq: i64, enqueued: Option<DateTime<Utc>>, db: &str, coll: &str, op: &str) -> EventData {
        let body = format!(r#"{{"operationType":"{op}","ns":{{"db":"{db}","coll":"{coll}"}}}}"#);
        raw_event(seq, enqueued, &body)
    }

    fn raw_event(seq: i64, enqueued: Option<DateTime<Utc>>, body: &str) -> EventData {
        EventData {
            body: EventBody::Text(body.into()),
            sequence_number: seq,
            offset: None,
            enqueued_time: enqueued,
            partition_key: None,
            properties: None,
        }
    }

    fn groups_of(settings: &Settings, batch: &EventHubBatch) -> Result<Groups, IngestError> {
        let texts = event::body_texts(batch);
        partition(settings, batch, &decode_batch(&texts), at(12, 0, 0))
    }

    fn keys(groups: &Groups) -> Vec<(String, String, String, Vec<usize>)> {
        groups
            .data
            .iter()
            .map(|g| {
                let hour = crate::time::format_hour(g.key.hour);
                (
                    hour,
                    g.key.database.clone() + "/" + &g.key.collection,
                    g.key.operation.clone(),
                    g.events.clone(),
                )
            })
            .collect()
    }

    #[test]
    fn the_last_millisecond_of_an_hour_and_the_next_hour_are_two_objects() {
        let settings = Settings::local("/unused");
        let last = at(11, 0, 0) - TimeDelta::milliseconds(1);
        let b = batch(vec![
            change(1, Some(last), "shop", "orders", "insert"),
            change(2, Some(at(11, 0, 0)), "shop", "orders", "insert"),
            change(3, Some(at(10, 0, 0)), "shop", "orders", "insert"),
        ]);
        let g = groups_of(&settings, &b).unwrap();
        assert_eq!(
            keys(&g),
            vec![
                ("2025-01-15T10".into(), "shop/orders".into(), "".into(), vec![0, 2]),
                ("2025-01-15T11".into(), "shop/orders".into(), "".into(), vec![1]),
            ]
        );
    }

    #[test]
    fn operations_split_objects_only_when_the_template_names_them() {
        let b = batch(vec![
            change(1, Some(at(10, 1, 0)), "shop", "orders", "insert"),
            change(2, Some(at(10, 2, 0)), "shop", "orders", "update"),
            change(3, Some(at(10, 3, 0)), "shop", "orders", "insert"),
        ]);
        let plain = groups_of(&Settings::local("/unused"), &b).unwrap();
        assert_eq!(plain.data.len(), 1);
        assert_eq!(plain.data[0].events, vec![0, 1, 2]);

        let mut by_op = Settings::local("/unused");
        by_op.path_template =
            PathTemplate::parse("{database}/{collection}/{operation}/{hh}/{partition}-{first_seq}-{last_seq}").unwrap();
        let split = groups_of(&by_op, &b).unwrap();
        let ops: Vec<_> = keys(&split).into_iter().map(|k| (k.2, k.3)).collect();
        assert_eq!(ops, vec![("insert".into(), vec![0, 2]), ("update".into(), vec![1])]);
    }

    #[test]
    fn routes_that_sanitise_to_one_name_share_one_object() {
        let t = Some(at(10, 0, 0));
        let b = batch(vec![
            change(1, t, "a/b", "c", "insert"),
            change(2, t, "a_b", "c", "insert"),
            change(3, t, r"a\\b", "c", "insert"), // JSON for a\b
            change(4, t, "_hidden", "c", "insert"),
        ]);
        let g = groups_of(&Settings::local("/unused"), &b).unwrap();
        let routes: Vec<_> = keys(&g).into_iter().map(|k| (k.1, k.3)).collect();
        assert_eq!(
            routes,
            vec![("a_b/c".into(), vec![0, 1, 2]), ("x_hidden/c".into(), vec![3])]
        );
    }

    #[test]
    fn undecodable_events_go_to_their_hours_dead_letters_and_others_to_defaults() {
        let b = batch(vec![
            raw_event(1, Some(at(10, 5, 0)), "{\"broken\": "),
            raw_event(2, Some(at(10, 6, 0)), "plain text"),
            raw_event(3, None, "[1,"),
        ]);
        let g = groups_of(&Settings::local("/unused"), &b).unwrap();
        assert_eq!(
            keys(&g),
            vec![("2025-01-15T10".into(), "unrouted/unrouted".into(), "".into(), vec![1])]
        );
        // Without an enqueued time a dead letter lands in the hour it was processed.
        let dead: Vec<_> = g.dead.iter().map(|d| (d.hour, d.events.clone())).collect();
        assert_eq!(dead, vec![(at(10, 0, 0), vec![0]), (at(12, 0, 0), vec![2])]);
    }

    #[test]
    fn an_event_without_the_time_its_hour_comes_from_refuses_the_batch() {
        let b = batch(vec![change(7, None, "shop", "orders", "insert")]);
        match groups_of(&Settings::local("/unused"), &b) {
            Err(IngestError::BadBatch(m)) => assert!(m.contains("event 7 has no enqueued time"), "{m}"),
            other => panic!("{other:?}"),
        }
        let mut processed = Settings::local("/unused");
        processed.time_source = TimeSource::Processed;
        let g = groups_of(&processed, &b).unwrap();
        assert_eq!(g.data[0].key.hour, at(12, 0, 0));
    }
}
