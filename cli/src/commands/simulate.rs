//! `hub2lake simulate`: run the real handler under a simulated Functions host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::simulator::{
    self, AppFiles, ChangeStreamConfig, EventSource, FaultPlan, ProgressBars, SimulationSummary, SimulatorConfig,
};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The handler executable [default: the one the app's host.json names
    /// (customHandler.description.defaultExecutablePath) if the app folder holds it, as in a
    /// packaged app; else `handler` next to this program].
    #[arg(long, value_name = "PATH")]
    pub handler: Option<PathBuf>,
    /// The Functions app folder: host.json and functions/<name>/function.json (or <name>/function.json).
    /// A packaged app (`hub2lake package`'s <out>/app) runs with its own handler: a rehearsal
    /// of exactly what ships.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub app: PathBuf,
    /// host.json to read [default: <app>/host.json if present, else the host's defaults (batches of 100)].
    #[arg(long, value_name = "FILE")]
    pub host_json: Option<PathBuf>,
    /// A local.settings.json-style file: its "Values" become the handler's app settings.
    #[arg(long, value_name = "FILE")]
    pub settings: Option<PathBuf>,
    /// One app setting (repeatable; wins over --settings), e.g. --set HUB2LAKE_COMPRESSION=none.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Shortcut for --set HUB2LAKE_LAKE_URL=…: a directory (made absolute, file://) or a lake URL.
    #[arg(long, value_name = "DIR|URL")]
    pub lake: Option<String>,
    /// Event Hub partitions (delivered concurrently, one batch in flight each).
    #[arg(long, default_value_t = 4)]
    pub partitions: u32,
    /// Generated change events in total, dealt evenly over the partitions.
    #[arg(long, default_value_t = 4000)]
    pub events: u64,
    /// Approximate size of one generated event, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = 700)]
    pub event_size: usize,
    /// Seed of the generated events (same seed, same events).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Read event bodies from a JSON Lines file (one body per line, dealt over the partitions)
    /// instead of generating change events.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Enqueued time of the first events, UTC (e.g. 2025-01-15T09:40:00Z)
    /// [default: 40 minutes past the hour, three hours ago].
    #[arg(long, value_parser = parse_time)]
    pub start: Option<DateTime<Utc>>,
    /// Simulated time the events span (e.g. 2h, 90m, 1h30m, 600s).
    #[arg(long, default_value = "2h", value_parser = parse_duration)]
    pub span: Duration,
    /// Events per batch [default: host.json extensions.eventHubs.maxEventBatchSize].
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Checkpoint every N batches [default: host.json batchCheckpointFrequency, else 1].
    #[arg(long, value_name = "N")]
    pub checkpoint_frequency: Option<u32>,
    /// Ignore the retry policy of function.json: a failed batch is then checkpointed past (events skipped).
    #[arg(long)]
    pub no_retry: bool,
    /// Multiply the retry delays (0.001 turns the 5 s minimum interval into 5 ms).
    #[arg(long, value_name = "FACTOR", default_value_t = 1.0)]
    pub time_scale: f64,
    /// Fire the seal timer once more after every event is delivered.
    #[arg(long)]
    pub seal_at_end: bool,
    /// Do not fire the seal timer on its schedule (in simulated time).
    #[arg(long)]
    pub no_seal_schedule: bool,
    /// Kill the handler (SIGKILL) while this batch is in flight, e.g. 1:2 = partition 1's third
    /// batch; the simulator restarts it and re-delivers from the checkpoint (repeatable).
    #[arg(long, value_name = "PARTITION:BATCH")]
    pub kill_at: Vec<String>,
    /// Append the handler's log lines to this file.
    #[arg(long, value_name = "FILE")]
    pub handler_log: Option<PathBuf>,
    /// Write the whole summary (every invocation with its latency) as JSON.
    #[arg(long, value_name = "FILE")]
    pub summary_json: Option<PathBuf>,
    /// No progress bars (failures and restarts are still printed as lines).
    #[arg(long)]
    pub no_progress: bool,
}

