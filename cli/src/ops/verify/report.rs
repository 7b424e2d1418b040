//! The result of `verify` and its human rendering.

use serde::Serialize;

use super::findings::{Finding, RemovedCopyNamed, Warning};

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
