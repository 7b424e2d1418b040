//! `hub2lake get`: a range of the lake downloaded, optionally decompressed and merged.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use super::lake_args::{LakeArgs, RangeArgs, RouteArgs, EXIT_CODES, LAKE_HELP, RANGE_HELP};
use super::terminal::{draw_target, print_json};
use crate::ops::get::{self, GetOptions, MergeTarget};
use crate::ops::merge::DedupBy;
use crate::ops::{exit, OpsError};

pub(super) fn help() -> String {
    format!(
        "Examples:\n  \
        hub2lake get --lake az://lake --from 2025-01-15 --to 2025-01-15 --out ./day\n  \
        hub2lake get --from 2025-01-15 --to 2025-01-15 --db shop --collection orders --out ./day --decompress\n  \
        hub2lake get --from 2025-01-15 --to 2025-01-15 --out ./day --merge ./day.jsonl --dedup-by event_id\n  \
        hub2lake get --from 2025-01-15 --sealed-only --out ./sealed\n\n\
        Run it again after an interruption: complete files are skipped (same size, or with --decompress a \
        .<name>.hub2lake marker), partial ones fetched again. --merge writes one JSON Lines file sorted by \
        (partition_id, sequence_number), each event once (by partition + sequence number, or by event_id).\n\
        --out is the destination folder (--to is always the end of the time range).\n\n\
        {LAKE_HELP}\n{RANGE_HELP}\n\n{EXIT_CODES}"
    )
}

#[derive(Debug, Clone, Args)]
pub struct GetArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Destination folder (created); the lake's folder structure is kept below it.
    #[arg(long, visible_alias = "to-dir", value_name = "DIR")]
    pub out: PathBuf,
    /// Write .jsonl instead of .jsonl.gz / .jsonl.zst.
    #[arg(long)]
    pub decompress: bool,
    /// Only sealed hours: their _manifest.json and the objects it lists.
    #[arg(long)]
    pub sealed_only: bool,
    /// Also the dead letters (_deadletter/) of the hours in range.
    #[arg(long)]
    pub dead_letters: bool,
    /// Also write one JSON Lines file, sorted by (partition, sequence number), each event once.
    #[arg(long, value_name = "FILE")]
    pub merge: Option<PathBuf>,
    /// What makes two records the same event in --merge.
    #[arg(long, value_enum, default_value_t = DedupBy::Seq, requires = "merge")]
    pub dedup_by: DedupBy,
    /// MiB of records sorted in memory before spilling sorted runs next to the --merge file.
    #[arg(long, value_name = "MIB", default_value_t = 256, requires = "merge")]
    pub merge_memory_mb: usize,
    /// Machine-readable summary.
    #[arg(long)]
    pub json: bool,
}

pub(super) async fn run(args: GetArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let (_, lake, inv) = args.lake.load().await?;
    let opts = GetOptions {
        range,
        database: args.route.db.clone(),
        collection: args.route.collection.clone(),
        out_dir: args.out.clone(),
        decompress: args.decompress,
        sealed_only: args.sealed_only,
        dead_letters: args.dead_letters,
        concurrency: usize::from(args.lake.concurrency),
        merge: args.merge.clone().map(|path| MergeTarget {
            path,
            dedup_by: args.dedup_by,
            memory_budget: args.merge_memory_mb.max(1) << 20,
        }),
    };
    let bar = DownloadBar::new();
    let report = get::get(&lake, &inv, &opts, &bar).await?;
    if args.json {
        print_json(&report)?;
    } else {
        print!("{}", report.render());
    }
    Ok(if report.vanished.is_empty() {
        exit::OK
    } else {
        exit::FINDINGS
    })
}

/// Bytes, objects and ETA of `get`.
struct DownloadBar {
    bar: ProgressBar,
    objects: AtomicU64,
    total_objects: AtomicU64,
}

impl DownloadBar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(Some(0), draw_target());
        if let Ok(style) =
            ProgressStyle::with_template("{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}")
        {
            bar.set_style(style);
        }
        Self {
            bar,
            objects: Default::default(),
            total_objects: Default::default(),
        }
    }
}

impl get::Progress for DownloadBar {
    fn begin(&self, objects: u64, bytes: u64) {
        self.total_objects.store(objects, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{objects} objects"));
    }

    fn fetched(&self, _path: &str, bytes: u64) {
        let done = self.objects.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.inc(bytes);
        self.bar
            .set_message(format!("{done}/{} objects", self.total_objects.load(Ordering::Relaxed)));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
