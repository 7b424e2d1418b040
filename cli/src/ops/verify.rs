//! `hub2lake verify`: does the lake hold what its commit records say, exactly once?
//!
//! * every object a receipt lists exists with the recorded size and record count (a
//!   raw object missing from a sealed hour is fine when the manifest consumed it, or
//!   recorded it in `removed_copies`: the seal deleted it as a copy of sealed events,
//!   and a delivery that was in flight then wrote its receipt);
//! * every object a manifest lists exists with the recorded size, records and ranges;
//! * no data object that no receipt or manifest accounts for (orphans). An object no
//!   receipt names that the manifest lists in `unreceipted` is not an orphan: the seal
//!   judged it, kept it because it holds events no receipt covers, and reported it;
//!   `verify` repeats that as a warning (it does not fail the check);
//! * receipts tile each partition's sequence numbers (every missing range is named);
//! * every object decompresses and every line is a JSON record (streamed);
//! * duplicates (same partition and sequence number twice): counted in unsealed data,
//!   where re-deliveries put them before the seal removes them; an error in a sealed
//!   hour beyond what its manifest declares.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};
use serde::Serialize;

use super::inventory::{Gap, Inventory, PartitionSummary, Unit, UnreceiptedObject};
use super::range::{format_hour, HourRange};
use super::scan::{self, ObjectScan, ScanError, SeqSet};
use super::{blocking, OpsError};
use hub2lake::lake::{Lake, LakeError};

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub range: HourRange,
    /// Objects read at once.
    pub concurrency: usize,
}

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

/// What was looked at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checked {
    pub receipts: u64,
    pub hours: u64,
    pub units: u64,
    pub sealed_units: u64,
    pub objects_read: u64,
    pub records_read: u64,
    pub bytes_read: u64,
    pub dead_letter_objects: u64,
    /// Objects deleted between the listing and the read (a seal run cleaning up).
    pub vanished: u64,
}

/// The result of `verify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub lake: String,
    pub range: String,
    pub clean: bool,
    pub checked: Checked,
    pub findings: Vec<Finding>,
    /// What needs attention without failing the check.
    pub warnings: Vec<Warning>,
    /// Receipts naming objects the seal removed as copies, not yet recorded as
    /// consumed by the manifest (the seal does that when it next reads the hour).
    pub removed_copies_named: Vec<RemovedCopyNamed>,
    /// Extra copies of events in unsealed data (re-deliveries; the seal removes them).
    pub duplicates_unsealed: u64,
    /// Receipt ranges covered more than once (re-deliveries with other boundaries).
    pub overlaps: u64,
    /// Files that are not the lake's (not judged).
    pub foreign: Vec<String>,
}

impl VerifyReport {
    /// The human summary.
    pub fn render(&self) -> String {
        let c = &self.checked;
        let mut out = format!("verify {} — {}\n", self.lake, self.range);
        out.push_str(&format!(
            "checked {} receipts, {} folders in {} hours ({} sealed), {} objects read ({} records, {} bytes \
             uncompressed), {} dead-letter objects\n",
            c.receipts,
            c.units,
            c.hours,
            c.sealed_units,
            c.objects_read,
            c.records_read,
            c.bytes_read,
            c.dead_letter_objects
        ));
        for f in &self.findings {
            out.push_str(&format!("  FAIL {f}\n"));
        }
        for w in &self.warnings {
            out.push_str(&format!("  WARN {w}\n"));
        }
        for r in &self.removed_copies_named {
            out.push_str(&format!(
                "  info: {} names {}, a copy the seal removed ({} records it in removed_copies): its events are \
                 sealed, and the seal records the receipt when it next reads the hour\n",
                r.receipt, r.path, r.manifest
            ));
        }
        if self.duplicates_unsealed > 0 {
            out.push_str(&format!(
                "  info: {} duplicate events in unsealed data (re-deliveries; sealing removes them, or de-duplicate on \
                 partition_id + sequence_number)\n",
                self.duplicates_unsealed
            ));
        }
        if self.overlaps > 0 {
            out.push_str(&format!(
                "  info: {} receipt ranges overlap earlier ones (re-deliveries)\n",
                self.overlaps
            ));
        }
        if c.vanished > 0 {
            out.push_str(&format!(
                "  info: {} objects were deleted while verifying (a seal run); run verify again for a settled view\n",
                c.vanished
            ));
        }
        for f in &self.foreign {
            out.push_str(&format!("  info: not a lake object, ignored: {f}\n"));
        }
        let warned = match self.warnings.len() {
            0 => String::new(),
            1 => ", 1 warning".to_string(),
            n => format!(", {n} warnings"),
        };
        match (self.clean, warned.is_empty()) {
            (true, true) => out.push_str("OK: the lake is clean\n"),
            (true, false) => out.push_str(&format!("OK: no problems{warned}\n")),
            (false, _) => out.push_str(&format!("FAILED: {} problems{warned}\n", self.findings.len())),
        }
        out
    }
}

