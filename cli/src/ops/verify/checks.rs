//! The checks of `verify`: receipts against their counts, gaps, orphans, which objects
//! to read, and each object's content against its commit record.

use std::collections::HashMap;

use futures::{StreamExt, TryStreamExt};

use super::super::inventory::{Gap, Inventory, PartitionSummary, Unit, UnreceiptedObject};
use super::super::range::{format_hour, HourRange};
use super::super::scan::{self, ObjectScan, ScanError, SeqSet};
use super::super::{blocking, OpsError};
use super::findings::{Finding, RemovedCopyNamed, Warning, IN_FLIGHT_WINDOW};
use super::report::VerifyReport;
use hub2lake::lake::{Lake, LakeError};

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
pub(super) struct Task {
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

/// Receipts in range: their counts must add up.
pub(super) fn check_receipts(inv: &Inventory, range: &HourRange, report: &mut VerifyReport) {
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

pub(super) fn gap_finding(g: &Gap) -> Finding {
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
pub(super) fn unreceipted_warnings(u: &Unit) -> Vec<Warning> {
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
pub(super) fn orphans(inv: &Inventory, units: &[&Unit], range: &HourRange) -> (Vec<Finding>, Vec<Warning>) {
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
pub(super) fn plan_tasks(inv: &Inventory, units: &[&Unit], range: &HourRange, report: &mut VerifyReport) -> Vec<Task> {
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
fn removed_copy_named(u: &Unit, r: &super::super::inventory::RawObject) -> Option<RemovedCopyNamed> {
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
pub(super) async fn read_and_check(
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

/// `part-g<generation>-<index>.jsonl[.gz|.zst]`: a seal run's compacted object.
fn is_compaction_output(name: &str) -> bool {
    name.strip_prefix("part-g")
        .and_then(|rest| rest.split_once('-'))
        .is_some_and(|(generation, _)| !generation.is_empty() && generation.bytes().all(|b| b.is_ascii_digit()))
}
