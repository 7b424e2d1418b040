//! Event Hub trigger (`cardinality: many`) requests.

use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::flexible::Flexible;
use super::invocation::{unwrap_json, Invocation, RawJson, RequestError};
use crate::config::EventEncoding;

/// Which partition of which Event Hub a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionInfo {
    pub namespace: Option<String>,
    pub eventhub: String,
    pub consumer_group: String,
    /// `None` when the host sent no partition context (very old extensions); object
    /// names then carry a digest of the batch to stay unique.
    pub partition_id: Option<String>,
}

/// The host's retry bookkeeping, present on every attempt when a retry policy exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RetryInfo {
    #[serde(rename = "RetryCount", default)]
    pub retry_count: i64,
    #[serde(rename = "MaxRetryCount", default)]
    pub max_retry_count: i64,
}

/// An event body as it arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventBody {
    /// `dataType: string`: the host already decoded the bytes as UTF-8.
    Text(String),
    /// `dataType: binary`: the decoded bytes.
    Bytes(Vec<u8>),
    /// A binary body whose base64 did not decode: kept as sent, for the dead-letter area.
    Undecodable { raw: String, reason: String },
}

/// One event of a batch with its system properties.
#[derive(Debug, Clone)]
pub struct EventData {
    pub body: EventBody,
    pub sequence_number: i64,
    pub offset: Option<String>,
    pub enqueued_time: Option<DateTime<Utc>>,
    pub partition_key: Option<String>,
    /// Application properties as raw JSON (an object), when present.
    pub properties: Option<Box<RawValue>>,
}

/// A decoded Event Hub batch.
#[derive(Debug, Clone)]
pub struct EventHubBatch {
    pub partition: PartitionInfo,
    pub events: Vec<EventData>,
    pub retry: Option<RetryInfo>,
}

impl EventHubBatch {
    /// First and last sequence number (events arrive in partition order).
    pub fn sequence_range(&self) -> Option<(i64, i64)> {
        let first = self.events.iter().map(|e| e.sequence_number).min()?;
        let last = self.events.iter().map(|e| e.sequence_number).max()?;
        Some((first, last))
    }

    /// Total body bytes.
    pub fn body_bytes(&self) -> usize {
        self.events
            .iter()
            .map(|e| match &e.body {
                EventBody::Text(t) => t.len(),
                EventBody::Bytes(b) => b.len(),
                EventBody::Undecodable { raw, .. } => raw.len(),
            })
            .sum()
    }

    /// Decodes an invocation of an Event Hub trigger function.
    ///
    /// `fallback_hub`/`fallback_group` name the hub and consumer group when the
    /// metadata lacks them (the `EVENTHUB_NAME`/`EVENTHUB_CONSUMER_GROUP` app settings).
    pub fn from_invocation(
        inv: &Invocation<'_>,
        encoding: EventEncoding,
        fallback_hub: &str,
        fallback_group: &str,
    ) -> Result<Self, RequestError> {
        let (binding, raw_events) = find_events_binding(inv)?;
        let bodies = decode_bodies(inv, binding, raw_events, encoding)?;
        let n = bodies.len();
        let system: Option<Vec<SystemProperties>> = inv.meta_value("SystemPropertiesArray")?;
        let system = system.filter(|s| s.len() == n);

        let sequence_numbers: Vec<i64> = match inv.meta_value::<Vec<Flexible<i64>>>("SequenceNumberArray")? {
            Some(seqs) => seqs.into_iter().map(|s| s.0).collect(),
            None => system
                .as_ref()
                .and_then(|s| s.iter().map(|p| p.sequence_number()).collect::<Option<Vec<_>>>())
                .ok_or_else(|| {
                    RequestError::new(
                        "Metadata.SequenceNumberArray is missing: the sequence numbers name the objects, \
                         so a batch without them cannot be written idempotently",
                    )
                })?,
        };
        expect_len("SequenceNumberArray", sequence_numbers.len(), n)?;

        let enqueued: Vec<Option<DateTime<Utc>>> = match inv
            .meta_value::<Vec<Option<String>>>("EnqueuedTimeUtcArray")?
        {
            Some(times) => times
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    t.as_deref()
                        .map(|t| {
                            parse_host_time(t).ok_or_else(|| {
                                RequestError::new(format!("Metadata.EnqueuedTimeUtcArray[{i}]: {t:?} is not a time"))
                            })
                        })
                        .transpose()
                })
                .collect::<Result<_, _>>()?,
            None => match &system {
                Some(s) => s.iter().map(SystemProperties::enqueued_time).collect(),
                None => vec![None; n],
            },
        };
        expect_len("EnqueuedTimeUtcArray", enqueued.len(), n)?;

        let offsets = optional_array::<Option<Flexible<String>>>(inv, "OffsetArray", n)?;
        let keys = optional_array::<Option<String>>(inv, "PartitionKeyArray", n)?;
        let properties = optional_array::<Option<Box<RawValue>>>(inv, "PropertiesArray", n)?;

        let mut events = Vec::with_capacity(n);
        for (i, body) in bodies.into_iter().enumerate() {
            events.push(EventData {
                body,
                sequence_number: sequence_numbers[i],
                offset: offsets
                    .as_ref()
                    .and_then(|o| o[i].as_ref().map(|f| f.0.clone()))
                    .or_else(|| system.as_ref().and_then(|s| s[i].offset())),
                enqueued_time: enqueued[i],
                partition_key: keys
                    .as_ref()
                    .and_then(|k| k[i].clone())
                    .or_else(|| system.as_ref().and_then(|s| s[i].partition_key.clone())),
                properties: properties
                    .as_ref()
                    .and_then(|p| p[i].clone())
                    .filter(|p| p.get() != "{}" && p.get() != "null"),
            });
        }
        check_sequence_order(&events)?;

        Ok(Self {
            partition: partition_info(inv, fallback_hub, fallback_group)?,
            events,
            retry: inv.meta_value("RetryContext")?,
        })
    }
}

