//! Batches for the ingest stages' unit tests.

use crate::host::{EventData, EventHubBatch, PartitionInfo};

/// A batch from partition 3 of the Event Hub `hub`.
pub fn batch(events: Vec<EventData>) -> EventHubBatch {
    EventHubBatch {
        partition: PartitionInfo {
            namespace: Some("ns.servicebus.windows.net".into()),
            eventhub: "hub".into(),
            consumer_group: "$Default".into(),
            partition_id: Some("3".into()),
        },
        events,
        retry: None,
    }
}
