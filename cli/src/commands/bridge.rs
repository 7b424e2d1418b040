//! `hub2lake bridge` (Redis Stream → Event Hub or files) and `hub2lake bridge publish`
//! (test entries into a stream). Thin over [`crate::bridge`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use super::credential_arg::CredentialArg;
use super::destination::{destination, DestinationError, DestinationFlags};
use crate::bridge::batcher::MAX_BATCH_BYTES;
use crate::bridge::publisher::{self, PublishOptions};
use crate::bridge::{self, BridgeConfig, BridgeError, RedisLink, StopSender, START_DEADLINE};
use hub2lake::config::LogFormat;
use hub2lake::eventhub::{CredentialKind, EventHubSink, EventSink, FileSink};
use hub2lake::telemetry::LogStreamSettings;

const BRIDGE_HELP: &str = "Examples:\n  \
    hub2lake bridge --redis-url redis://localhost:6379 --stream changes --group hub2lake --to-file ./out\n  \
    hub2lake bridge publish --redis-url redis://localhost:6379 --stream changes --count 10000\n  \
    hub2lake bridge --redis-url redis://localhost:6379 --stream changes --group hub2lake \\\n    \
    --body-field data --partition-key-field key --to-file ./out\n  \
    HUB2LAKE_BRIDGE_REDIS_URL=rediss://:password@cache.example:6380 HUB2LAKE_BRIDGE_STREAM=changes \\\n    \
    HUB2LAKE_BRIDGE_GROUP=hub2lake HUB2LAKE_BRIDGE_TO_EVENTHUB=true HUB2LAKE_BRIDGE_NAMESPACE=contoso \\\n    \
    HUB2LAKE_BRIDGE_EVENTHUB=changes hub2lake bridge\n\n\
    Each entry becomes one event (with --body-field F: F's value; without: the fields as a JSON object), \
    with application properties redis_stream and redis_id; XACK follows the hub's (or the file's) acceptance. \
    Entries that cannot be events (no body field, too large) go to the dead-letter stream with original_id, \
    original_stream, reason and their own fields. SIGTERM/Ctrl+C: stop reading, finish the batch in flight, \
    exit 0. Every flag can come from HUB2LAKE_BRIDGE_<FLAG> (e.g. HUB2LAKE_BRIDGE_REDIS_URL). See docs/bridge.md.\n\n\
    Exit codes:\n  \
    0  stopped by SIGTERM/SIGINT after finishing the batch in flight\n  \
    2  usage or configuration: bad flags, URL, stream type, credentials refused\n  \
    3  Redis unreachable at start (within 10 s), Redis or the hub failed; what was not acknowledged is sent again";

