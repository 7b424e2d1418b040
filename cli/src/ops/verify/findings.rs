//! What `verify` reports: findings (each fails the check), warnings (a person should
//! look; the check passes) and receipts naming copies the seal removed (expected).

use serde::Serialize;

use super::super::inventory::PartitionSummary;

/// One problem. `verify` is clean when there are none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Finding {
    /// Sequence numbers of a partition no receipt covers.
    Gap {
        eventhub: String,
        consumer_group: String,
        partition_id: String,
        first_missing: i64,
        last_missing: i64,
        missing: u64,
        /// Hour of the last event before the gap (`YYYY-MM-DDTHH`).
        hour_before: Option<String>,
        /// Hour of the first event after it.
        hour_after: Option<String>,
        receipt_before: String,
        receipt_after: String,
    },
    /// A receipt or manifest lists an object that is not in the lake.
    MissingObject { path: String, listed_by: String },
    /// An object's size differs from its commit record.
    SizeMismatch {
        path: String,
        listed_by: String,
        expected: u64,
        actual: u64,
    },
    /// An object's record count differs from its commit record.
    RecordCountMismatch {
        path: String,
        listed_by: String,
        expected: u64,
        actual: u64,
    },
    /// An object holds other partitions or sequence numbers than its commit record says.
    ContentMismatch {
        path: String,
        listed_by: String,
        reason: String,
    },
    /// An object does not decompress, or a line is not a JSON record.
    Corrupt {
        path: String,
        line: Option<u64>,
        reason: String,
    },
    /// A data object no receipt or manifest accounts for.
    Orphan {
        path: String,
        bytes: u64,
        hour: Option<String>,
        note: String,
    },
    /// A receipt or manifest that cannot be read.
    Unreadable { path: String, reason: String },
    /// A receipt whose counts do not add up.
    ReceiptInconsistent { path: String, reason: String },
    /// A sealed hour holds events more than once beyond what its manifest declares.
    SealedDuplicates {
        database: String,
        collection: String,
        hour: String,
        manifest: String,
        duplicates: u64,
        declared: u64,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hour = |h: &Option<String>| h.clone().unwrap_or_else(|| "unknown hour".into());
        match self {
            Self::Gap {
                eventhub,
                consumer_group,
                partition_id,
                first_missing,
                last_missing,
                missing,
                hour_before,
                hour_after,
                receipt_before,
                receipt_after,
            } => write!(
                f,
                "gap: partition {partition_id} ({eventhub}/{consumer_group}) is missing sequence numbers \
                 {first_missing}..{last_missing} ({missing} events), between hour {} ({receipt_before}) and hour {} \
                 ({receipt_after})",
                hour(hour_before),
                hour(hour_after)
            ),
            Self::MissingObject { path, listed_by } => write!(f, "missing: {path} (listed by {listed_by})"),
            Self::SizeMismatch {
                path,
                listed_by,
                expected,
                actual,
            } => write!(f, "size: {path} is {actual} bytes, {listed_by} says {expected}"),
            Self::RecordCountMismatch {
                path,
                listed_by,
                expected,
                actual,
            } => write!(f, "records: {path} holds {actual} records, {listed_by} says {expected}"),
            Self::ContentMismatch {
                path,
                listed_by,
                reason,
            } => write!(f, "content: {path}: {reason} (per {listed_by})"),
            Self::Corrupt { path, line, reason } => match line {
                Some(l) => write!(f, "corrupt: {path} line {l}: {reason}"),
                None => write!(f, "corrupt: {path}: {reason}"),
            },
            Self::Orphan {
                path,
                bytes,
                hour: _,
                note,
            } => write!(f, "orphan: {path} ({bytes} bytes): {note}"),
            Self::Unreadable { path, reason } => write!(f, "unreadable: {path}: {reason}"),
            Self::ReceiptInconsistent { path, reason } => write!(f, "receipt: {path}: {reason}"),
            Self::SealedDuplicates {
                database,
                collection,
                hour,
                manifest,
                duplicates,
                declared,
            } => write!(
                f,
                "duplicates: sealed hour {database}/{collection} {hour} holds {duplicates} repeated events, its \
                 manifest {manifest} declares {declared}"
            ),
        }
    }
}