/// What the CLI adds around a library run.
pub struct Prepared {
    pub config: SimulatorConfig,
    pub app_source: String,
    pub retry_source: String,
}

/// The handler next to this program, or the one given.
pub fn handler_path(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::current_exe()
            .context("cannot locate this program")?
            .with_file_name(format!("handler{}", std::env::consts::EXE_SUFFIX)),
    };
    if !path.is_file() {
        bail!(
            "the handler executable {} does not exist. Build both programs with `cargo build --release` \
             and run ./target/release/hub2lake (`cargo run --bin hub2lake` builds only hub2lake), \
             or pass --handler PATH",
            path.display()
        );
    }
    Ok(path)
}

/// The executable an app folder's host.json names, resolved as the Functions host does:
/// a relative `defaultExecutablePath` is taken against `workerDirectory` (itself relative
/// to the app root, default the app root), and used when that file exists
/// (HttpWorkerDescription.ApplyDefaultsAndValidate in Azure/azure-functions-host).
/// `None` when host.json names none or the folder does not hold it (the repository
/// layout, whose handler is built into target/). A packaged app without its handler
/// is an error: rehearsing it with another handler would test something else.
pub fn app_handler(app_root: &Path, host_json: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let host_path = host_json
        .map(Path::to_path_buf)
        .unwrap_or_else(|| app_root.join("host.json"));
    let Ok(text) = std::fs::read_to_string(&host_path) else {
        return Ok(None);
    };
    let host: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", host_path.display()))?;
    let description = &host["customHandler"]["description"];
    let Some(exe) = description["defaultExecutablePath"].as_str().filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let worker_dir = match description["workerDirectory"].as_str().filter(|d| !d.is_empty()) {
        Some(dir) => app_root.join(dir),
        None => app_root.to_path_buf(),
    };
    let candidate = worker_dir.join(exe);
    if candidate.is_file() {
        return Ok(Some(candidate));
    }
    let packaged_layout = !app_root.join("functions").is_dir();
    if packaged_layout && !Path::new(exe).is_absolute() {
        bail!(
            "{} names the handler {exe:?}, but {} is not there: a packaged app must carry its handler \
             (`hub2lake package` puts it in <out>/app), or pass --handler",
            host_path.display(),
            candidate.display()
        );
    }
    Ok(None)
}

/// Turns a directory into a `file://` URL; URLs pass through.
pub fn lake_url(dir_or_url: &str) -> anyhow::Result<String> {
    if dir_or_url.contains("://") {
        return Ok(dir_or_url.to_string());
    }
    let abs = std::path::absolute(dir_or_url).with_context(|| format!("cannot make {dir_or_url} absolute"))?;
    Ok(format!("file://{}", abs.display()))
}

