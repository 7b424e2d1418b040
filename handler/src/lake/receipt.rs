//! Batch receipts: the commit record of one successful batch, written after all of
//! its data and dead-letter objects. The seal timer proves hours complete from them.

use serde::{Deserialize, Serialize};

/// What kind of object a receipt entry points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectKind {
    Data,
    DeadLetter,
}

/// One object written by a batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiptObject {
    /// Path relative to the lake root.
    pub path: String,
    pub kind: ObjectKind,
    /// Route of the records (sanitised, as in the path); absent for dead letters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collection: Option<String>,
    /// Start of the hour the records belong to, RFC 3339 UTC.
    pub hour: String,
    pub records: u64,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
    /// Stored (possibly compressed) size.
    pub bytes: u64,
    pub uncompressed_bytes: u64,
    pub sha256: String,
}

/// The receipt of one batch of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Receipt {
    pub receipt_version: u32,
    pub writer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    pub eventhub: String,
    pub consumer_group: String,
    pub partition_id: String,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
    pub event_count: u64,
    pub dead_letter_count: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_enqueued_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_enqueued_time: Option<String>,
    pub written_at: String,
    pub objects: Vec<ReceiptObject>,
}

impl Receipt {
    pub const VERSION: u32 = 1;
}