/// What an object must hold, per its commit record.
#[derive(Debug, Clone)]
enum Expect {
    /// A receipt's data or dead-letter object.
    Receipt {
        receipt: String,
        partition: String,
        records: u64,
        first: i64,
        last: i64,
    },
    /// A manifest's object.
    Manifest {
        manifest: String,
        records: u64,
        partitions: Vec<PartitionSummary>,
    },
}

impl Expect {
    fn listed_by(&self) -> &str {
        match self {
            Self::Receipt { receipt, .. } => receipt,
            Self::Manifest { manifest, .. } => manifest,
        }
    }
}

/// How an object's events count towards duplicates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Listed by the unit's manifest.
    Sealed,
    /// Raw data not (yet) consumed by a seal.
    Pending,
    /// Not data (dead letters): no duplicate accounting.
    Other,
}

/// One object to read.
#[derive(Debug, Clone)]
struct Task {
    /// Index into the units being verified (`None` for dead letters).
    unit: Option<usize>,
    path: String,
    class: Class,
    expect: Expect,
}

/// Per-unit duplicate accounting while the unit's objects stream by.
#[derive(Default)]
struct UnitDups {
    sets: HashMap<String, SeqSet>,
    sealed: u64,
    pending: u64,
}

/// Verifies `range` of the lake.
pub async fn verify(lake: &Lake, inv: &Inventory, opts: &VerifyOptions) -> Result<VerifyReport, OpsError> {
    let range = &opts.range;
    let units: Vec<&Unit> = inv.units_in(range, None, None).collect();
    let mut report = VerifyReport {
        lake: lake.description().to_string(),
        range: range.to_string(),
        clean: true,
        checked: Checked::default(),
        findings: Vec::new(),
        warnings: units.iter().flat_map(|u| unreceipted_warnings(u)).collect(),
        removed_copies_named: Vec::new(),
        duplicates_unsealed: 0,
        overlaps: inv.overlaps,
        foreign: inv.foreign.iter().map(|(p, _)| p.clone()).collect(),
    };
    report.findings.extend(inv.problems.iter().map(|p| Finding::Unreadable {
        path: p.path.clone(),
        reason: p.reason.clone(),
    }));
    check_receipts(inv, range, &mut report);
    report
        .findings
        .extend(inv.gaps.iter().filter(|g| g.touches(range)).map(gap_finding));
    let (orphans, in_flight) = orphans(inv, &units, range);
    report.findings.extend(orphans);
    report.warnings.extend(in_flight);
    let tasks = plan_tasks(inv, &units, range, &mut report);
    report.checked.units = units.len() as u64;
    report.checked.sealed_units = units.iter().filter(|u| u.is_sealed()).count() as u64;
    let hours: std::collections::BTreeSet<_> = units.iter().map(|u| u.key.hour).collect();
    report.checked.hours = hours.len() as u64;
    read_and_check(lake, &units, tasks, opts.concurrency, &mut report).await?;
    report.clean = report.findings.is_empty();
    Ok(report)
}

/// Receipts in range: their counts must add up.
fn check_receipts(inv: &Inventory, range: &HourRange, report: &mut VerifyReport) {
    for r in inv.receipts_in(range) {
        report.checked.receipts += 1;
        let rc = &r.receipt;
        let (mut data, mut dead) = (0u64, 0u64);
        for o in &rc.objects {
            match o.kind {
                hub2lake::lake::receipt::ObjectKind::Data => data += o.records,
                hub2lake::lake::receipt::ObjectKind::DeadLetter => dead += o.records,
            }
        }
        if data + dead != rc.event_count || dead != rc.dead_letter_count {
            report.findings.push(Finding::ReceiptInconsistent {
                path: r.path.clone(),
                reason: format!(
                    "records {event} events ({dl} dead letters) but its objects hold {data} records and {dead} dead \
                     letters",
                    event = rc.event_count,
                    dl = rc.dead_letter_count
                ),
            });
        }
    }
}

