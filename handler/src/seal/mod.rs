//! The seal timer: proves hours complete from receipts, de-duplicates and compacts
//! them, and writes a `_manifest.json` per sealed hour.
//!
//! A run reads every receipt ([`plan`]), decides per unit (database, collection, hour)
//! whether it is done ([`completeness::readiness`]), and for each done unit, oldest
//! first and within a time budget ([`unit`]):
//!
//! 1. merges its raw objects (and a previous generation's objects, when late data
//!    re-opened it) into `part-g<generation>-<nnnnn>` objects, create-only ([`compact`]);
//! 2. writes `_manifest.json` — the commit point ([`manifest`]);
//! 3. deletes what the manifest superseded, and objects no receipt names whose events
//!    the receipts prove sealed (copies left by failed deliveries, [`unreceipted`]).
//!
//! A sealed unit's manifest is kept up to date in place (same generation, same
//! objects) when its gaps change or objects without receipt appear in its folder.
//!
//! A crash between any two steps leaves either the previous state (no new manifest:
//! the raw objects are all there, stray new objects are ignored and later replaced or
//! deleted) or a complete sealed hour whose cleanup the next run finishes. The lake is
//! the only state: nothing is remembered between runs.

pub mod compact;
pub mod completeness;
mod error;
mod folder;
pub mod manifest;
pub mod plan;
mod unit;
pub mod unreceipted;

pub use error::{FailPoint, SealError};
pub use plan::{Unit, UnitKey};

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};
use futures::{StreamExt, TryStreamExt};

use crate::config::Settings;
use crate::host::TimerInfo;
use crate::lake::layout::RECEIPTS_DIR;
use crate::lake::receipt::Receipt;
use crate::lake::{Lake, LakeError};
use completeness::Readiness;
use plan::LoadedReceipt;
use unit::UnitOutcome;

/// Knobs of one run beyond the settings (tests and future settings).
#[derive(Debug, Clone, Default)]
pub struct SealOptions {
    /// Stop starting new units after sealing or cleaning this many.
    pub max_units: Option<usize>,
    /// Crash simulation: fail the first unit that reaches this point.
    pub fail_at: Option<FailPoint>,
}

/// What a run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SealReport {
    /// Units sealed for the first time (generation 1).
    pub units_sealed: u64,
    /// Sealed units re-opened by late data and sealed again (generation > 1).
    pub units_resealed: u64,
    /// Sealed units whose cleanup an interrupted earlier run left unfinished.
    pub units_cleaned: u64,
    /// Sealed units whose manifest was rewritten in place (same generation and
    /// objects): gaps changed, objects without receipt found or removed, receipts of
    /// removed copies recorded.
    pub manifests_updated: u64,
    /// Units already sealed with nothing new.
    pub units_already_sealed: u64,
    /// Units not done yet (current hour, or a writer partition behind and grace not over).
    pub units_not_ready: u64,
    /// Units left alone because of a problem (see `warnings`).
    pub units_skipped: u64,
    /// Done units not examined because the run's budget was spent; the next run goes on.
    pub units_remaining: u64,
    pub receipts_read: u64,
    /// Gaps in all partitions' receipts (each is listed in the manifests beside it).
    pub gaps_found: u64,
    pub overlaps_found: u64,
    /// Copies of events found in units sealed by this run.
    pub duplicates_found: u64,
    /// Of those, copies removed by compaction.
    pub duplicates_removed: u64,
    /// Distinct records in the units sealed by this run.
    pub records_sealed: u64,
    pub objects_written: u64,
    pub objects_deleted: u64,
    /// Objects no receipt names that were deleted because every event they held is in
    /// the sealed objects (copies left by deliveries whose receipt failed).
    pub copies_removed: u64,
    /// Objects no receipt names left in sealed hours because some of their events are
    /// in no receipt (each is listed in its manifest's `unreceipted`).
    pub unreceipted_left: u64,
    pub past_due: bool,
    pub duration: Duration,
    pub warnings: Vec<String>,
    pub message: String,
}

impl SealReport {
    /// The lines for the invocation response's `Logs`: the summary, then warnings.
    pub fn log_lines(&self) -> Vec<String> {
        const MAX_WARNINGS: usize = 20;
        let mut lines = vec![self.message.clone()];
        lines.extend(self.warnings.iter().take(MAX_WARNINGS).cloned());
        if self.warnings.len() > MAX_WARNINGS {
            lines.push(format!("… and {} more warnings", self.warnings.len() - MAX_WARNINGS));
        }
        lines
    }