/// Builds the library configuration from the flags.
pub fn prepare(args: &SimulateArgs, bundled_fallback: bool) -> anyhow::Result<Prepared> {
    let app_root = std::path::absolute(&args.app).with_context(|| format!("bad --app {}", args.app.display()))?;
    let handler = match &args.handler {
        Some(given) => handler_path(Some(given))?,
        None => match app_handler(&app_root, args.host_json.as_deref())? {
            Some(packaged) => packaged,
            None => handler_path(None)?,
        },
    };
    let mut settings: BTreeMap<String, String> = BTreeMap::new();
    if let Some(file) = &args.settings {
        settings.extend(simulator::app::load_local_settings(file)?);
    }
    for kv in &args.set {
        let (k, v) = kv
            .split_once('=')
            .with_context(|| format!("--set {kv:?}: expected KEY=VALUE"))?;
        settings.insert(k.trim().to_string(), v.to_string());
    }
    if let Some(lake) = &args.lake {
        settings.insert("HUB2LAKE_LAKE_URL".into(), lake_url(lake)?);
    }
    if !settings.contains_key("HUB2LAKE_LAKE_URL") && std::env::var_os("HUB2LAKE_LAKE_URL").is_none() {
        bail!("no lake: pass --lake DIR, --set HUB2LAKE_LAKE_URL=… or a --settings file that has it");
    }

    let has_host_json = args.host_json.is_some() || app_root.join("host.json").is_file();
    let (app, app_source) = if !has_host_json && bundled_fallback {
        (
            AppFiles::bundled()?,
            "the copies built into hub2lake (no host.json here)".to_string(),
        )
    } else {
        let app = AppFiles::load(&app_root, args.host_json.as_deref())?;
        let src = if has_host_json {
            format!("{}", app_root.display())
        } else {
            format!("{} (no host.json: host defaults)", app_root.display())
        };
        (app, src)
    };

    let lake_setting = settings.get("HUB2LAKE_LAKE_URL").cloned();
    let mut config = SimulatorConfig::new(handler, lake_setting.clone().unwrap_or_default()).with_app(&app);
    config.app_root = app_root;
    if lake_setting.is_none() {
        // Taken from the environment, which the handler inherits.
        config.settings.remove("HUB2LAKE_LAKE_URL");
    }
    config.settings.extend(settings);
    if let Some(name) = config.settings.get("EVENTHUB_NAME") {
        config.eventhub.name = name.clone();
    }
    if let Some(cg) = config.settings.get("EVENTHUB_CONSUMER_GROUP") {
        config.eventhub.consumer_group = cg.clone();
    }
    config.source = match &args.input {
        Some(file) => EventSource::from_jsonl(file)?,
        None => EventSource::ChangeStream(ChangeStreamConfig {
            events: args.events,
            event_size: args.event_size,
            seed: args.seed,
        }),
    };
    config.partitions = args.partitions;
    if let Some(start) = args.start {
        config.start = start;
    }
    config.span = args.span;
    if let Some(b) = args.batch_size {
        config.batch_size = b;
    }
    if let Some(f) = args.checkpoint_frequency {
        config.checkpoint_frequency = f;
    }
    let retry_source = match (&config.ingest.retry, args.no_retry) {
        (_, true) => {
            config.ingest.retry = None;
            "none (--no-retry): a failed batch is checkpointed past".to_string()
        }
        (Some(r), false) => format!("{r} (function.json)"),
        (None, false) => "none in function.json: a failed batch is checkpointed past".to_string(),
    };
    config.time_scale = args.time_scale;
    if let Some(seal) = config.seal.as_mut() {
        seal.at_end = args.seal_at_end;
        if args.no_seal_schedule {
            seal.schedule = None;
        }
    }
    config.handler_log = args.handler_log.clone();
    let mut faults = FaultPlan::new();
    for k in &args.kill_at {
        let (p, b) = k
            .split_once(':')
            .and_then(|(p, b)| Some((p.trim().parse::<usize>().ok()?, b.trim().parse::<u64>().ok()?)))
            .with_context(|| format!("--kill-at {k:?}: expected PARTITION:BATCH, e.g. 1:2"))?;
        faults = faults.kill_during(p, b, Duration::from_millis(3));
    }
    config.faults = faults;
    Ok(Prepared {
        config,
        app_source,
        retry_source,
    })
}

/// Runs the simulation on a fresh runtime, with progress bars unless asked not to.
/// Ctrl-C stops it (and the handler).
pub fn execute(mut config: SimulatorConfig, progress: bool) -> anyhow::Result<SimulationSummary> {
    init_tracing();
    config.observer = Some(Arc::new(if progress {
        ProgressBars::new()
    } else {
        ProgressBars::lines_only()
    }));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let summary = runtime.block_on(async {
        tokio::select! {
            r = simulator::run(config) => r.map_err(anyhow::Error::from),
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted; the handler was stopped")),
        }
    })?;
    Ok(summary)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}

