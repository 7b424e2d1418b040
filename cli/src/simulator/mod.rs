//! A stand-in for the Azure Functions host (`func start` cannot run here): it starts
//! the real `handler` executable the way the host does and plays the host's part.
//!
//! * Event Hub: change-stream events (or given bodies) over N partitions with
//!   contiguous sequence numbers and enqueued times spread over a time span.
//! * Trigger: batches of up to `maxEventBatchSize` per partition, one batch in flight per
//!   partition, partitions concurrently, each request in the host's exact shape
//!   ([`hub2lake::host::wire`]).
//! * Retries and checkpoints as the host does them: the function.json retry policy
//!   re-invokes a failed batch (same events, `RetryContext.RetryCount` + 1); the
//!   partition is checkpointed after the invocation returns, success or not, once the
//!   retries are exhausted — so without a retry policy a failed batch is skipped.
//! * Crashes: if the handler process dies, it is restarted and every partition resumes
//!   from its last checkpoint (at-least-once re-delivery).
//! * Timer: the seal function fires per its NCRONTAB schedule in simulated time (and/or
//!   once at the end).
//!
//! Integration tests and benchmarks drive the handler through [`run`]; the CLI's
//! `simulate` and `demo` commands are thin over it.

pub mod app;
pub mod client;
mod engine;
pub mod events;
pub mod ncrontab;
pub mod process;
pub mod progress;
pub mod report;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

pub use app::{AppFiles, HostJson, IngestFunction, RetryPolicy, RetryStrategy, TimerFunction};
pub use events::{ChangeStreamConfig, EventSource, Hub, PartitionPlan};
pub use ncrontab::Schedule;
pub use progress::{Observer, ProgressBars};
pub use report::{DirSummary, LakeSummary};

/// What went wrong running a simulation.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error(
        "handler executable {path} not found; build it with `cargo build --release` \
         (`cargo run --bin hub2lake` builds only hub2lake) or pass its path"
    )]
    HandlerMissing { path: PathBuf },
    #[error("cannot start the handler {path}: {reason}")]
    Spawn { path: PathBuf, reason: String },
    #[error("the handler {status} before it answered GET /; its last output:\n{output}")]
    ExitedBeforeReady { status: String, output: String },
    #[error("the handler did not answer GET / on port {port} within {budget:?}; its last output:\n{output}")]
    NotReady {
        port: u16,
        budget: Duration,
        output: String,
    },
    #[error("the handler died {restarts} times; giving up. Last reason: {reason}; its last output:\n{output}")]
    TooManyRestarts {
        restarts: u32,
        reason: String,
        output: String,
    },
    #[error("{origin}: {problem}")]
    App { origin: String, problem: String },
    #[error("cannot read events from {path}: {reason}")]
    Input { path: PathBuf, reason: String },
    #[error(transparent)]
    Schedule(#[from] ncrontab::ScheduleError),
    #[error("{0}")]
    Config(String),
    #[error("simulator bug: {0}")]
    Internal(String),
}

impl SimError {
    pub(crate) fn app(origin: &str, problem: impl Into<String>) -> Self {
        Self::App {
            origin: origin.to_string(),
            problem: problem.into(),
        }
    }
}

/// The Event Hub the simulated events come from (shown in the request metadata).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHubIdentity {
    pub namespace: String,
    pub name: String,
    pub consumer_group: String,
}

impl Default for EventHubIdentity {
    fn default() -> Self {
        Self {
            namespace: "hub2lake-sim.servicebus.windows.net".into(),
            name: "mongo-changes".into(),
            consumer_group: "hub2lake".into(),
        }
    }
}

/// The timer function and when it fires.
#[derive(Debug, Clone)]
pub struct SealPlan {
    pub function: String,
    pub binding: String,
    /// NCRONTAB, or `%SETTING%` naming one (resolved against the app settings when the
    /// run starts), fired in simulated time; `None`: never on schedule.
    pub schedule: Option<String>,
    /// Fire once more after every partition is done (with `Next` = now).
    pub at_end: bool,
}