    fn summarise(&mut self) {
        self.message = format!(
            "hub2lake seal: {} hours sealed, {} re-sealed, {} cleaned up, {} already sealed, {} not ready, {} skipped, \
             {} remaining; {} records, {} duplicates removed ({} found), {} gaps and {} overlaps in receipts; \
             {} receipts read, {} objects written, {} deleted in {} ms{}",
            self.units_sealed,
            self.units_resealed,
            self.units_cleaned,
            self.units_already_sealed,
            self.units_not_ready,
            self.units_skipped,
            self.units_remaining,
            self.records_sealed,
            self.duplicates_removed,
            self.duplicates_found,
            self.gaps_found,
            self.overlaps_found,
            self.receipts_read,
            self.objects_written,
            self.objects_deleted,
            self.duration.as_millis(),
            if self.past_due { " (timer was past due)" } else { "" },
        );
        // Rare events: named only when they happened, so the usual line stays short.
        let extras = [
            (self.manifests_updated, "manifests updated in place"),
            (self.copies_removed, "copies without receipt removed"),
            (self.unreceipted_left, "objects without receipt left in sealed hours"),
        ];
        for (n, what) in extras.iter().filter(|(n, _)| *n > 0) {
            self.message.push_str(&format!("; {n} {what}"));
        }
    }
}

/// Runs the seal timer once, as of `now`.
pub async fn run(
    settings: &Settings,
    lake: &Lake,
    timer: &TimerInfo,
    now: DateTime<Utc>,
) -> Result<SealReport, SealError> {
    run_with(settings, lake, timer, now, &SealOptions::default()).await
}

/// [`run`] with extra options.
pub async fn run_with(
    settings: &Settings,
    lake: &Lake,
    timer: &TimerInfo,
    now: DateTime<Utc>,
    options: &SealOptions,
) -> Result<SealReport, SealError> {
    let started = Instant::now();
    let mut report = SealReport {
        past_due: timer.is_past_due,
        ..SealReport::default()
    };
    if timer.is_past_due {
        // A past-due run is an ordinary run: the lake says what is left to do.
        tracing::info!("seal timer is past due; running normally");
    }
    let Some(_guard) = RunGuard::acquire(lake.description()) else {
        report.message = "hub2lake seal: another seal run on this lake is in progress in this process; skipped".into();
        tracing::warn!("{}", report.message);
        return Ok(report);
    };

    let receipts = load_receipts(lake, settings.upload_concurrency, &mut report.warnings).await?;
    report.receipts_read = receipts.len() as u64;
    let plan = plan::build(&receipts, settings.time_source);
    drop(receipts);
    report.warnings.extend(plan.warnings.iter().cloned());
    report.gaps_found = plan.gaps as u64;
    report.overlaps_found = plan.overlaps as u64;

    let grace = TimeDelta::from_std(settings.seal_grace).unwrap_or(TimeDelta::MAX);
    let ctx = unit::Ctx {
        settings,
        lake,
        now,
        fail_at: options.fail_at,
    };
    let mut worked = 0usize;
    for unit in &plan.units {
        let readiness = completeness::readiness(
            unit.key.hour_end(),
            now,
            grace,
            &plan.writer_watermarks(unit),
            unit.last_write,
        );
        let reason = match readiness {
            Readiness::Ready(reason) => reason,
            Readiness::CurrentHour | Readiness::Waiting { .. } => {
                tracing::debug!(unit = %unit.key, ?readiness, "not ready");
                report.units_not_ready += 1;
                continue;
            }
        };
        if let Some(problem) = &unit.problem {
            report.units_skipped += 1;
            warn(&mut report, format!("{} not sealed: {problem}", unit.key));
            continue;
        }
        let out_of_time = started.elapsed() >= settings.seal_max_run;
        if out_of_time || options.max_units.is_some_and(|m| worked >= m) {
            report.units_remaining += 1;
            continue;
        }
        match unit::process(&ctx, unit, reason).await {
            Ok(outcome) => {
                if outcome.did_work() {
                    worked += 1;
                }
                record(&mut report, unit, outcome);
            }
            Err(SealError::Corrupt { path, reason }) => {
                report.units_skipped += 1;
                warn(&mut report, format!("{} not sealed: {path}: {reason}", unit.key));
            }
            Err(e) => {
                tracing::error!(unit = %unit.key, error = %e, retryable = e.is_retryable(), "seal run stopped");
                return Err(e);
            }
        }
    }
    report.duration = started.elapsed();
    report.summarise();
    tracing::info!(
        sealed = report.units_sealed,
        resealed = report.units_resealed,
        cleaned = report.units_cleaned,
        not_ready = report.units_not_ready,
        skipped = report.units_skipped,
        remaining = report.units_remaining,
        gaps = report.gaps_found,
        duplicates_removed = report.duplicates_removed,
        duration_ms = report.duration.as_millis() as u64,
        past_due = report.past_due,
        "{}",
        report.message
    );
    Ok(report)
}

fn warn(report: &mut SealReport, message: String) {
    tracing::warn!("{message}");
    report.warnings.push(message);
}