/// The trigger's binding is the Data entry holding an array (or a string holding one);
/// its name comes from function.json, so it is not hard-coded.
fn find_events_binding<'a>(inv: &Invocation<'a>) -> Result<(String, RawJson<'a>), RequestError> {
    let mut candidates = inv.data.iter().filter(|(_, v)| {
        let t = v.get().trim_start();
        t.starts_with('[') || t.starts_with("\"[") || t.starts_with("\"\\u005b")
    });
    match (candidates.next(), candidates.next()) {
        (Some((name, value)), None) => Ok((name.to_string(), *value)),
        (Some(_), Some(_)) => Err(RequestError::new(
            "Data has more than one array binding; the Event Hub trigger must be the only array input",
        )),
        (None, _) => {
            let names: Vec<_> = inv.data.keys().map(|k| k.to_string()).collect();
            Err(RequestError::new(format!(
                "Data has no Event Hub batch: expected Data.<binding> to be an array of events or a JSON \
                 string holding one (cardinality many); found bindings {names:?}"
            )))
        }
    }
}

fn decode_bodies(
    inv: &Invocation<'_>,
    binding: String,
    raw: RawJson<'_>,
    encoding: EventEncoding,
) -> Result<Vec<EventBody>, RequestError> {
    // The usual shape, a string holding an array of strings, was most often decoded
    // already, in the same pass that parsed the envelope.
    if let Some(texts) = inv.take_predecoded(&binding) {
        return Ok(bodies_from_strings(texts, encoding));
    }
    let raw = raw.get();
    // Decoding it straight to strings saves a pass over the whole batch.
    if let Ok(texts) = unwrap_json::<Vec<String>>(raw) {
        return Ok(bodies_from_strings(texts, encoding));
    }
    let elements: Vec<Box<RawValue>> =
        unwrap_json(raw).map_err(|e| RequestError::new(format!("Data.{binding} is not an array of events: {e}")))?;
    // Each element is a JSON string (the body text or its base64), or for
    // `dataType`-less bindings the body's JSON itself.
    let mut texts = Vec::with_capacity(elements.len());
    let mut all_strings = true;
    for (i, element) in elements.iter().enumerate() {
        let t = element.get();
        if t.starts_with('"') {
            let s: String = serde_json::from_str(t)
                .map_err(|e| RequestError::new(format!("Data.{binding}[{i}] is not a valid JSON string: {e}")))?;
            texts.push(s);
        } else if t == "null" {
            texts.push(String::new());
        } else {
            all_strings = false;
            texts.push(t.to_string());
        }
    }
    if !all_strings {
        if encoding == EventEncoding::Binary {
            return Err(RequestError::new(format!(
                "Data.{binding} holds JSON values, but HUB2LAKE_EVENT_ENCODING=binary expects base64 strings"
            )));
        }
        return Ok(texts.into_iter().map(EventBody::Text).collect());
    }
    Ok(bodies_from_strings(texts, encoding))
}