fn gap_finding(g: &Gap) -> Finding {
    Finding::Gap {
        eventhub: g.partition.eventhub.clone(),
        consumer_group: g.partition.consumer_group.clone(),
        partition_id: g.partition.partition_id.clone(),
        first_missing: g.first_missing,
        last_missing: g.last_missing,
        missing: g.missing(),
        hour_before: g.before_hour.map(format_hour),
        hour_after: g.after_hour.map(format_hour),
        receipt_before: g.before_receipt.clone(),
        receipt_after: g.after_receipt.clone(),
    }
}

/// The objects without receipt a sealed hour's manifest reports, as warnings.
fn unreceipted_warnings(u: &Unit) -> Vec<Warning> {
    let manifest = u.manifest.as_ref().map(|m| m.path.clone()).unwrap_or_default();
    u.unreceipted
        .iter()
        .map(|(entry, size): &(UnreceiptedObject, u64)| Warning::Unreceipted {
            path: entry.path.clone(),
            bytes: *size,
            records: entry.records,
            hour: format_hour(u.key.hour),
            manifest: manifest.clone(),
            uncovered: entry.uncovered.clone(),
            problem: entry.problem.clone(),
        })
        .collect()
}

/// Objects in unit folders and elsewhere that nothing accounts for: orphans, and
/// (as warnings) recent data objects that may belong to a delivery in flight.
fn orphans(inv: &Inventory, units: &[&Unit], range: &HourRange) -> (Vec<Finding>, Vec<Warning>) {
    let mut out = Vec::new();
    let mut in_flight = Vec::new();
    for u in units {
        for (path, bytes) in &u.orphans {
            let name = path.rsplit('/').next().unwrap_or(path);
            let age = inv.age(path).filter(|a| *a < IN_FLIGHT_WINDOW);
            if let (Some(age), false) = (age, is_compaction_output(name)) {
                in_flight.push(Warning::AwaitingReceipt {
                    path: path.clone(),
                    bytes: *bytes,
                    hour: format_hour(u.key.hour),
                    age_seconds: age.num_seconds(),
                });
                continue;
            }
            let note = if is_compaction_output(name) {
                "compaction output no manifest lists (a seal run in progress or interrupted; the next seal run \
                 replaces or deletes it)"
            } else {
                "no receipt or manifest accounts for it"
            };
            out.push(Finding::Orphan {
                path: path.clone(),
                bytes: *bytes,
                hour: Some(format_hour(u.key.hour)),
                note: note.into(),
            });
        }
    }
    for s in inv.strays.iter().filter(|s| s.hour.is_none_or(|h| range.contains(h))) {
        out.push(Finding::Orphan {
            path: s.path.clone(),
            bytes: s.bytes,
            hour: s.hour.map(format_hour),
            note: "no receipt or manifest accounts for it, and its folder is not an hour folder of the path \
                   template"
                .into(),
        });
    }
    (out, in_flight)
}

/// Decides which objects to read; reports what is missing or of the wrong size.
fn plan_tasks(inv: &Inventory, units: &[&Unit], range: &HourRange, report: &mut VerifyReport) -> Vec<Task> {
    let mut tasks = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let manifest_path = u.manifest.as_ref().map(|m| m.path.clone());
        for o in &u.sealed {
            let expect = Expect::Manifest {
                manifest: manifest_path.clone().unwrap_or_default(),
                records: o.entry.records,
                partitions: o.entry.partitions.clone(),
            };
            if let Some(task) = presence(&o.entry.path, o.size, o.entry.bytes, expect, report) {
                tasks.push(Task {
                    unit: Some(i),
                    class: Class::Sealed,
                    ..task
                });
            }
        }
        for r in &u.raw {
            let listed_by_manifest = u
                .manifest
                .as_ref()
                .is_some_and(|m| m.manifest.objects.iter().any(|o| o.path == r.entry.path));
            if listed_by_manifest {
                continue;
            }
            if r.size.is_none() && u.manifest.as_ref().is_some_and(|m| m.accounts_for(&r.entry.path)) {
                continue; // compacted away by the seal: expected
            }
            if let Some(named) = removed_copy_named(u, r) {
                report.removed_copies_named.push(named);
                continue;
            }
            let expect = Expect::Receipt {
                receipt: r.receipt.clone(),
                partition: r.partition.partition_id.clone(),
                records: r.entry.records,
                first: r.entry.first_sequence_number,
                last: r.entry.last_sequence_number,
            };
            if let Some(task) = presence(&r.entry.path, r.size, r.entry.bytes, expect, report) {
                tasks.push(Task {
                    unit: Some(i),
                    class: Class::Pending,
                    ..task
                });
            }
        }
    }
    for d in inv.dead_letters.iter().filter(|d| range.contains(d.hour)) {
        report.checked.dead_letter_objects += 1;
        let partition = inv
            .receipts
            .binary_search_by(|r| r.path.as_str().cmp(&d.receipt))
            .ok()
            .map(|i| inv.receipts[i].receipt.partition_id.clone())
            .unwrap_or_default();
        let expect = Expect::Receipt {
            receipt: d.receipt.clone(),
            partition,
            records: d.entry.records,
            first: d.entry.first_sequence_number,
            last: d.entry.last_sequence_number,
        };
        if let Some(task) = presence(&d.entry.path, d.size, d.entry.bytes, expect, report) {
            tasks.push(Task {
                unit: None,
                class: Class::Other,
                ..task
            });
        }
    }
    tasks
}

