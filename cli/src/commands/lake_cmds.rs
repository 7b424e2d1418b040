//! `hub2lake ls | verify | get | replay`: what the lake holds, whether it is whole,
//! getting it out, and re-publishing it. Thin over [`crate::ops`].

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::Utc;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::credential_arg::CredentialArg;
use super::destination::{DestinationError, DestinationFlags};
use crate::ops::get::{self, GetOptions, MergeTarget};
use crate::ops::inventory::Inventory;
use crate::ops::merge::{DedupBy, SortOptions};
use crate::ops::range::HourRange;
use crate::ops::replay::{self, DryRunSink, PartitionMode, ReplayOptions};
use crate::ops::verify::{self, VerifyOptions};
use crate::ops::{exit, ls, open_lake, OpsError};
use hub2lake::config::Settings;
use hub2lake::eventhub::{CredentialKind, Destination, EventHubSink, FileSink};
use hub2lake::lake::Lake;
use hub2lake::telemetry::error_chain;

const EXIT_CODES: &str = "Exit codes:\n  \
    0  success (verify: no problems; warnings are printed but do not fail it)\n  \
    1  verify found problems; get finished but some objects vanished mid-run\n  \
    2  usage or configuration: bad flags, range, lake URL, settings, credentials refused\n  \
    3  storage, network or local I/O failed part-way (get and replay resume when run again)";

const LAKE_HELP: &str = "The lake is --lake or HUB2LAKE_LAKE_URL (file:///abs/dir, az://<container>[/path], \
    https://<account>.blob.core.windows.net/<container>[/path], abfss://<container>@<account>.dfs.core.windows.net[/path]); \
    credentials follow object_store's AZURE_* variables, exactly as for the handler; other HUB2LAKE_* settings \
    (HUB2LAKE_PATH_TEMPLATE) are read too.";

const RANGE_HELP: &str = "Ranges are whole UTC hours: --from T starts with the hour containing T; --to YYYY-MM-DD \
    ends with that day, --to YYYY-MM-DDTHH with that hour, --to <RFC 3339 instant> just before it.";

/// The lake operator commands; the lead flattens them into the `hub2lake` CLI.
#[derive(Debug, Subcommand)]
pub enum LakeCommand {
    /// List the hours of the lake: per (hour, database, collection) sealed or not, objects,
    /// records, bytes, partitions and gaps.
    #[command(after_help = ls_help())]
    Ls(LsArgs),
    /// Check the lake against its receipts and manifests: missing, orphan and corrupt objects,
    /// gaps in sequence numbers, duplicates. Exit code 0 only when clean.
    #[command(after_help = verify_help())]
    Verify(VerifyArgs),
    /// Download a range of the lake (folder structure kept, concurrent, resumable), optionally
    /// decompressed and merged into one de-duplicated JSON Lines file.
    #[command(after_help = get_help())]
    Get(GetArgs),
    /// Re-publish the recorded original events of a range to an Event Hub (or to files, or a dry
    /// run), in order per partition, in batches under the size limit, resumably.
    #[command(after_help = replay_help())]
    Replay(Box<ReplayArgs>),
}

fn ls_help() -> String {
    format!(
        "Examples:\n  \
        hub2lake ls --lake file:///data/lake --from 2025-01-15\n  \
        hub2lake ls --lake abfss://lake@contoso.dfs.core.windows.net --from now-6h --db shop --collection orders\n  \
        HUB2LAKE_LAKE_URL=az://lake hub2lake ls --from 2025-01-15T08 --to 2025-01-15T12 --json | jq '.units[]'\n\n\
        {LAKE_HELP}\n{RANGE_HELP}\n\n{EXIT_CODES}"
    )
}