/// Information passed to a failure hook.
#[derive(Debug, Clone)]
pub struct FailureInfo {
    /// Failed invocations so far in this run, this one included.
    pub failures: u64,
    pub partition_id: String,
    pub first_sequence_number: i64,
    pub retry_count: u32,
    pub error: String,
}

type FailureAction = Box<dyn FnOnce(&FailureInfo) + Send>;

/// Faults to inject, for tests and demos.
#[derive(Default)]
pub struct FaultPlan {
    kills: Vec<KillPoint>,
    failure_hooks: Vec<(u64, FailureAction)>,
}

/// Kill the handler (SIGKILL) while batch `batch` (0-based, counted from the
/// partition's first event in batches of the batch size) of partition `partition` is in
/// flight: `delay` after its request body was sent. Fires on the first delivery only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KillPoint {
    pub partition: usize,
    pub batch: u64,
    pub delay: Duration,
}

impl FaultPlan {
    pub fn new() -> Self {
        Self::default()
    }

    /// Kills the handler while the given batch is in flight.
    pub fn kill_during(mut self, partition: usize, batch: u64, delay: Duration) -> Self {
        self.kills.push(KillPoint {
            partition,
            batch,
            delay,
        });
        self
    }

    /// Calls `action` once, right after the `n`-th failed ingest invocation of the run
    /// (before the host's retry delay), e.g. to end an injected storage outage.
    pub fn after_failures(mut self, n: u64, action: impl FnOnce(&FailureInfo) + Send + 'static) -> Self {
        self.failure_hooks.push((n, Box::new(action)));
        self
    }

    pub fn kills(&self) -> &[KillPoint] {
        &self.kills
    }
}

impl fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultPlan")
            .field("kills", &self.kills)
            .field(
                "failure_hooks",
                &self.failure_hooks.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// Everything a simulation run needs.
pub struct SimulatorConfig {
    /// The `handler` executable.
    pub handler: PathBuf,
    /// Working directory and `FUNCTIONS_APP_ROOT_PATH` of the handler.
    pub app_root: PathBuf,
    /// App settings, passed to the handler as environment variables.
    pub settings: BTreeMap<String, String>,
    /// Pass this process's environment to the handler too (as the host does).
    pub inherit_env: bool,
    /// Append the handler's output to this file (it is kept in memory for errors anyway).
    pub handler_log: Option<PathBuf>,
    pub source: EventSource,
    pub partitions: u32,
    /// Sequence number of every partition's first event.
    pub first_sequence_number: i64,
    /// Enqueued time of the first events; events spread over `span`.
    pub start: DateTime<Utc>,
    pub span: Duration,
    /// `maxEventBatchSize`.
    pub batch_size: usize,
    /// `batchCheckpointFrequency`.
    pub checkpoint_frequency: u32,
    /// The ingest function: name, binding, dataType and retry policy.
    pub ingest: IngestFunction,
    pub seal: Option<SealPlan>,
    /// Multiplies every retry delay (0.001 turns 5 s into 5 ms).
    pub time_scale: f64,
    /// The host's HTTP timeout (`functionTimeout` + 1 min).
    pub invocation_timeout: Duration,
    /// The readiness budget (30 s in the host).
    pub ready_timeout: Duration,
    /// Give up after this many handler restarts.
    pub max_restarts: u32,
    pub eventhub: EventHubIdentity,
    pub faults: FaultPlan,
    pub observer: Option<Arc<dyn Observer>>,
    /// List the lake at the end (count, bytes, tree).
    pub list_lake: bool,
}

impl fmt::Debug for SimulatorConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorConfig")
            .field("handler", &self.handler)
            .field("app_root", &self.app_root)
            .field("settings", &self.settings)
            .field("partitions", &self.partitions)
            .field("source_events", &self.source.total())
            .field("start", &self.start)
            .field("span", &self.span)
            .field("batch_size", &self.batch_size)
            .field("checkpoint_frequency", &self.checkpoint_frequency)
            .field("ingest", &self.ingest)
            .field("seal", &self.seal)
            .field("time_scale", &self.time_scale)
            .field("faults", &self.faults)
            .finish_non_exhaustive()
    }
}