/// `hub2lake bridge`: the flags of the bridge itself, or `publish`.
#[derive(Debug, Args)]
#[command(
    subcommand_negates_reqs = true,
    after_help = BRIDGE_HELP,
    // `multiple`: HUB2LAKE_BRIDGE_TO_EVENTHUB=false beside --to-file is fine; run_bridge
    // refuses both destinations at once itself.
    group = clap::ArgGroup::new("destination").required(true).multiple(true).args(["to_eventhub", "to_file"]),
)]
pub struct BridgeArgs {
    #[command(subcommand)]
    pub command: Option<BridgeCommand>,
    /// Redis URL: redis://[user:password@]host[:port][/db], rediss:// for TLS.
    #[arg(
        long,
        value_name = "URL",
        env = "HUB2LAKE_BRIDGE_REDIS_URL",
        hide_env_values = true,
        required = true
    )]
    pub redis_url: Option<String>,
    /// The stream to read.
    #[arg(long, value_name = "KEY", env = "HUB2LAKE_BRIDGE_STREAM", required = true)]
    pub stream: Option<String>,
    /// The consumer group (created with MKSTREAM when missing); instances sharing it share the work.
    #[arg(long, value_name = "NAME", env = "HUB2LAKE_BRIDGE_GROUP", required = true)]
    pub group: Option<String>,
    /// This consumer's name in the group; keep it across restarts to re-send its own pending
    /// entries first (default: <host>-<pid>).
    #[arg(long, value_name = "NAME", env = "HUB2LAKE_BRIDGE_CONSUMER")]
    pub consumer: Option<String>,
    /// The field whose value is the event body, verbatim (default: all fields as a JSON object).
    #[arg(long, value_name = "FIELD", env = "HUB2LAKE_BRIDGE_BODY_FIELD")]
    pub body_field: Option<String>,
    /// The field whose value is the partition key (per-key order in the hub).
    #[arg(long, value_name = "FIELD", env = "HUB2LAKE_BRIDGE_PARTITION_KEY_FIELD")]
    pub partition_key_field: Option<String>,
    /// Entries per read and most events per batch (batches also stay under 1 MB).
    #[arg(long, value_name = "N", env = "HUB2LAKE_BRIDGE_BATCH_SIZE",
          default_value_t = BridgeConfig::DEFAULT_BATCH_SIZE as u32,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub batch_size: u32,
    /// Longest blocking read: a stop or a due claim waits at most this long.
    #[arg(long, value_name = "MS", env = "HUB2LAKE_BRIDGE_BLOCK_MS",
          default_value_t = BridgeConfig::DEFAULT_BLOCK_MS,
          value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub block_ms: u64,
    /// How often to claim (XAUTOCLAIM) entries other consumers left pending.
    #[arg(long, value_name = "MS", env = "HUB2LAKE_BRIDGE_CLAIM_INTERVAL_MS",
          default_value_t = BridgeConfig::DEFAULT_CLAIM_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub claim_interval_ms: u64,
    /// How long an entry must have been pending before another consumer claims it.
    #[arg(long, value_name = "MS", env = "HUB2LAKE_BRIDGE_CLAIM_MIN_IDLE_MS",
          default_value_t = BridgeConfig::DEFAULT_CLAIM_MIN_IDLE_MS)]
    pub claim_min_idle_ms: u64,
    /// Where entries that cannot be events go (default: <stream>:deadletter).
    #[arg(long, value_name = "KEY", env = "HUB2LAKE_BRIDGE_DEAD_LETTER_STREAM")]
    pub dead_letter_stream: Option<String>,
    /// Where a new group starts: 0 (the whole stream), $ (only new entries) or an entry id.
    #[arg(long, value_name = "ID", env = "HUB2LAKE_BRIDGE_GROUP_START", default_value = "0")]
    pub group_start: String,
    /// How often the progress line (entries/s, group lag, pending, dead-lettered) is logged.
    #[arg(long, value_name = "MS", env = "HUB2LAKE_BRIDGE_PROGRESS_INTERVAL_MS",
          default_value_t = BridgeConfig::DEFAULT_PROGRESS_INTERVAL_MS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub progress_interval_ms: u64,
    /// Send to an Event Hub: --connection-string, or --namespace and --eventhub with an Azure identity.
    #[arg(long, env = "HUB2LAKE_BRIDGE_TO_EVENTHUB")]
    pub to_eventhub: bool,
    /// Write the events to DIR/<stream>.jsonl instead (the same sink as replay --to-file).
    #[arg(long, value_name = "DIR", env = "HUB2LAKE_BRIDGE_TO_FILE")]
    pub to_file: Option<PathBuf>,
    /// Event Hubs connection string (Endpoint, SharedAccessKeyName, SharedAccessKey[, EntityPath]).
    #[arg(
        long,
        value_name = "CS",
        env = "HUB2LAKE_BRIDGE_CONNECTION_STRING",
        hide_env_values = true
    )]
    pub connection_string: Option<String>,
    /// Event Hubs namespace (contoso or contoso.servicebus.windows.net), with an Azure identity.
    #[arg(
        long,
        value_name = "NS",
        env = "HUB2LAKE_BRIDGE_NAMESPACE",
        conflicts_with = "connection_string"
    )]
    pub namespace: Option<String>,
    /// Event Hub name (required unless the connection string has EntityPath).
    #[arg(long, value_name = "NAME", env = "HUB2LAKE_BRIDGE_EVENTHUB")]
    pub eventhub: Option<String>,
    /// Identity for --namespace.
    #[arg(long, value_enum, env = "HUB2LAKE_BRIDGE_CREDENTIAL", default_value_t = CredentialArg(CredentialKind::Auto))]
    pub credential: CredentialArg,
    /// AMQP over WebSockets (port 443) instead of AMQP (port 5671).
    #[arg(long, env = "HUB2LAKE_BRIDGE_WEBSOCKETS")]
    pub websockets: bool,
}

