//! `hub2lake verify`: the lake checked against its receipts and manifests.

use clap::Args;

use super::lake_args::{LakeArgs, RangeArgs, EXIT_CODES, LAKE_HELP, RANGE_HELP};
use super::terminal::{print_json, spinner};
use crate::ops::verify::{self, VerifyOptions};
use crate::ops::{exit, OpsError};

pub(super) fn help() -> String {
    format!(
        "Examples:\n  \
        hub2lake verify --lake file:///data/lake --from 2025-01-15 --to 2025-01-15\n  \
        hub2lake verify --from now-24h --json > verify.json || echo \"lake has problems\"\n\n\
        Findings (each fails the check): gap (partition, first..last missing sequence number, the hours around it), \
        missing object, size or record count different from the receipt/manifest, content outside the recorded \
        partition/range, corrupt gzip/zstd or JSON (with the line), orphan object, unreadable receipt or manifest, \
        duplicates in a sealed hour beyond what its manifest declares. Duplicates in unsealed hours (re-deliveries) \
        are counted, not failed.\n\
        Warnings (printed as WARN, exit code stays 0): an object no receipt names that the seal kept in a sealed \
        hour and lists in its manifest's `unreceipted`, with the sequence numbers only it holds (runbook: \
        docs/recovery.md, \"Objects without a receipt in a sealed hour\"); a data object no receipt names yet, \
        written less than 15 minutes before the listing (a delivery in flight: objects first, receipt last; older, \
        it is an orphan). A receipt naming an object the seal \
        removed as a copy (the manifest's `removed_copies`, same SHA-256) is expected, not a missing object.\n\n\
        {LAKE_HELP}\n{RANGE_HELP}\n\n{EXIT_CODES}"
    )
}

#[derive(Debug, Clone, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    /// Machine-readable report.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(args: VerifyArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let (_, lake, inv) = args.lake.load().await?;
    let spinner = spinner("reading every object in range");
    let opts = VerifyOptions {
        range,
        concurrency: usize::from(args.lake.concurrency),
    };
    let report = verify::verify(&lake, &inv, &opts).await;
    spinner.finish_and_clear();
    let report = report?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    Ok(if report.clean { exit::OK } else { exit::FINDINGS })
}