impl SimulatorConfig {
    /// A run against a lake (`HUB2LAKE_LAKE_URL`) with host defaults: 4 000 generated
    /// events over 4 partitions and 2 hours from two hours and twenty minutes before the
    /// last full hour, batches of 100, no retry policy, no timer.
    pub fn new(handler: impl Into<PathBuf>, lake_url: impl Into<String>) -> Self {
        let mut settings = BTreeMap::new();
        settings.insert("HUB2LAKE_LAKE_URL".to_string(), lake_url.into());
        let host = HostJson::default();
        Self {
            handler: handler.into(),
            app_root: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
            settings,
            inherit_env: true,
            handler_log: None,
            source: EventSource::ChangeStream(ChangeStreamConfig::default()),
            partitions: 4,
            first_sequence_number: 0,
            start: default_start(Utc::now()),
            span: Duration::from_secs(2 * 3600),
            batch_size: host.max_event_batch_size,
            checkpoint_frequency: host.batch_checkpoint_frequency,
            ingest: IngestFunction::default(),
            seal: None,
            time_scale: 1.0,
            invocation_timeout: host.invocation_timeout(),
            ready_timeout: Duration::from_secs(30),
            max_restarts: 20,
            eventhub: EventHubIdentity::default(),
            faults: FaultPlan::default(),
            observer: None,
            list_lake: true,
        }
    }

    /// Takes batch size, checkpoint frequency, timeout, the ingest function (binding,
    /// dataType, retry policy) and the timer function from the app files. The timer's
    /// `%SETTING%` schedule is resolved against [`Self::settings`] when the run starts.
    pub fn with_app(mut self, app: &AppFiles) -> Self {
        self.batch_size = app.host.max_event_batch_size;
        self.checkpoint_frequency = app.host.batch_checkpoint_frequency;
        self.invocation_timeout = app.host.invocation_timeout();
        self.ingest = app.ingest.clone();
        if let Some(root) = &app.root {
            self.app_root = root.clone();
        }
        self.seal = app.seal.as_ref().map(|t| SealPlan {
            function: t.name.clone(),
            binding: t.binding.clone(),
            schedule: Some(t.schedule.clone()),
            at_end: false,
        });
        self
    }
}

/// The default start of simulated time: 40 minutes past the hour, three hours before
/// the current hour, so a 2-hour span crosses two hour boundaries and ends in the past.
pub fn default_start(now: DateTime<Utc>) -> DateTime<Utc> {
    use chrono::TimeDelta;
    hub2lake::time::hour_of(now) - TimeDelta::hours(3) + TimeDelta::minutes(40)
}

/// Runs a simulation to the end: every partition delivered and checkpointed.
pub async fn run(config: SimulatorConfig) -> Result<SimulationSummary, SimError> {
    engine::run(config).await
}

/// How one invocation ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Outcome {
    /// 2xx.
    Succeeded { status: u16 },
    /// Non-2xx, a timeout or a dropped connection while the handler lived on: the
    /// invocation failed (the retry policy applies).
    Failed { status: Option<u16>, error: String },
    /// The handler process died (or stopped listening) during the invocation: the host
    /// restarts it and the partition resumes from its last checkpoint.
    HandlerDied { error: String },
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded { .. })
    }
}

/// One ingest invocation (one attempt of one batch).
#[derive(Debug, Clone, Serialize)]
pub struct InvocationRecord {
    pub partition_id: String,
    /// Batch number within the partition (0-based).
    pub batch: u64,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
    pub events: u64,
    pub request_bytes: u64,
    /// `RetryContext.RetryCount` sent (0 on the first attempt).
    pub retry_count: u32,
    /// Which handler process served it (1 = the first).
    pub handler_generation: u32,
    /// When it started, since the run began.
    pub started: Duration,
    pub latency: Duration,
    pub outcome: Outcome,
    /// The sequence number checkpointed right after this invocation returned, if any.
    pub checkpoint: Option<i64>,
}

/// A batch the host checkpointed past although it failed: its events were skipped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SkippedBatch {
    pub partition_id: String,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
    pub events: u64,
    pub attempts: u32,
    pub last_error: String,
}