#[derive(Debug, Subcommand)]
pub enum BridgeCommand {
    /// Add the simulator's MongoDB change events to a stream: field `data` (the event's JSON)
    /// and field `key` (its document key), for `bridge --body-field data --partition-key-field key`.
    #[command(after_help = "Example:\n  \
        hub2lake bridge publish --redis-url redis://localhost:6379 --stream changes --count 100000 --rate 5000")]
    Publish(PublishArgs),
}

#[derive(Debug, Args)]
pub struct PublishArgs {
    /// Redis URL (as for the bridge).
    #[arg(long, value_name = "URL", env = "HUB2LAKE_BRIDGE_REDIS_URL", hide_env_values = true)]
    pub redis_url: String,
    /// The stream to add to.
    #[arg(long, value_name = "KEY", env = "HUB2LAKE_BRIDGE_STREAM")]
    pub stream: String,
    /// Entries to add.
    #[arg(long, value_name = "N", env = "HUB2LAKE_BRIDGE_COUNT", default_value_t = 1000)]
    pub count: u64,
    /// Entries per second (default: as fast as Redis takes them).
    #[arg(long, value_name = "PER_SECOND", env = "HUB2LAKE_BRIDGE_RATE", value_parser = positive_rate)]
    pub rate: Option<f64>,
    /// Approximate size of one event's JSON in bytes.
    #[arg(
        long,
        value_name = "BYTES",
        env = "HUB2LAKE_BRIDGE_EVENT_SIZE",
        default_value_t = 700
    )]
    pub event_size: usize,
    /// The same seed gives the same events.
    #[arg(long, env = "HUB2LAKE_BRIDGE_SEED", default_value_t = 42)]
    pub seed: u64,
}

fn positive_rate(raw: &str) -> Result<f64, String> {
    match raw.parse::<f64>() {
        Ok(r) if r.is_finite() && r > 0.0 => Ok(r),
        _ => Err(format!("{raw:?} is not a positive number of entries per second")),
    }
}

/// A name unique to this host and process: `<host>-<pid>`.
pub fn default_consumer() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer outlives the call and its length is passed with it.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    let host = if rc == 0 {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "hub2lake".to_string()
    };
    format!("{host}-{}", std::process::id())
}

impl BridgeArgs {
    /// The bridge settings; `None` fields were required by clap.
    pub fn config(&self) -> Result<BridgeConfig, BridgeError> {
        let missing = |flag: &str| BridgeError::Config(format!("{flag} is required"));
        let stream = self.stream.clone().ok_or_else(|| missing("--stream"))?;
        Ok(BridgeConfig {
            redis_url: self.redis_url.clone().ok_or_else(|| missing("--redis-url"))?,
            group: self.group.clone().ok_or_else(|| missing("--group"))?,
            consumer: self.consumer.clone().unwrap_or_else(default_consumer),
            body_field: self.body_field.clone(),
            partition_key_field: self.partition_key_field.clone(),
            batch_size: self.batch_size as usize,
            block: Duration::from_millis(self.block_ms),
            claim_interval: Duration::from_millis(self.claim_interval_ms),
            claim_min_idle: Duration::from_millis(self.claim_min_idle_ms),
            dead_letter_stream: self
                .dead_letter_stream
                .clone()
                .unwrap_or_else(|| BridgeConfig::default_dead_letter_stream(&stream)),
            group_start: self.group_start.clone(),
            progress_interval: Duration::from_millis(self.progress_interval_ms),
            stream,
        })
    }
}