/// A missing raw object whose removal the unit's manifest records (same path and
/// SHA-256): the seal deleted it as a copy before its delivery wrote the receipt.
fn removed_copy_named(u: &Unit, r: &super::inventory::RawObject) -> Option<RemovedCopyNamed> {
    let m = u.manifest.as_ref()?;
    if r.size.is_some() {
        return None;
    }
    m.removed_copy(&r.entry.path, &r.entry.sha256)?;
    Some(RemovedCopyNamed {
        path: r.entry.path.clone(),
        receipt: r.receipt.clone(),
        manifest: m.path.clone(),
    })
}

/// Checks that an object is there with the expected size; returns the read task.
fn presence(path: &str, size: Option<u64>, expected: u64, expect: Expect, report: &mut VerifyReport) -> Option<Task> {
    let Some(actual) = size else {
        report.findings.push(Finding::MissingObject {
            path: path.to_string(),
            listed_by: expect.listed_by().to_string(),
        });
        return None;
    };
    if actual != expected {
        report.findings.push(Finding::SizeMismatch {
            path: path.to_string(),
            listed_by: expect.listed_by().to_string(),
            expected,
            actual,
        });
    }
    Some(Task {
        unit: None,
        path: path.to_string(),
        class: Class::Other,
        expect,
    })
}

/// Reads every task's object (`concurrency` at a time, in order) and checks it.
async fn read_and_check(
    lake: &Lake,
    units: &[&Unit],
    tasks: Vec<Task>,
    concurrency: usize,
    report: &mut VerifyReport,
) -> Result<(), OpsError> {
    let mut results = futures::stream::iter(tasks)
        .map(|task| async move {
            let scanned = read_scan(lake, &task.path).await?;
            Ok::<_, OpsError>((task, scanned))
        })
        .buffered(concurrency.max(1));
    let mut current: Option<(usize, UnitDups)> = None;
    while let Some((task, scanned)) = results.try_next().await? {
        if let Some(i) = task.unit {
            if current.as_ref().is_some_and(|(u, _)| *u != i) {
                if let Some((u, dups)) = current.take() {
                    finish_unit(units[u], dups, report);
                }
            }
            if current.is_none() {
                current = Some((i, UnitDups::default()));
            }
        }
        let scan = match scanned {
            Read::Vanished => {
                report.checked.vanished += 1;
                continue;
            }
            Read::Bad(e) => {
                report.findings.push(Finding::Corrupt {
                    path: task.path.clone(),
                    line: e.line,
                    reason: e.reason,
                });
                continue;
            }
            Read::Good(scan) => scan,
        };
        report.checked.objects_read += 1;
        report.checked.records_read += scan.records;
        report.checked.bytes_read += scan.uncompressed_bytes;
        check_content(&task, &scan, report);
        if let Some((_, dups)) = current.as_mut() {
            count_duplicates(task.class, &scan, dups);
        }
    }
    if let Some((u, dups)) = current.take() {
        finish_unit(units[u], dups, report);
    }
    Ok(())
}

enum Read {
    Good(ObjectScan),
    Bad(ScanError),
    Vanished,
}

async fn read_scan(lake: &Lake, path: &str) -> Result<Read, OpsError> {
    let bytes = match lake.get(path).await {
        Ok(b) => b,
        Err(LakeError::Storage {
            source: object_store::Error::NotFound { .. },
            ..
        }) => return Ok(Read::Vanished),
        Err(e) => return Err(e.into()),
    };
    tracing::debug!(path, bytes = bytes.len(), "scanning");
    blocking(move || {
        Ok(match scan::scan(&bytes[..]) {
            Ok(s) => Read::Good(s),
            Err(e) => Read::Bad(e),
        })
    })
    .await
}