fn verify_help() -> String {
    format!(
        "Examples:\n  \
        hub2lake verify --lake file:///data/lake --from 2025-01-15 --to 2025-01-15\n  \
        hub2lake verify --from now-24h --json > verify.json || echo \"lake has problems\"\n\n\
        Findings (each fails the check): gap (partition, first..last missing sequence number, the hours around it), \
        missing object, size or record count different from the receipt/manifest, content outside the recorded \
        partition/range, corrupt gzip or JSON (with the line), orphan object, unreadable receipt or manifest, \
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

fn get_help() -> String {
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

fn replay_help() -> String {
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

/// Where the lake is.
#[derive(Debug, Clone, Args)]
pub struct LakeArgs {
    /// The lake URL (default: $HUB2LAKE_LAKE_URL).
    #[arg(long, value_name = "URL", env = "HUB2LAKE_LAKE_URL")]
    pub lake: Option<String>,
    /// Objects read at once.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: u16,
}

/// The time range.
#[derive(Debug, Clone, Args)]
pub struct RangeArgs {
    /// First hour (UTC): YYYY-MM-DD, YYYY-MM-DDTHH, RFC 3339, now, now-<N>h, now-<N>d.
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Last hour (UTC), inclusive for days and hours, exclusive for instants.
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

impl RangeArgs {
    fn parse(&self) -> Result<HourRange, OpsError> {
        Ok(HourRange::parse(self.from.as_deref(), self.to.as_deref(), Utc::now())?)
    }
}

/// A database / collection filter.
#[derive(Debug, Clone, Args)]
pub struct RouteArgs {
    /// Only this database (as in the path: sanitised).
    #[arg(long, value_name = "NAME")]
    pub db: Option<String>,
    /// Only this collection (as in the path: sanitised).
    #[arg(long, value_name = "NAME")]
    pub collection: Option<String>,
}

#[derive(Debug, Clone, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub lake: LakeArgs,
    #[command(flatten)]
    pub range: RangeArgs,
    #[command(flatten)]
    pub route: RouteArgs,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
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
    /// Write .jsonl instead of .jsonl.gz.
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
    /// Event Hubs connection string (Endpoint, SharedAccessKeyName, SharedAccessKey[, EntityPath]).
    #[arg(
        long,
        value_name = "CS",
        env = "HUB2LAKE_REPLAY_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// Event Hubs namespace (contoso or contoso.servicebus.windows.net), with an Azure identity.
    #[arg(long, value_name = "NS", conflicts_with = "connection_string")]
    pub namespace: Option<String>,
    /// Event Hub name (required unless the connection string has EntityPath).
    #[arg(long, value_name = "NAME")]
    pub eventhub: Option<String>,
    /// Identity for --namespace.
    #[arg(long, value_enum, default_value_t = CredentialArg(CredentialKind::Auto))]
    pub credential: CredentialArg,
    /// AMQP over WebSockets (port 443) instead of AMQP (port 5671).
    #[arg(long)]
    pub websockets: bool,
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

/// Runs a lake command; the exit code says how it went (see `--help`).
pub fn run(cmd: LakeCommand) -> anyhow::Result<ExitCode> {
    init_logging();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        match cmd {
            LakeCommand::Ls(args) => run_ls(args).await,
            LakeCommand::Verify(args) => run_verify(args).await,
            LakeCommand::Get(args) => run_get(args).await,
            LakeCommand::Replay(args) => run_replay(*args).await,
        }
    });
    Ok(match outcome {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("hub2lake: error: {}", error_chain(&e));
            ExitCode::from(e.exit_code())
        }
    })
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

fn env_lookup(key: &str) -> Option<String> {
    std::env::var(key).ok()
}

/// Opens the lake and reads its inventory (with a spinner on a terminal).
async fn load(args: &LakeArgs) -> Result<(Settings, Lake, Inventory), OpsError> {
    let (settings, lake) = open_lake(args.lake.as_deref(), env_lookup)?;
    let spinner = spinner(&format!("reading receipts and manifests of {}", lake.description()));
    let inv = Inventory::load(&lake, settings.path_template.as_str(), usize::from(args.concurrency)).await;
    spinner.finish_and_clear();
    Ok((settings, lake, inv?))
}

fn print_json(value: &impl serde::Serialize) -> Result<(), OpsError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| OpsError::Internal(e.to_string()))?;
    println!("{text}");
    Ok(())
}

async fn run_ls(args: LsArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let (_, lake, inv) = load(&args.lake).await?;
    let listing = ls::listing(
        &inv,
        lake.description(),
        &range,
        args.route.db.as_deref(),
        args.route.collection.as_deref(),
    );
    if args.json {
        print_json(&listing)?;
    } else {
        print!("{}", ls::render_table(&listing));
    }
    Ok(exit::OK)
}

async fn run_verify(args: VerifyArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let (_, lake, inv) = load(&args.lake).await?;
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

async fn run_get(args: GetArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let (_, lake, inv) = load(&args.lake).await?;
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

async fn run_replay(args: ReplayArgs) -> Result<u8, OpsError> {
    let range = args.range.parse()?;
    let destination = destination(&args)?;
    let (_, lake, inv) = load(&args.lake).await?;
    let opts = ReplayOptions {
        range,
        database: args.route.db.clone(),
        collection: args.route.collection.clone(),
        sealed_only: args.sealed_only,
        partition_mode: args.partition_mode,
        max_batch_bytes: args.max_batch_bytes,
        window_targets: ReplayOptions::DEFAULT_WINDOW_TARGETS,
        position: args.position.clone(),
        sort: SortOptions {
            memory_budget: SortOptions::DEFAULT_MEMORY_BUDGET,
            temp_dir: args.work_dir.clone().unwrap_or_else(std::env::temp_dir),
        },
        concurrency: usize::from(args.lake.concurrency),
    };
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
        let sink =
            EventHubSink::connect(&d, args.websockets, args.max_batch_bytes as u64, "replay", &env_lookup).await?;
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

/// The Event Hubs destination of `--to-eventhub`, validated before the lake is read.
fn destination(args: &ReplayArgs) -> Result<Option<Destination>, OpsError> {
    if !args.to_eventhub {
        return Ok(None);
    }
    let flags = DestinationFlags {
        connection_string: args.connection_string.as_deref(),
        namespace: args.namespace.as_deref(),
        eventhub: args.eventhub.as_deref(),
        credential: args.credential.0,
        connection_string_env: "HUB2LAKE_REPLAY_CONNECTION_STRING",
    };
    match super::destination::destination(flags) {
        Ok(d) => Ok(Some(d)),
        Err(DestinationError::Usage(m)) => Err(OpsError::Usage(m)),
        Err(DestinationError::Sink(e)) => Err(e.into()),
    }
}

/// Progress output only when a person watches: stdout is a terminal.
fn draw_target() -> ProgressDrawTarget {
    if std::io::stdout().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    }
}

fn spinner(message: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, draw_target());
    bar.set_message(message.to_string());
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Bytes, objects and ETA of `get`.
struct DownloadBar {
    bar: ProgressBar,
    objects: std::sync::atomic::AtomicU64,
    total_objects: std::sync::atomic::AtomicU64,
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
        use std::sync::atomic::Ordering;
        self.total_objects.store(objects, Ordering::Relaxed);
        self.bar.set_length(bytes);
        self.bar.set_message(format!("0/{objects} objects"));
    }

    fn fetched(&self, _path: &str, bytes: u64) {
        use std::sync::atomic::Ordering;
        let done = self.objects.fetch_add(1, Ordering::Relaxed) + 1;
        self.bar.inc(bytes);
        self.bar
            .set_message(format!("{done}/{} objects", self.total_objects.load(Ordering::Relaxed)));
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: LakeCommand,
    }

    #[test]
    fn the_commands_parse() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let cli = Cli::try_parse_from([
            "x",
            "get",
            "--from",
            "2025-01-15",
            "--to",
            "2025-01-15",
            "--to-dir",
            "d",
        ])
        .unwrap();
        assert!(matches!(cli.cmd, LakeCommand::Get(ref g) if g.out == std::path::Path::new("d")));
        let e = Cli::try_parse_from(["x", "replay", "--from", "2025-01-15"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let e = Cli::try_parse_from(["x", "get", "--out", "d", "--dedup-by", "event_id"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        assert!(Cli::try_parse_from(["x", "replay", "--dry-run", "--to-eventhub", "--namespace", "n"]).is_ok());
        assert!(Cli::try_parse_from(["x", "replay", "--to-file", "d", "--to-eventhub"]).is_err());
    }
}