fn record(report: &mut SealReport, unit: &plan::Unit, outcome: UnitOutcome) {
    match outcome {
        UnitOutcome::AlreadySealed => report.units_already_sealed += 1,
        UnitOutcome::Maintained(m) => {
            if m.cleaned_up {
                report.units_cleaned += 1;
            }
            if m.manifest_updated {
                report.manifests_updated += 1;
            }
            if !m.cleaned_up && !m.manifest_updated && m.deleted == 0 {
                report.units_already_sealed += 1;
            }
            report.objects_deleted += m.deleted;
            if m.gaps_changed {
                if unit.gaps.is_empty() {
                    tracing::info!(unit = %unit.key, "no gap touches this sealed hour any more; manifest updated (complete)");
                } else {
                    warn_gaps(report, unit, "manifest updated");
                }
            }
            record_folder(report, unit, &m.folder);
        }
        UnitOutcome::Sealed(s) => {
            if s.generation > 1 {
                report.units_resealed += 1;
            } else {
                report.units_sealed += 1;
            }
            report.records_sealed += s.records;
            report.duplicates_found += s.duplicates_found;
            report.duplicates_removed += s.duplicates_removed;
            report.objects_written += s.objects_written;
            report.objects_deleted += s.deleted;
            warn_gaps(report, unit, "sealed");
            record_folder(report, unit, &s.folder);
        }
    }
}

fn warn_gaps(report: &mut SealReport, unit: &plan::Unit, what: &str) {
    for g in &unit.gaps {
        warn(
            report,
            format!(
                "{} {what} incomplete: partition {}/{}/{} is missing sequence numbers {}..{} ({} events)",
                unit.key, g.eventhub, g.consumer_group, g.partition_id, g.first_missing, g.last_missing, g.missing
            ),
        );
    }
}

/// Counts what the unit's folder held besides its objects; warns once per object
/// without receipt (when it is first listed in the manifest), since an operator may
/// have to act on it.
fn record_folder(report: &mut SealReport, unit: &plan::Unit, folder: &unit::FolderReport) {
    report.copies_removed += folder.copies_removed;
    report.unreceipted_left += folder.unreceipted_left;
    for o in &folder.new_unreceipted {
        let what = match &o.problem {
            Some(problem) => format!("is not hub2lake records ({problem})"),
            None => {
                let runs: Vec<String> = o
                    .uncovered
                    .iter()
                    .take(3)
                    .map(|r| {
                        format!(
                            "partition {} sequence numbers {}..{} ({} events)",
                            r.partition_id, r.first_sequence_number, r.last_sequence_number, r.records
                        )
                    })
                    .collect();
                let more = if o.uncovered.len() > 3 { ", …" } else { "" };
                format!("holds events no receipt covers: {}{more}", runs.join(", "))
            }
        };
        warn(
            report,
            format!(
                "{}: {} is in the sealed hour's folder but no receipt names it, and it {what}; left in place and \
                 listed in the manifest's `unreceipted` (a delivery still in flight gets its receipt and the next run \
                 seals it; otherwise see docs/recovery.md)",
                unit.key, o.path
            ),
        );
    }
}

/// Lists and reads every receipt. Unreadable ones are skipped with a warning (their
/// range then shows up as a gap, which is what they are for sealing).
///
/// This reads all receipts on every run: fine for days to weeks of receipts. To bound
/// it later, keep a per-partition checkpoint object (e.g. `_receipts/<hub>/<cg>/<p>/
/// _sealed.json` holding the highest sequence number whose units are all sealed and
/// cleaned) and read only receipts past it, plus the last one before it for tiling.
async fn load_receipts(
    lake: &Lake,
    concurrency: usize,
    warnings: &mut Vec<String>,
) -> Result<Vec<LoadedReceipt>, SealError> {
    let listed = lake.list(RECEIPTS_DIR).await?;
    let paths: Vec<String> = listed
        .into_iter()
        .map(|o| o.path)
        .filter(|p| p.ends_with(".json"))
        .collect();
    let fetched: Vec<(String, bytes::Bytes)> = futures::stream::iter(paths.into_iter().map(|path| async move {
        let bytes = lake.get(&path).await?;
        Ok::<_, LakeError>((path, bytes))
    }))
    .buffered(concurrency.max(1))
    .try_collect()
    .await?;
    let mut receipts = Vec::with_capacity(fetched.len());
    for (path, bytes) in fetched {
        match serde_json::from_slice::<Receipt>(&bytes) {
            Ok(receipt) => receipts.push(LoadedReceipt { path, receipt }),
            Err(e) => {
                let message = format!("receipt {path} does not parse ({e}); ignored");
                tracing::warn!("{message}");
                warnings.push(message);
            }
        }
    }
    Ok(receipts)
}

/// At most one run per lake at a time in this process: two overlapping timer
/// invocations would otherwise compact the same hour twice and delete each other's
/// output. (Across instances, the Functions host runs a timer as a singleton.)
struct RunGuard(String);

static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

impl RunGuard {
    fn acquire(lake: &str) -> Option<Self> {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        running.insert(lake.to_string()).then(|| Self(lake.to_string()))
    }
}

impl Drop for RunGuard {
    fn drop(&mut self) {
        let mut running = RUNNING.lock().unwrap_or_else(|p| p.into_inner());
        running.remove(&self.0);
    }
}