fn check_content(task: &Task, scan: &ObjectScan, report: &mut VerifyReport) {
    let path = task.path.clone();
    let listed_by = task.expect.listed_by().to_string();
    let expected_records = match &task.expect {
        Expect::Receipt { records, .. } | Expect::Manifest { records, .. } => *records,
    };
    if scan.records != expected_records {
        report.findings.push(Finding::RecordCountMismatch {
            path: path.clone(),
            listed_by: listed_by.clone(),
            expected: expected_records,
            actual: scan.records,
        });
    }
    if let Some(reason) = content_problem(&task.expect, scan) {
        report.findings.push(Finding::ContentMismatch {
            path,
            listed_by,
            reason,
        });
    }
}

fn content_problem(expect: &Expect, scan: &ObjectScan) -> Option<String> {
    match expect {
        Expect::Receipt {
            partition, first, last, ..
        } => {
            if let Some(other) = scan.partitions.keys().find(|p| *p != partition) {
                return Some(format!("holds records of partition {other}, expected only {partition}"));
            }
            let runs = scan.partitions.get(partition)?;
            (runs.first < *first || runs.last > *last).then(|| {
                format!(
                    "holds sequence numbers {}..{}, outside the recorded {first}..{last}",
                    runs.first, runs.last
                )
            })
        }
        Expect::Manifest { partitions, .. } if !partitions.is_empty() => {
            let found: Vec<PartitionSummary> = scan
                .partitions
                .iter()
                .map(|(p, r)| PartitionSummary {
                    partition_id: p.clone(),
                    records: r.records,
                    first_sequence_number: r.first,
                    last_sequence_number: r.last,
                })
                .collect();
            let expected = aggregate(partitions);
            (found != expected).then(|| {
                format!(
                    "holds {} but the manifest lists {}",
                    summarise(&found),
                    summarise(&expected)
                )
            })
        }
        Expect::Manifest { .. } => None,
    }
}

/// One summary per partition (a manifest may list a partition's ranges separately).
fn aggregate(parts: &[PartitionSummary]) -> Vec<PartitionSummary> {
    let mut by_id: std::collections::BTreeMap<&str, PartitionSummary> = std::collections::BTreeMap::new();
    for p in parts {
        by_id
            .entry(p.partition_id.as_str())
            .and_modify(|a| {
                a.records += p.records;
                a.first_sequence_number = a.first_sequence_number.min(p.first_sequence_number);
                a.last_sequence_number = a.last_sequence_number.max(p.last_sequence_number);
            })
            .or_insert_with(|| p.clone());
    }
    by_id.into_values().collect()
}

fn summarise(parts: &[PartitionSummary]) -> String {
    parts
        .iter()
        .map(|p| {
            format!(
                "partition {}: {} records {}..{}",
                p.partition_id, p.records, p.first_sequence_number, p.last_sequence_number
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn count_duplicates(class: Class, scan: &ObjectScan, dups: &mut UnitDups) {
    for (partition, runs) in &scan.partitions {
        let set = dups.sets.entry(partition.clone()).or_default();
        let repeated: u64 = runs.runs.iter().map(|(s, e)| set.insert(*s, *e)).sum();
        match class {
            Class::Sealed => dups.sealed += repeated,
            Class::Pending => dups.pending += repeated,
            Class::Other => {}
        }
    }
}

fn finish_unit(unit: &Unit, dups: UnitDups, report: &mut VerifyReport) {
    report.duplicates_unsealed += dups.pending;
    let Some(m) = &unit.manifest else { return };
    let declared = m
        .manifest
        .duplicates_found
        .saturating_sub(m.manifest.duplicates_removed);
    if dups.sealed > declared {
        report.findings.push(Finding::SealedDuplicates {
            database: unit.key.database.clone(),
            collection: unit.key.collection.clone(),
            hour: format_hour(unit.key.hour),
            manifest: m.path.clone(),
            duplicates: dups.sealed,
            declared,
        });
    }
}

/// `part-g<generation>-<index>.jsonl[.gz]`: a seal run's compacted object.
fn is_compaction_output(name: &str) -> bool {
    name.strip_prefix("part-g")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(generation, _)| !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()))
}