/// Prints what is about to run.
pub fn print_plan(p: &Prepared) {
    let c = &p.config;
    println!("  handler    {}", c.handler.display());
    match c.settings.get("HUB2LAKE_LAKE_URL") {
        Some(url) => match url.strip_prefix("file://") {
            Some(dir) => println!("  lake       {dir}   (HUB2LAKE_LAKE_URL={url})"),
            None => println!("  lake       {url}"),
        },
        None => println!("  lake       (HUB2LAKE_LAKE_URL from the environment)"),
    }
    println!("  app files  {}", p.app_source);
    let what = match &c.source {
        EventSource::ChangeStream(s) => format!(
            "{} MongoDB change events (~{} bytes each, seed {})",
            s.events, s.event_size, s.seed
        ),
        EventSource::Bodies(b) => format!("{} event bodies from the input file", b.len()),
    };
    println!("  events     {what} over {} partitions", c.partitions);
    println!(
        "             enqueued {} .. {} (simulated time)",
        c.start.format("%Y-%m-%d %H:%M:%SZ"),
        (c.start + chrono::TimeDelta::from_std(c.span).unwrap_or_default()).format("%Y-%m-%d %H:%M:%SZ")
    );
    println!(
        "  batches    up to {} events, checkpoint every {} batch(es), one batch in flight per partition",
        c.batch_size, c.checkpoint_frequency
    );
    println!("  retry      {}", p.retry_source);
    if c.time_scale != 1.0 {
        println!("             delays scaled by {}", c.time_scale);
    }
    match &c.seal {
        Some(s) => {
            let mut when = Vec::new();
            if let Some(sched) = &s.schedule {
                let resolved = simulator::app::resolve_setting(sched, &c.settings).unwrap_or_else(|_| sched.clone());
                when.push(format!("on schedule {resolved:?} in simulated time"));
            }
            if s.at_end {
                when.push("once at the end".into());
            }
            if when.is_empty() {
                when.push("never".into());
            }
            println!("  seal timer /{} {}", s.function, when.join(" and "));
        }
        None => println!("  seal timer none (no timerTrigger function)"),
    }
    for k in c.faults.kills() {
        println!(
            "  fault      SIGKILL the handler while partition {} batch {} is in flight",
            k.partition, k.batch
        );
    }
    println!();
}

pub fn run(args: &SimulateArgs) -> anyhow::Result<ExitCode> {
    let prepared = prepare(args, false)?;
    println!("hub2lake simulate: the real handler under a simulated Functions host\n");
    print_plan(&prepared);
    let summary = execute(prepared.config, !args.no_progress)?;
    println!("\n{summary}");
    if let Some(path) = &args.summary_json {
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        serde_json::to_writer_pretty(std::io::BufWriter::new(file), &summary)?;
        println!("summary JSON: {}", path.display());
    }
    // Data loss is worth a distinct exit code in scripts and CI.
    Ok(if summary.events_skipped() > 0 {
        ExitCode::from(3)
    } else {
        ExitCode::SUCCESS
    })
}

/// Parses `2h`, `90m`, `1h30m`, `45s`, `1d` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if let Ok(secs) = t.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{text:?}: expected e.g. 2h, 90m, 1h30m"))?;
        number.clear();
        total += n * match c {
            'd' => 86_400,
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return Err(format!("{text:?}: unknown unit {c:?} (use d, h, m, s)")),
        };
    }
    if !number.is_empty() || total == 0 {
        return Err(format!("{text:?}: expected e.g. 2h, 90m, 1h30m"));
    }
    Ok(Duration::from_secs(total))
}

/// Parses an RFC 3339 time, or a time without zone taken as UTC.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text.trim()) {
        return Ok(t.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%dT%H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%d %H:%M",
    ] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text.trim(), fmt) {
            return Ok(t.and_utc());
        }
    }
    Err(format!("{text:?}: expected a time like 2025-01-15T09:40:00Z"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_times() {
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("600").unwrap(), Duration::from_secs(600));
        assert!(parse_duration("2x").is_err());
        assert!(parse_duration("h").is_err());
        assert_eq!(
            parse_time("2025-01-15T09:40:00Z").unwrap().to_rfc3339(),
            "2025-01-15T09:40:00+00:00"
        );
        assert_eq!(
            parse_time("2025-01-15T09:40").unwrap().to_rfc3339(),
            "2025-01-15T09:40:00+00:00"
        );
    }
}
