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

mod checks;
mod findings;
mod report;

pub use findings::{Finding, RemovedCopyNamed, Warning, IN_FLIGHT_WINDOW};
pub use report::{Checked, VerifyReport};

use super::inventory::{Inventory, Unit};
use super::range::HourRange;
use super::OpsError;
use checks::{check_receipts, gap_finding, orphans, plan_tasks, read_and_check, unreceipted_warnings};
use hub2lake::lake::Lake;

/// What to verify.
#[derive(Debug, Clone)]
pub struct VerifyOptions {
    pub range: HourRange,
    /// Objects read at once.
    pub concurrency: usize,
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