/// Runs `hub2lake bridge [publish]`.
pub fn run(args: BridgeArgs) -> anyhow::Result<ExitCode> {
    if let Err(e) = init_logging() {
        eprintln!("hub2lake: error: {e}");
        return Ok(ExitCode::from(e.exit_code()));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    let outcome = runtime.block_on(async {
        match &args.command {
            Some(BridgeCommand::Publish(p)) => run_publish(p).await,
            None => run_bridge(&args).await,
        }
    });
    // What the stream still holds goes out within HUB2LAKE_LOG_STREAM_FLUSH_MS.
    hub2lake::telemetry::flush();
    Ok(match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hub2lake: error: {e}");
            ExitCode::from(e.exit_code())
        }
    })
}

/// The bridge logs the way the handler does: console logs on stderr per
/// `HUB2LAKE_LOG_FORMAT` (text on a terminal unless `json`) and `RUST_LOG`, and the log
/// stream per the `HUB2LAKE_LOG_*` settings with `service` = `bridge`. A malformed
/// setting stops the start naming it; an unreachable Event Hub never does.
fn init_logging() -> Result<(), BridgeError> {
    let format = match std::env::var("HUB2LAKE_LOG_FORMAT") {
        Err(_) => LogFormat::Auto,
        Ok(raw) => match raw.trim().to_ascii_lowercase().as_str() {
            "" | "auto" => LogFormat::Auto,
            "json" => LogFormat::Json,
            "text" => LogFormat::Text,
            _ => {
                return Err(BridgeError::Config(format!(
                    "invalid setting HUB2LAKE_LOG_FORMAT={raw:?}: allowed: auto, json, text"
                )))
            }
        },
    };
    let stream = LogStreamSettings::from_env().map_err(|e| BridgeError::Config(e.to_string()))?;
    hub2lake::telemetry::init_service("bridge", format, &stream);
    Ok(())
}

async fn run_bridge(args: &BridgeArgs) -> Result<(), BridgeError> {
    let config = args.config()?;
    config.validate()?;
    if args.to_eventhub && args.to_file.is_some() {
        return Err(BridgeError::Config(
            "--to-eventhub and --to-file both given: choose one destination".into(),
        ));
    }
    let (switch, stop) = bridge::stop_switch();
    tokio::spawn(stop_on_signals(switch));
    if let Some(dir) = &args.to_file {
        let sink = FileSink::new(dir)?;
        return bridge::run(&config, &sink, stop).await.map(drop);
    }
    if !args.to_eventhub {
        // HUB2LAKE_BRIDGE_TO_EVENTHUB=false satisfies clap's "one destination" but names none.
        return Err(BridgeError::Config(
            "no destination: give --to-eventhub (HUB2LAKE_BRIDGE_TO_EVENTHUB=true) or --to-file DIR \
             (HUB2LAKE_BRIDGE_TO_FILE)"
                .into(),
        ));
    }
    let flags = DestinationFlags {
        connection_string: args.connection_string.as_deref(),
        namespace: args.namespace.as_deref(),
        eventhub: args.eventhub.as_deref(),
        credential: args.credential.0,
        connection_string_env: "HUB2LAKE_BRIDGE_CONNECTION_STRING",
        wanted_by: "--to-eventhub",
    };
    let destination = destination(flags).map_err(|e| match e {
        DestinationError::Usage(m) => BridgeError::Config(m),
        DestinationError::Sink(e) => BridgeError::Sink(e),
    })?;
    let env = |k: &str| std::env::var(k).ok();
    let sink = EventHubSink::connect(&destination, args.websockets, MAX_BATCH_BYTES as u64, "bridge", &env).await?;
    tracing::debug!(sink = %sink.describe(), "connected to the Event Hub");
    let outcome = bridge::run(&config, &sink, stop).await;
    let closed = sink.close().await;
    outcome?;
    closed?;
    Ok(())
}