/// One timer (seal) invocation.
#[derive(Debug, Clone, Serialize)]
pub struct SealRecord {
    /// The occurrence (`ScheduleStatus.Next`).
    pub scheduled: DateTime<Utc>,
    pub past_due: bool,
    /// The extra run after all partitions were done.
    pub at_end: bool,
    pub status: Option<u16>,
    pub latency: Duration,
    pub error: Option<String>,
    /// The `Logs` of the answer.
    pub logs: Vec<String>,
}

/// A handler restart.
#[derive(Debug, Clone, Serialize)]
pub struct RestartRecord {
    /// The generation that died.
    pub generation: u32,
    pub reason: String,
    pub at: Duration,
    /// Per partition: where delivery resumes (first sequence number re-delivered).
    pub resume_from: Vec<(String, i64)>,
}

/// Per-partition results.
#[derive(Debug, Clone, Serialize)]
pub struct PartitionSummary {
    pub partition_id: String,
    pub events: u64,
    pub first_sequence_number: i64,
    pub last_sequence_number: i64,
    /// The last checkpointed sequence number.
    pub checkpoint: Option<i64>,
    /// Events of batches answered 2xx at least once.
    pub acknowledged_events: u64,
    /// Batches answered 2xx (distinct).
    pub batches: u64,
    pub invocations: u64,
    pub retries: u64,
    pub failed_invocations: u64,
    /// Batches delivered again after a restart (at-least-once).
    pub redeliveries: u64,
    pub skipped: Vec<SkippedBatch>,
}

/// What a run did, for people (Display) and for tests and benchmarks (fields).
#[derive(Debug, Clone, Serialize)]
pub struct SimulationSummary {
    pub handler: PathBuf,
    pub lake_url: String,
    pub eventhub: String,
    pub consumer_group: String,
    pub batch_size: usize,
    pub checkpoint_frequency: u32,
    pub retry_policy: Option<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub elapsed: Duration,
    pub partitions: Vec<PartitionSummary>,
    pub invocations: Vec<InvocationRecord>,
    pub seals: Vec<SealRecord>,
    pub restarts: Vec<RestartRecord>,
    pub lake: Option<LakeSummary>,
    /// Why the lake could not be listed, if it could not.
    pub lake_error: Option<String>,
}

impl SimulationSummary {
    /// Events in the simulated Event Hub.
    pub fn events_total(&self) -> u64 {
        self.partitions.iter().map(|p| p.events).sum()
    }

    /// Events sent, counting every attempt and re-delivery.
    pub fn events_sent(&self) -> u64 {
        self.invocations.iter().map(|i| i.events).sum()
    }

    /// Events whose batch was answered 2xx.
    pub fn events_acknowledged(&self) -> u64 {
        self.partitions.iter().map(|p| p.acknowledged_events).sum()
    }

    /// Distinct batches answered 2xx.
    pub fn batches(&self) -> u64 {
        self.partitions.iter().map(|p| p.batches).sum()
    }

    pub fn retries(&self) -> u64 {
        self.partitions.iter().map(|p| p.retries).sum()
    }

    pub fn failed_invocations(&self) -> u64 {
        self.partitions.iter().map(|p| p.failed_invocations).sum()
    }

    pub fn redeliveries(&self) -> u64 {
        self.partitions.iter().map(|p| p.redeliveries).sum()
    }

    /// Batches checkpointed past after failing (their events were skipped).
    pub fn skipped_batches(&self) -> Vec<&SkippedBatch> {
        self.partitions.iter().flat_map(|p| p.skipped.iter()).collect()
    }

    pub fn events_skipped(&self) -> u64 {
        self.skipped_batches().iter().map(|b| b.events).sum()
    }

    /// The highest `RetryContext.RetryCount` sent.
    pub fn max_retry_count(&self) -> u32 {
        self.invocations.iter().map(|i| i.retry_count).max().unwrap_or(0)
    }

    /// Latencies of successful ingest invocations, sorted.
    pub fn latencies(&self) -> Vec<Duration> {
        let mut l: Vec<Duration> = self
            .invocations
            .iter()
            .filter(|i| i.outcome.is_success())
            .map(|i| i.latency)
            .collect();
        l.sort();
        l
    }
}

/// Guards the shared state a hook or the engine updates.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
