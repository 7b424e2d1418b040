//! `hub2lake demo`: a few thousand change events through the real handler into a local
//! lake, in seconds, explained for a newcomer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use hub2lake::config::DEFAULT_SEAL_SCHEDULE;

use super::simulate::{self, SimulateArgs};

/// Marks a lake folder as made by the demo, so a later demo may clear it.
pub const DEMO_MARKER: &str = ".hub2lake-demo";

#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Where the local lake goes (cleared first only if an earlier demo made it).
    #[arg(long, value_name = "DIR", default_value = "lake")]
    pub lake: PathBuf,
    /// The handler executable [default: `handler` next to this program].
    #[arg(long, value_name = "PATH")]
    pub handler: Option<PathBuf>,
    /// Change events in total.
    #[arg(long, default_value_t = 4000)]
    pub events: u64,
    /// Event Hub partitions.
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Seed of the generated events.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Crash the handler (SIGKILL) while this batch is in flight, e.g. 1:0, to watch the
    /// restart and re-delivery (repeatable).
    #[arg(long, value_name = "PARTITION:BATCH")]
    pub kill_at: Vec<String>,
    /// No progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// How the lake's objects are compressed (HUB2LAKE_COMPRESSION): gzip (.jsonl.gz) or
    /// zstd (.jsonl.zst).
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd"])]
    pub compression: String,
}

pub fn run(args: &DemoArgs) -> anyhow::Result<ExitCode> {
    // Check the handler before touching the lake folder.
    simulate::handler_path(args.handler.as_deref())?;
    let lake = std::path::absolute(&args.lake).with_context(|| format!("bad --lake {}", args.lake.display()))?;
    prepare_lake(&lake)?;

    let mut set = vec![
        "EVENTHUB_NAME=mongo-changes".to_string(),
        "EVENTHUB_CONSUMER_GROUP=hub2lake".to_string(),
        "FUNCTIONS_WORKER_RUNTIME=custom".to_string(),
        format!("HUB2LAKE_COMPRESSION={}", args.compression),
    ];
    // The demo's app settings name no schedule; give the seal timer the handler's default.
    if std::env::var_os("HUB2LAKE_SEAL_SCHEDULE").is_none() {
        set.push(format!("HUB2LAKE_SEAL_SCHEDULE={DEFAULT_SEAL_SCHEDULE}"));
    }
    let sim = SimulateArgs {
        handler: args.handler.clone(),
        app: PathBuf::from("."),
        host_json: None,
        settings: None,
        set,
        lake: Some(lake.display().to_string()),
        partitions: args.partitions,
        events: args.events,
        event_size: 700,
        seed: args.seed,
        input: None,
        start: None,
        span: Duration::from_secs(2 * 3600),
        batch_size: None,
        checkpoint_frequency: None,
        no_retry: false,
        time_scale: 0.001,
        seal_at_end: true,
        no_seal_schedule: false,
        kill_at: args.kill_at.clone(),
        handler_log: None,
        summary_json: None,
        no_progress: args.no_progress,
    };
    let prepared = simulate::prepare(&sim, true)?;

    println!("hub2lake demo");
    println!("=============");
    println!("The Azure Functions host is simulated here; the handler is the real one. The simulator");
    println!("plays Event Hubs and the host: it starts `handler` on a free port, waits for it to answer");
    println!("GET /, POSTs batches of MongoDB change events to /ingest exactly as the host does (retrying");
    println!("and checkpointing like it), and fires the seal timer (/seal).\n");
    simulate::print_plan(&prepared);

    let summary = simulate::execute(prepared.config, !args.no_progress)?;
    println!("\nWhat happened");
    println!("-------------");
    println!("{summary}");
    print_next_steps(&lake, &summary, &args.compression);
    Ok(ExitCode::SUCCESS)
}

/// Creates the lake folder, or clears one an earlier demo made; refuses anything else.
fn prepare_lake(lake: &Path) -> anyhow::Result<()> {
    if lake.exists() {
        if !lake.is_dir() {
            bail!("{} exists and is not a folder; pass --lake DIR", lake.display());
        }
        let empty = std::fs::read_dir(lake)
            .with_context(|| format!("cannot read {}", lake.display()))?
            .next()
            .is_none();
        if !empty {
            if !lake.join(DEMO_MARKER).is_file() {
                bail!(
                    "{} is not empty and was not created by `hub2lake demo` (no {DEMO_MARKER} marker); \
                     pass --lake DIR with a new or empty folder",
                    lake.display()
                );
            }
            std::fs::remove_dir_all(lake)
                .with_context(|| format!("cannot clear the previous demo lake {}", lake.display()))?;
        }
    }
    std::fs::create_dir_all(lake).with_context(|| format!("cannot create {}", lake.display()))?;
    std::fs::write(
        lake.join(DEMO_MARKER),
        "This folder was created by `hub2lake demo`; the next demo run clears it.\n",
    )
    .with_context(|| format!("cannot write the demo marker in {}", lake.display()))?;
    Ok(())
}

/// The lake path as the user would type it: relative when below the current folder.
fn shown(path: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| path.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| path.to_path_buf())
        .display()
        .to_string()
}

fn print_next_steps(lake: &Path, summary: &crate::simulator::SimulationSummary, compression: &str) {
    let root = shown(lake);
    let (extension, cat, duckdb_option) = match compression {
        "zstd" => ("jsonl.zst", "zstdcat", ", compression='zstd'"),
        _ => ("jsonl.gz", "zcat", ""),
    };
    println!("What to open next");
    println!("-----------------");
    let dirs = summary
        .lake
        .as_ref()
        .map(|l| l.directories.as_slice())
        .unwrap_or_default();
    let data_dir = dirs
        .iter()
        .find(|d| d.path.starts_with("shop/orders/"))
        .or_else(|| dirs.iter().find(|d| !d.path.starts_with('_') && !d.names.is_empty()));
    if let Some(d) = data_dir {
        println!("  one hour of shop.orders, one JSON record per line ({compression}):");
        println!("    {cat} {root}/{}/*.{extension} | head -n 2", d.path);
    }
    if let Some(r) = dirs.iter().find(|d| d.path.starts_with("_receipts/")) {
        if let Some(name) = r.names.first() {
            println!("  the receipt of one batch (what it wrote, counts, checksums):");
            println!("    cat {root}/{}/{name}", r.path);
        }
    }
    println!("  query everything with DuckDB:");
    println!(
        "    duckdb -c \"select operation_type, count(*) from read_json_auto('{root}/*/*/*/*/*/*/*.{extension}'{duckdb_option}) group by 1 order by 2 desc\""
    );
    println!("  crash the handler mid-batch and check nothing is lost:");
    println!("    hub2lake demo --kill-at 1:0");
    println!("  more knobs (batch size, retry policy, input file, settings):");
    println!("    hub2lake simulate --help");
}
