//! The host protocol in the other direction: requests built exactly as the Functions
//! host sends them (compact JSON, arrays wrapped in strings, host time formats).
//!
//! The handler itself never sends one. The builder sits beside the decoder it mirrors
//! so that one round-trip test covers both directions of the protocol, and so that
//! everything that plays the host (the simulator, the benchmarks, and the handler's
//! own tests, which cannot depend on the operator package) sends the same requests.

use base64::Engine as _;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// One event as the host would deliver it.
#[derive(Debug, Clone)]
pub struct WireEvent {
    pub body: Vec<u8>,
    pub sequence_number: i64,
    pub offset: i64,
    pub enqueued_time: DateTime<Utc>,
    pub partition_key: Option<String>,
    /// Application properties (a JSON object).
    pub properties: Value,
}

/// Where a batch comes from.
#[derive(Debug, Clone)]
pub struct WirePartition {
    pub namespace: String,
    pub eventhub: String,
    pub consumer_group: String,
    pub partition_id: String,
}

impl Default for WirePartition {
    fn default() -> Self {
        Self {
            namespace: "contoso-ehns.servicebus.windows.net".into(),
            eventhub: "mongo-changes".into(),
            consumer_group: "hub2lake".into(),
            partition_id: "0".into(),
        }
    }
}

/// The function.json `dataType` the batch is sent as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireDataType {
    String,
    Binary,
}

/// The host's `RetryContext` on attempt `retry_count` (0 = first attempt).
#[derive(Debug, Clone, Copy)]
pub struct WireRetry {
    pub retry_count: i64,
    pub max_retry_count: i64,
}

/// `EnqueuedTimeUtcArray` style: no zone, trailing zero fraction digits trimmed.
pub fn host_time(t: DateTime<Utc>) -> String {
    let s = seven_digit_time(t);
    let s = s.trim_end_matches('0');
    s.trim_end_matches('.').to_string()
}

/// .NET's round-trip format: seven fraction digits (100 ns ticks), no zone.
fn seven_digit_time(t: DateTime<Utc>) -> String {
    let nanos = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    nanos[..nanos.len() - 2].to_string()
}

/// Builds the request body of an Event Hub trigger invocation (`cardinality: many`).
pub fn eventhub_request(
    binding: &str,
    partition: &WirePartition,
    events: &[WireEvent],
    data_type: WireDataType,
    retry: Option<WireRetry>,
    function_name: &str,
) -> String {
    let bodies: Vec<String> = events
        .iter()
        .map(|e| match data_type {
            WireDataType::String => String::from_utf8_lossy(&e.body).into_owned(),
            WireDataType::Binary => base64::engine::general_purpose::STANDARD.encode(&e.body),
        })
        .collect();
    let wrap = |v: Value| Value::String(v.to_string());
    let context = json!({
        "IsCheckpointingAfterInvocation": true,
        "FullyQualifiedNamespace": partition.namespace,
        "EventHubName": partition.eventhub,
        "ConsumerGroup": partition.consumer_group,
        "PartitionId": partition.partition_id,
    });
    let system: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "x-opt-sequence-number": e.sequence_number,
                "x-opt-offset": e.offset.to_string(),
                "x-opt-enqueued-time": format!("{}Z", host_time(e.enqueued_time)),
                "SequenceNumber": e.sequence_number,
                "Offset": e.offset,
                "OffsetString": e.offset.to_string(),
                "PartitionKey": e.partition_key,
                "EnqueuedTimeUtc": host_time(e.enqueued_time),
            })
        })
        .collect();
    let mut metadata = json!({
        "TriggerPartitionContext": context,
        "PartitionContext": context,
        "PartitionKeyArray": wrap(events.iter().map(|e| json!(e.partition_key)).collect()),
        "OffsetArray": wrap(events.iter().map(|e| json!(e.offset.to_string())).collect()),
        "OffsetStringArray": wrap(events.iter().map(|e| json!(e.offset.to_string())).collect()),
        "SequenceNumberArray": wrap(events.iter().map(|e| json!(e.sequence_number)).collect()),
        "EnqueuedTimeUtcArray": wrap(events.iter().map(|e| json!(host_time(e.enqueued_time))).collect()),
        "PropertiesArray": wrap(events.iter().map(|e| e.properties.clone()).collect()),
        "SystemPropertiesArray": wrap(Value::Array(system)),
        "sys": {
            "MethodName": function_name,
            "UtcNow": format!("{}Z", seven_digit_time(Utc::now())),
            "RandGuid": format!("{:08x}-0000-4000-8000-{:012x}", fastrand::u32(..), fastrand::u64(..) & 0xffff_ffff_ffff),
        },
    });
    if let Some(r) = retry {
        metadata["RetryContext"] = json!({
            "RetryCount": r.retry_count,
            "MaxRetryCount": r.max_retry_count,
            "Exception": if r.retry_count > 0 { json!({"ClassName": "System.Net.Http.HttpRequestException", "Message": "Response status code does not indicate success: 500 (Internal Server Error)."}) } else { Value::Null },
            "Instance": null,
            "State": {},
        });
    }
    let mut data = serde_json::Map::new();
    data.insert(binding.to_string(), wrap(json!(bodies)));
    json!({ "Data": data, "Metadata": metadata }).to_string()
}