/// Bodies from the strings of `Data.<binding>`: text, or base64 to decode.
fn bodies_from_strings(texts: Vec<String>, encoding: EventEncoding) -> Vec<EventBody> {
    let binary = match encoding {
        EventEncoding::String => false,
        EventEncoding::Binary => true,
        EventEncoding::Auto => looks_like_base64_batch(&texts),
    };
    texts
        .into_iter()
        .map(|t| {
            if binary {
                match base64::engine::general_purpose::STANDARD.decode(t.trim()) {
                    Ok(bytes) => EventBody::Bytes(bytes),
                    Err(e) => EventBody::Undecodable {
                        raw: t,
                        reason: format!("binary body is not valid base64: {e}"),
                    },
                }
            } else {
                EventBody::Text(t)
            }
        })
        .collect()
}

/// A batch is taken as base64 when every body is non-empty padded base64 and none is
/// JSON (`null`, `42`, `true` are base64-shaped but are JSON bodies of a string batch).
fn looks_like_base64_batch(texts: &[String]) -> bool {
    !texts.is_empty()
        && texts.iter().all(|t| {
            t.len() % 4 == 0
                && !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
                && serde_json::from_str::<serde::de::IgnoredAny>(t).is_err()
        })
}

fn optional_array<T: serde::de::DeserializeOwned>(
    inv: &Invocation<'_>,
    key: &str,
    n: usize,
) -> Result<Option<Vec<T>>, RequestError> {
    let values: Option<Vec<T>> = inv.meta_value(key)?;
    if let Some(v) = &values {
        expect_len(key, v.len(), n)?;
    }
    Ok(values)
}

fn expect_len(key: &str, got: usize, events: usize) -> Result<(), RequestError> {
    if got == events {
        Ok(())
    } else {
        Err(RequestError::new(format!(
            "Metadata.{key} has {got} entries but the batch has {events} events"
        )))
    }
}

fn check_sequence_order(events: &[EventData]) -> Result<(), RequestError> {
    for pair in events.windows(2) {
        if pair[1].sequence_number <= pair[0].sequence_number {
            return Err(RequestError::new(format!(
                "Metadata.SequenceNumberArray is not increasing ({} then {}): events of one partition \
                 arrive in sequence order",
                pair[0].sequence_number, pair[1].sequence_number
            )));
        }
    }
    if let Some(e) = events.iter().find(|e| e.sequence_number < 0) {
        return Err(RequestError::new(format!(
            "Metadata.SequenceNumberArray holds a negative sequence number {}",
            e.sequence_number
        )));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Default)]
struct PartitionContextWire {
    #[serde(rename = "PartitionId", alias = "partitionId")]
    partition_id: Option<Flexible<String>>,
    #[serde(rename = "EventHubName", alias = "EventHubPath", alias = "eventHubName")]
    eventhub: Option<String>,
    #[serde(rename = "ConsumerGroup", alias = "ConsumerGroupName", alias = "consumerGroup")]
    consumer_group: Option<String>,
    #[serde(rename = "FullyQualifiedNamespace", alias = "fullyQualifiedNamespace")]
    namespace: Option<String>,
}

fn partition_info(
    inv: &Invocation<'_>,
    fallback_hub: &str,
    fallback_group: &str,
) -> Result<PartitionInfo, RequestError> {
    let trigger: Option<PartitionContextWire> = inv.meta_value("TriggerPartitionContext")?;
    let legacy: Option<PartitionContextWire> = inv.meta_value("PartitionContext")?;
    let ctx = trigger.or(legacy).unwrap_or_default();
    Ok(PartitionInfo {
        namespace: ctx.namespace.filter(|s| !s.is_empty()),
        eventhub: ctx
            .eventhub
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fallback_hub.to_string()),
        consumer_group: ctx
            .consumer_group
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| fallback_group.to_string()),
        partition_id: ctx.partition_id.map(|p| p.0).filter(|s| !s.is_empty()),
    })
}

/// System properties of one event (AMQP annotations plus the SDK's additions).
#[derive(Debug, Deserialize)]
struct SystemProperties {
    #[serde(rename = "SequenceNumber")]
    sequence_number: Option<Flexible<i64>>,
    #[serde(rename = "x-opt-sequence-number")]
    amqp_sequence_number: Option<Flexible<i64>>,
    #[serde(rename = "OffsetString")]
    offset_string: Option<String>,
    #[serde(rename = "Offset")]
    offset: Option<Flexible<String>>,
    #[serde(rename = "PartitionKey")]
    partition_key: Option<String>,
    #[serde(rename = "EnqueuedTimeUtc")]
    enqueued_time_utc: Option<String>,
    #[serde(rename = "x-opt-enqueued-time")]
    amqp_enqueued_time: Option<String>,
}