/// Something a person should look at that does not fail `verify`: the lake says
/// what it is and the seal keeps track of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Warning {
    /// A data object in a sealed hour's folder that no receipt names, which the seal
    /// left in place and lists in the manifest's `unreceipted` (docs/recovery.md,
    /// "Objects without a receipt in a sealed hour").
    Unreceipted {
        path: String,
        bytes: u64,
        records: u64,
        /// `YYYY-MM-DDTHH`.
        hour: String,
        manifest: String,
        /// The runs of its records no receipt covers (in none of the hour's objects).
        uncovered: Vec<PartitionSummary>,
        /// Why the seal could not read it as hub2lake records.
        #[serde(skip_serializing_if = "Option::is_none")]
        problem: Option<String>,
    },
    /// A data object no receipt names yet, written less than [`IN_FLIGHT_WINDOW`]
    /// before the listing: most likely a delivery in flight (objects first, receipt
    /// last). Older ones are orphans.
    AwaitingReceipt {
        path: String,
        bytes: u64,
        /// `YYYY-MM-DDTHH`.
        hour: String,
        age_seconds: i64,
    },
}

/// How long a delivery can be in flight: the Functions timeout (host.json
/// `functionTimeout`, 10 minutes) plus a margin for clock skew between the storage
/// service and this machine.
pub const IN_FLIGHT_WINDOW: chrono::TimeDelta = chrono::TimeDelta::minutes(15);

/// Where the runbook for objects without receipt is.
const UNRECEIPTED_RUNBOOK: &str = "docs/recovery.md, \"Objects without a receipt in a sealed hour\"";

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (path, bytes, records, hour, manifest, uncovered, problem) = match self {
            Self::Unreceipted {
                path,
                bytes,
                records,
                hour,
                manifest,
                uncovered,
                problem,
            } => (path, bytes, records, hour, manifest, uncovered, problem),
            Self::AwaitingReceipt {
                path,
                bytes,
                hour,
                age_seconds,
            } => {
                return write!(
                    f,
                    "awaiting receipt: {path} ({bytes} bytes) in hour {hour}, written {age_seconds} s before the \
                     listing: no receipt names it yet (a delivery in flight writes its objects first and its receipt \
                     last); if it is still unnamed after {} minutes it is an orphan",
                    IN_FLIGHT_WINDOW.num_minutes()
                );
            }
        };
        write!(
            f,
            "unreceipted: {path} ({bytes} bytes) in sealed hour {hour}: no receipt names it"
        )?;
        if let Some(problem) = problem {
            return write!(
                f,
                ", and it is not hub2lake records ({problem}); {manifest} lists it. Move it out of the hour folder \
                 ({UNRECEIPTED_RUNBOOK})"
            );
        }
        if uncovered.is_empty() {
            return write!(
                f,
                "; every one of its {records} records is in a receipt (a copy kept because the hour is not \
                 compacted): readers of the folder see those events twice, readers of {manifest} once"
            );
        }
        write!(
            f,
            ", and it holds events no receipt covers: {}; the seal keeps it and lists it in {manifest}. Wait one \
             seal run if it is new (a delivery in flight), replay the range if it is a gap, else save its events \
             ({UNRECEIPTED_RUNBOOK})",
            describe_runs(uncovered)
        )
    }
}

/// `partition 0 sequence numbers 50..99 (50 events), …`
fn describe_runs(runs: &[PartitionSummary]) -> String {
    runs.iter()
        .map(|r| {
            format!(
                "partition {} sequence numbers {}..{} ({} events)",
                r.partition_id, r.first_sequence_number, r.last_sequence_number, r.records
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A receipt naming an object the seal removed as a copy (its manifest's
/// `removed_copies`): expected, not a missing object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RemovedCopyNamed {
    pub path: String,
    pub receipt: String,
    pub manifest: String,
}