/// Builds the request body of a timer trigger invocation.
pub fn timer_request(
    binding: &str,
    last: Option<DateTime<Utc>>,
    next: DateTime<Utc>,
    past_due: bool,
    function_name: &str,
) -> String {
    let fmt = |t: DateTime<Utc>| format!("{}+00:00", seven_digit_time(t));
    let never = "0001-01-01T00:00:00+00:00".to_string();
    let last = last.map(fmt).unwrap_or(never);
    json!({
        "Data": { binding: {
            "Schedule": {"AdjustForDST": true},
            "ScheduleStatus": {"Last": last, "Next": fmt(next), "LastUpdated": last},
            "IsPastDue": past_due,
        }},
        "Metadata": { "sys": {
            "MethodName": function_name,
            "UtcNow": format!("{}Z", seven_digit_time(Utc::now())),
            "RandGuid": "00000000-0000-4000-8000-000000000000",
        }},
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EventEncoding;
    use crate::host::{EventBody, EventHubBatch, Invocation};
    use chrono::TimeZone;

    fn events() -> Vec<WireEvent> {
        let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 32, 55).unwrap() + chrono::TimeDelta::milliseconds(500);
        vec![
            WireEvent {
                body: br#"{"a":"x \"q\""}"#.to_vec(),
                sequence_number: 7,
                offset: 100,
                enqueued_time: t,
                partition_key: Some("k".into()),
                properties: json!({"p": 1}),
            },
            WireEvent {
                body: vec![0, 0xff],
                sequence_number: 8,
                offset: 200,
                enqueued_time: t,
                partition_key: None,
                properties: json!({}),
            },
        ]
    }

    #[test]
    fn host_times_trim_trailing_zeros() {
        let t = Utc.with_ymd_and_hms(2025, 1, 15, 10, 32, 2).unwrap();
        assert_eq!(host_time(t), "2025-01-15T10:32:02");
        assert_eq!(
            host_time(t + chrono::TimeDelta::milliseconds(500)),
            "2025-01-15T10:32:02.5"
        );
    }

    #[test]
    fn built_requests_decode_back_to_the_same_batch() {
        let body = eventhub_request(
            "events",
            &WirePartition::default(),
            &events(),
            WireDataType::Binary,
            Some(WireRetry {
                retry_count: 2,
                max_retry_count: 5,
            }),
            "ingest",
        );
        let inv = Invocation::parse(body.as_bytes()).unwrap();
        let batch = EventHubBatch::from_invocation(&inv, EventEncoding::Binary, "x", "y").unwrap();
        assert_eq!(batch.events.len(), 2);
        assert_eq!(batch.events[1].body, EventBody::Bytes(vec![0, 0xff]));
        assert_eq!(batch.events[0].partition_key.as_deref(), Some("k"));
        assert_eq!(batch.events[0].offset.as_deref(), Some("100"));
        assert_eq!(batch.retry.unwrap().retry_count, 2);
        assert_eq!(batch.partition.partition_id.as_deref(), Some("0"));
        assert_eq!(batch.events[0].enqueued_time, Some(events()[0].enqueued_time));
    }
}
