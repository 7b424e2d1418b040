//! `hub2lake replay`: the recorded original events of a range re-published to an Event
//! Hub, to files, or printed as a dry run.

use std::path::PathBuf;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::eventhub_args::EventHubArgs;
use super::lake_args::{env_lookup, LakeArgs, RangeArgs, RouteArgs, EXIT_CODES, LAKE_HELP, RANGE_HELP};
use super::terminal::{draw_target, print_json};
use crate::ops::merge::SortOptions;
use crate::ops::replay::{self, DryRunSink, PartitionMode, ReplayOptions};
use crate::ops::{exit, OpsError};
use hub2lake::eventhub::{EventHubSink, FileSink};

pub(super) fn help() -> String {
    format!(
        "Examples:\n  \
        hub2lake replay --from 2025-01-15T08 --to 2025-01-15T10 --dry-run\n  \
        hub2lake replay --from 2025-01-15T08 --to 2025-01-15T10 --to-file ./replay\n  \
        HUB2LAKE_REPLAY_CONNECTION_STRING='Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=…;EntityPath=refeed' \\\n    \
        hub2lake replay --from 2025-01-15T08 --to 2025-01-15T10 --to-eventhub --position ./replay.pos\n  \
        hub2lake replay --from 2025-01-15 --to-eventhub --namespace contoso --eventhub refeed --websockets --position ./pos\n\n\
        Bodies are rebuilt from raw_event (JSON as compact text, text bodies as the string); partition key and \
        application properties are sent as recorded. --position FILE saves, per source partition, the last \
        sequence number sent; a new run with the same file continues after it (an interrupted window of batches \
        is sent again: at-least-once). --to-file DIR appends what would be sent to DIR/<partition>.jsonl.\n\n\
        {LAKE_HELP}\n{RANGE_HELP}\n\n{EXIT_CODES}"
    )
}

#[derive(Debug, Clone, Args)]
#[command(group = clap::ArgGroup::new("destination").required(true).multiple(true).args(["to_eventhub", "to_file", "dry_run"]))]
pub struct ReplayArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Send to an Event Hub: --connection-string, or --namespace with an Azure identity.
    #[arg(long, conflicts_with = "to_file")]
    pub to_eventhub: bool,
    /// Write what would be sent to DIR/<source partition>.jsonl (appended).
    #[arg(long, value_name = "DIR")]
    pub to_file: Option<PathBuf>,
    /// Print the batches that would be sent; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub hub: EventHubArgs,
    /// Where events go: auto (key if recorded, else the source partition id), same (source
    /// partition id), any (key if recorded, else any partition).
    #[arg(long, value_enum, default_value_t = PartitionMode::Auto)]
    pub partition_mode: PartitionMode,
    /// Upper bound of one batch in bytes (the service allows 1 MB on Basic/Standard).
    #[arg(long, value_name = "BYTES", default_value_t = ReplayOptions::DEFAULT_MAX_BATCH_BYTES)]
    pub max_batch_bytes: usize,
    /// Position file: resume after what an earlier run with this file sent.
    #[arg(long, value_name = "FILE")]
    pub position: Option<PathBuf>,
    /// Only sealed hours.
    #[arg(long)]
    pub sealed_only: bool,
    /// Folder for sorted runs when the range does not fit in memory (default: the temp dir).
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Machine-readable summary.
    #[arg(long)]
    pub json: bool,
}

impl ReplayArgs {
    fn options(&self, range: crate::ops::range::HourRange) -> ReplayOptions {
        ReplayOptions {
            range,
            database: self.route.db.clone(),
            collection: self.route.collection.clone(),
            sealed_only: self.sealed_only,
            partition_mode: self.partition_mode,
            max_batch_bytes: self.max_batch_bytes,
            window_targets: ReplayOptions::DEFAULT_WINDOW_TARGETS,
            position: self.position.clone(),
            sort: SortOptions {
                memory_budget: SortOptions::DEFAULT_MEMORY_BUDGET,
                temp_dir: self.work_dir.clone().unwrap_or_else(std::env::temp_dir),
            },
            concurrency: usize::from(self.lake.concurrency),
        }
    }
}

pub(super) async fn run(args: ReplayArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    // The destination is validated before the lake is read.
    let destination = if args.to_eventhub {
        Some(args.hub.destination("--to-eventhub")?)
    } else {
        None
    };
    let (_, lake, inv) = args.lake.load().await?;
    let opts = args.options(range);
    let bar = ReplayBar::new();
    let report = if args.dry_run {
        if let Some(d) = &destination {
            println!("dry run for {} (nothing is sent)", d.describe());
        }
        let sink = DryRunSink::new(Box::new(std::io::stdout()));
        replay::replay(&lake, &inv, &opts, &sink, &bar).await?
    } else if let Some(dir) = &args.to_file {
        let sink = FileSink::new(dir)?;
        replay::replay(&lake, &inv, &opts, &sink, &bar).await?
    } else {
        let d = destination.ok_or_else(|| OpsError::Usage("--to-eventhub needs a destination".into()))?;
        let sink = EventHubSink::connect(
            &d,
            args.hub.websockets,
            args.max_batch_bytes as u64,
            "replay",
            &env_lookup,
        )
        .await?;
        let report = replay::replay(&lake, &inv, &opts, &sink, &bar).await;
        let closed = sink.close().await;
        let report = report?;
        closed?;
        report
    };
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    Ok(exit::OK)
}

/// Events and ETA of `replay`.
struct ReplayBar {
    bar: ProgressBar,
}

impl ReplayBar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), draw_target());
        if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} events ({per_sec}, ETA {eta})") {
            bar.set_style(style);
        }
        Self { bar }
    }
}

impl replay::Progress for ReplayBar {
    fn begin(&self, events: u64) {
        self.bar.set_length(events);
    }

    fn advance(&self, events: u64) {
        self.bar.inc(events);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