/// The first SIGTERM or SIGINT asks the bridge to stop after the batch in flight; a
/// second one ends the process at once (what was sent and not acknowledged is sent
/// again by the next run).
async fn stop_on_signals(switch: StopSender) {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    tracing::info!("stopping: finishing the batch in flight (signal again to quit at once)");
    switch.stop();
    // Some supervisors (timeout(1), shells) deliver one stop twice at once: only a signal
    // that comes later means "now".
    let first = std::time::Instant::now();
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        if first.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    eprintln!("hub2lake: second signal: quitting now; unacknowledged entries will be sent again");
    std::process::exit(130);
}

async fn run_publish(args: &PublishArgs) -> Result<(), BridgeError> {
    let mut link = RedisLink::open(&args.redis_url, Duration::from_secs(30))?;
    link.connect_within(START_DEADLINE).await?;
    let options = PublishOptions {
        stream: args.stream.clone(),
        count: args.count,
        rate: args.rate,
        event_size: args.event_size,
        seed: args.seed,
    };
    let report = publisher::publish(&mut link, &options).await?;
    println!(
        "published {} entries to {} ({} .. {}) in {:.2} s: fields {} (event JSON) and {} (document key)",
        report.entries,
        report.stream,
        report.first_id.as_deref().unwrap_or("-"),
        report.last_id.as_deref().unwrap_or("-"),
        report.seconds,
        publisher::DATA_FIELD,
        publisher::KEY_FIELD,
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        bridge: BridgeArgs,
    }

    fn parse(args: &[&str]) -> Result<BridgeArgs, clap::Error> {
        Cli::try_parse_from(std::iter::once("bridge").chain(args.iter().copied())).map(|c| c.bridge)
    }

    const BASE: [&str; 6] = ["--redis-url", "redis://h:1", "--stream", "s", "--group", "g"];

    #[test]
    fn the_flags_parse_with_the_connectors_defaults() {
        <Cli as clap::CommandFactory>::command().debug_assert();
        let args = parse(&[&BASE[..], &["--to-file", "out"]].concat()).unwrap();
        let c = args.config().unwrap();
        assert_eq!(c.batch_size, 100);
        assert_eq!(c.block, Duration::from_millis(1000));
        assert_eq!(c.claim_interval, Duration::from_secs(30));
        assert_eq!(c.claim_min_idle, Duration::from_secs(60));
        assert_eq!(c.dead_letter_stream, "s:deadletter");
        assert_eq!(c.group_start, "0");
        assert!(c.consumer.ends_with(&format!("-{}", std::process::id())));
    }

    #[test]
    fn exactly_one_destination_is_required() {
        let e = parse(&BASE).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::MissingRequiredArgument);
        let both = parse(&[&BASE[..], &["--to-file", "o", "--to-eventhub"]].concat()).unwrap();
        assert!(
            both.to_eventhub && both.to_file.is_some(),
            "refused by run_bridge, with a message"
        );
        assert!(parse(&[&BASE[..], &["--to-eventhub", "--namespace", "n", "--eventhub", "h"]].concat()).is_ok());
    }

    #[test]
    fn publish_needs_none_of_the_bridge_flags() {
        let args = parse(&["publish", "--redis-url", "redis://h:1", "--stream", "s", "--rate", "10"]).unwrap();
        let Some(BridgeCommand::Publish(p)) = args.command else {
            panic!("not publish");
        };
        assert_eq!((p.count, p.rate), (1000, Some(10.0)));
        assert!(parse(&["publish", "--redis-url", "redis://h:1", "--stream", "s", "--rate", "0"]).is_err());
    }
}