impl SystemProperties {
    fn sequence_number(&self) -> Option<i64> {
        self.sequence_number
            .as_ref()
            .or(self.amqp_sequence_number.as_ref())
            .map(|f| f.0)
    }
    fn offset(&self) -> Option<String> {
        self.offset_string
            .clone()
            .or_else(|| self.offset.as_ref().map(|f| f.0.clone()))
    }
    fn enqueued_time(&self) -> Option<DateTime<Utc>> {
        self.enqueued_time_utc
            .as_deref()
            .or(self.amqp_enqueued_time.as_deref())
            .and_then(parse_host_time)
    }
}

/// Parses the host's times: ISO 8601 with or without offset (`EnqueuedTimeUtcArray`
/// entries carry no `Z` but are UTC), fraction optional.
pub fn parse_host_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Some(t) = parse_zoneless_time_fast(text) {
        return Some(t);
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|n| n.and_utc())
}

/// `YYYY-MM-DDTHH:MM:SS[.f]`, the form of every `EnqueuedTimeUtcArray` entry, read
/// without chrono's format-string parser (a fifth of a batch's metadata decode). It has
/// no offset, so RFC 3339 refuses it and chrono's `%Y-%m-%dT%H:%M:%S%.f` decides; `None`
/// for anything else or anything unusual (leap second, > 9 fraction digits), which is
/// then left to chrono.
fn parse_zoneless_time_fast(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let (head, fraction) = (b.get(..19)?, b.get(19..)?);
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        head.get(range)?
            .iter()
            .try_fold(0u32, |n, &d| d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0')))
    };
    let separators = [(4, b'-'), (7, b'-'), (10, b'T'), (13, b':'), (16, b':')];
    if separators.iter().any(|&(i, c)| head[i] != c) {
        return None;
    }
    let nanos = match fraction {
        [] => 0,
        [b'.', d @ ..] if (1..=9).contains(&d.len()) && d.iter().all(u8::is_ascii_digit) => {
            let n = d.iter().fold(0u32, |n, &c| n * 10 + u32::from(c - b'0'));
            n * 10u32.pow(9 - d.len() as u32)
        }
        _ => return None,
    };
    let second = digits(17..19)?;
    if second > 59 {
        return None;
    }
    let date = chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let time = chrono::NaiveTime::from_hms_nano_opt(digits(11..13)?, digits(14..16)?, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The times as chrono alone reads them (the code before the fast path).
    fn chrono_host_time(text: &str) -> Option<DateTime<Utc>> {
        let text = text.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(t.with_timezone(&Utc));
        }
        NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .ok()
            .map(|n| n.and_utc())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(3000))]
        #[test]
        fn fast_host_times_are_chronos(
            text in "[0-9]{4}-[0-1][0-9]-[0-3][0-9]T[0-2][0-9]:[0-6][0-9]:[0-6][0-9](\\.[0-9]{0,11})?[Z ]?",
            at in 0usize..32,
            byte in proptest::prelude::any::<u8>(),
        ) {
            let mut mutated = text.clone().into_bytes();
            if byte.is_ascii() && at < mutated.len() {
                mutated[at] = byte;
            }
            for t in [text, String::from_utf8(mutated).unwrap_or_default()] {
                if let Some(fast) = parse_zoneless_time_fast(&t) {
                    proptest::prop_assert_eq!(Some(fast), chrono_host_time(&t), "{:?}", t);
                }
                proptest::prop_assert_eq!(parse_host_time(&t), chrono_host_time(&t), "{:?}", t);
            }
        }
    }

    #[test]
    fn the_hosts_time_forms_take_the_fast_path() {
        for t in [
            "2025-01-15T10:32:53.184",
            "2025-01-15T10:32:55.5",
            "2025-01-15T10:32:02",
            "2024-02-29T23:59:59.123456789",
        ] {
            assert_eq!(parse_zoneless_time_fast(t), chrono_host_time(t), "{t}");
            assert!(parse_zoneless_time_fast(t).is_some(), "{t}");
        }
    }

    fn batch(body: &str, encoding: EventEncoding) -> Result<EventHubBatch, RequestError> {
        let inv = Invocation::parse(body.as_bytes())?;
        EventHubBatch::from_invocation(&inv, encoding, "fallback-hub", "$Default")
    }

    #[test]
    fn host_times_without_zone_are_utc() {
        let t = parse_host_time("2025-01-15T10:32:55.5").unwrap();
        assert_eq!(t.to_rfc3339(), "2025-01-15T10:32:55.500+00:00");
        assert!(parse_host_time("2025-01-15T10:32:02").is_some());
        assert!(parse_host_time("2025-01-15T10:32:02.1234567Z").is_some());
        assert!(parse_host_time("yesterday").is_none());
    }

    #[test]
    fn plain_arrays_are_accepted_as_well_as_string_wrapped_ones() {
        let b = batch(
            r#"{"Data":{"msgs":["{\"a\":1}","x"]},"Metadata":{"SequenceNumberArray":[1,2],
               "EnqueuedTimeUtcArray":["2025-01-15T10:00:00","2025-01-15T10:00:01"],
               "PartitionContext":{"PartitionId":"0","EventHubName":"h","ConsumerGroup":"g"}}}"#,
            EventEncoding::Auto,
        )
        .unwrap();
        assert_eq!(b.events.len(), 2);
        assert_eq!(b.events[0].body, EventBody::Text("{\"a\":1}".into()));
        assert_eq!(b.partition.partition_id.as_deref(), Some("0"));
    }

    #[test]
    fn object_elements_are_kept_as_json_text() {
        let b = batch(
            r#"{"Data":{"events":[{"a":1},[2]]},"Metadata":{"SequenceNumberArray":"[5,6]"}}"#,
            EventEncoding::Auto,
        )
        .unwrap();
        assert_eq!(b.events[0].body, EventBody::Text("{\"a\":1}".into()));
        assert_eq!(b.partition.eventhub, "fallback-hub");
        assert_eq!(b.partition.partition_id, None);
    }

    /// The bodies of a batch request that decodes.
    fn bodies(body: &str, encoding: EventEncoding) -> Vec<EventBody> {
        let b = batch(body, encoding).unwrap_or_else(|e| panic!("{body}: {e}"));
        b.events.into_iter().map(|e| e.body).collect()
    }

    #[test]
    fn json_scalars_are_not_mistaken_for_base64() {
        let request = r#"{"Data":{"events":"[\"null\",\"true\"]"},"Metadata":{"SequenceNumberArray":"[5,6]"}}"#;
        assert_eq!(bodies(request, EventEncoding::Auto)[0], EventBody::Text("null".into()));
    }

    /// Why a string-typed batch request is refused.
    fn refusal(body: &str) -> String {
        batch(body, EventEncoding::String).unwrap_err().0
    }

    #[test]
    fn malformed_batches_are_refused_with_the_reason() {
        let cases = [
            (
                r#"{"Data":{"events":"[\"a\",\"b\"]"},"Metadata":{"SequenceNumberArray":"[5]"}}"#,
                "SequenceNumberArray has 1 entries but the batch has 2",
            ),
            (
                r#"{"Data":{"events":"[\"a\"]"},"Metadata":{}}"#,
                "SequenceNumberArray is missing",
            ),
            (
                r#"{"Data":{"events":"[\"a\",\"b\"]"},"Metadata":{"SequenceNumberArray":"[7,5]"}}"#,
                "not increasing",
            ),
            (
                r#"{"Data":{"timer":{"IsPastDue":false}},"Metadata":{}}"#,
                "no Event Hub batch",
            ),
        ];
        for (body, reason) in cases {
            let err = refusal(body);
            assert!(err.contains(reason), "{body}: {err}");
        }
    }

    #[test]
    fn invalid_base64_is_kept_for_the_dead_letter_area() {
        let request = r#"{"Data":{"events":"[\"AP8Q\",\"!!notbase64\"]"},"Metadata":{"SequenceNumberArray":"[1,2]"}}"#;
        let bodies = bodies(request, EventEncoding::Binary);
        assert_eq!(bodies[0], EventBody::Bytes(vec![0, 0xff, 0x10]));
        assert!(matches!(&bodies[1], EventBody::Undecodable { raw, .. } if raw == "!!notbase64"));
    }

    mod fast_path {
        use super::*;
        use crate::host::fast_array::tests::{body, interesting_byte, mutated};
        use crate::host::wire::{eventhub_request, WireDataType, WireEvent, WirePartition};
        use chrono::TimeZone;
        use proptest::prelude::*;

        /// The batch, or why it is refused, as text: everything the handler goes on with.
        fn outcome(inv: Result<Invocation<'_>, RequestError>, encoding: EventEncoding) -> String {
            match inv.and_then(|inv| EventHubBatch::from_invocation(&inv, encoding, "fallback-hub", "$Default")) {
                Ok(batch) => format!("{batch:?}"),
                Err(e) => format!("refused: {e}"),
            }
        }

        /// What `Invocation::parse` made of a request before the fast path existed.
        fn parse_with_serde_alone(text: &str) -> Result<Invocation<'_>, RequestError> {
            if text.bytes().all(|b| b.is_ascii_whitespace()) {
                // Refused before either path runs.
                return Invocation::parse(text.as_bytes());
            }
            Invocation::parse_with_serde(text)
        }

        fn request(bodies: &[String], data_type: WireDataType) -> String {
            let events: Vec<WireEvent> = bodies
                .iter()
                .enumerate()
                .map(|(i, b)| WireEvent {
                    body: b.clone().into_bytes(),
                    sequence_number: 100 + i as i64,
                    offset: 4096 * i as i64,
                    enqueued_time: Utc
                        .timestamp_opt(1_736_937_173 + i as i64, 5_000_000 * i as u32)
                        .unwrap(),
                    partition_key: (i % 2 == 0).then(|| format!("k{i}")),
                    properties: serde_json::json!({ "n": i }),
                })
                .collect();
            eventhub_request("events", &WirePartition::default(), &events, data_type, None, "ingest")
        }

        /// Bytes serde_json writes as `\u00XX` (the fast path leaves those to serde).
        fn needs_unicode_escape(text: &str) -> bool {
            text.bytes().any(|c| c < 0x20 && !b"\n\r\t\x08\x0c".contains(&c))
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            /// Whatever the request, the fast path and serde alone make the same batch
            /// (bodies, sequence numbers, metadata) or refuse it with the same message.
            #[test]
            fn requests_decode_as_with_serde_alone(
                bodies in proptest::collection::vec(body(), 0..4),
                binary in any::<bool>(),
                mutate in any::<bool>(),
                what in any::<u8>(),
                anchor in 0u8..3,
                delta in 0usize..40,
                byte in interesting_byte(),
            ) {
                let data_type = if binary { WireDataType::Binary } else { WireDataType::String };
                let mut text = request(&bodies, data_type);
                if mutate {
                    let at = match anchor {
                        0 => delta,
                        1 => text.find("},\"Metadata\"").unwrap_or(0) + delta / 4,
                        _ => delta * 997,
                    };
                    text = mutated(text, what, at, byte);
                }
                for encoding in [EventEncoding::Auto, EventEncoding::String, EventEncoding::Binary] {
                    prop_assert_eq!(
                        outcome(Invocation::parse(text.as_bytes()), encoding),
                        outcome(parse_with_serde_alone(&text), encoding),
                        "{}", text
                    );
                }
                if !mutate && !bodies.iter().any(|b| needs_unicode_escape(b)) {
                    prop_assert!(Invocation::parse_batch_fast(&text).is_some(), "fast path not taken: {}", text);
                }
            }
        }

        /// The host's fixtures, as stored (pretty: serde's path) and compact as the host
        /// sends them (the fast path), decode alike.
        #[test]
        fn the_fixtures_decode_alike_on_both_paths() {
            let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures");
            let mut fast = 0;
            for entry in std::fs::read_dir(dir).expect("tests/fixtures").flatten() {
                if entry.path().extension().is_none_or(|e| e != "json") {
                    continue;
                }
                let pretty = std::fs::read_to_string(entry.path()).expect("fixture");
                let value: serde_json::Value = serde_json::from_str(&pretty).expect("fixture JSON");
                let compact = value.to_string();
                for text in [&pretty, &compact] {
                    for encoding in [EventEncoding::Auto, EventEncoding::String, EventEncoding::Binary] {
                        assert_eq!(
                            outcome(Invocation::parse(text.as_bytes()), encoding),
                            outcome(parse_with_serde_alone(text), encoding),
                            "{:?}",
                            entry.path()
                        );
                    }
                }
                fast += usize::from(Invocation::parse_batch_fast(&compact).is_some());
            }
            assert!(
                fast >= 4,
                "the Event Hub fixtures take the fast path when compact ({fast})"
            );
        }
    }
}
