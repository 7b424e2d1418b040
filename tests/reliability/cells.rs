//! The cells of the fault matrix. Each cell starts its own handler (and proxy, and
//! where it must stop storage, its own Azurite), drives it — through the Functions-host
//! simulator or with host-shaped requests — and ends with [`checker::check`] on the lake.

use std::collections::BTreeSet;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use hub2lake::host::wire::{WireDataType, WireEvent, WirePartition};
use hub2lake_cli::simulator::events::Hub;
use hub2lake_cli::simulator::{
    self, ChangeStreamConfig, EventHubIdentity, EventSource, FaultPlan, InvocationRecord, Observer,
    Outcome as SimOutcome, RetryPolicy, SimulationSummary, SimulatorConfig,
};
use hub2lake_testkit::azurite::{object_store_env, Azurite};
use hub2lake_testkit::fault_proxy::{FaultProxy, Rule};

use super::checker::{self, assert_no_panic, far_future, Expect, LakeView, Outcome};
use super::handler::{change_event, request, wire_events, HandlerProc};

/// What every cell shares: one Azurite for the cells that do not stop it, and where
/// handler logs go.
pub struct Ctx {
    pub azurite: Arc<Azurite>,
    pub logs: PathBuf,
    /// Containers made on the shared Azurite (the soak empties them as it goes).
    pub containers: Mutex<Vec<String>>,
}

impl Ctx {
    pub fn new(azurite: Azurite, logs: PathBuf) -> Self {
        Self {
            azurite: Arc::new(azurite),
            logs,
            containers: Mutex::new(Vec::new()),
        }
    }

    /// Deletes every object of the containers cells made so far (long soaks would
    /// otherwise fill Azurite's disk).
    pub async fn empty_containers(&self) {
        let names: Vec<String> = std::mem::take(&mut *self.containers.lock().unwrap());
        for name in names {
            let store = hub2lake_testkit::azurite::object_store_builder(&self.azurite.base_url(), &name)
                .build()
                .expect("store builds");
            let lake = hub2lake::lake::Lake::from_store(Arc::new(store), "", true, format!("cleanup {name}"));
            if let Ok(objects) = lake.list("").await {
                for o in objects {
                    let _ = lake.delete(&o.path).await;
                }
            }
        }
    }
}

/// Every cell: name, backend, what it does.
pub const CELLS: &[(&str, &str, &str)] = &[
    ("baseline", "azurite", "simulator, no faults (proxy passes everything)"),
    ("storage-500", "azurite", "proxy answers 500 to 40% of PUTs"),
    ("storage-503", "azurite", "proxy answers 503 to 40% of PUTs"),
    (
        "storage-429",
        "azurite",
        "proxy answers 429 + Retry-After: 1 to 30% of PUTs",
    ),
    ("storage-reset", "azurite", "proxy resets the connection on 30% of PUTs"),
    (
        "storage-lost-response",
        "azurite",
        "PUT applied, response lost (reset) on 35%",
    ),
    (
        "storage-latency",
        "azurite",
        "latency on half the requests, 1.5 s slow responses past a 1 s timeout",
    ),
    (
        "storage-outage",
        "azurite",
        "full outage (connections refused) mid-run, then recovery",
    ),
    (
        "azurite-stop-restart",
        "azurite",
        "Azurite stopped mid-run, restarted 1 s later",
    ),
    (
        "handler-sigkill",
        "local",
        "handler SIGKILLed 3 times with batches in flight, restarted",
    ),
    (
        "handler-sigkill-azure",
        "azurite",
        "handler SIGKILLed twice mid-write (slow storage), restarted",
    ),
    (
        "retry-exhausted-gap",
        "azurite",
        "finite retry policy, one batch's receipt fails forever: skipped, gap",
    ),
    (
        "outage-finite-retry",
        "local",
        "an hour folder unwritable, finite retries: batches skipped, gaps",
    ),
    ("partitions-16", "local", "16 partitions delivered concurrently"),
    (
        "redelivery-boundaries",
        "local",
        "0-99, 50-149, 0-149, re-ordered and duplicated batches",
    ),
    (
        "redelivery-azure",
        "azurite",
        "re-deliveries with new boundaries, lost storage responses",
    ),
    (
        "oversized-413",
        "local",
        "batch over the body limit: 413 (with and without Content-Length), gap",
    ),
    (
        "poison-binary",
        "local",
        "invalid UTF-8/base64/JSON, non-objects, 10k nesting, 5 MB, empty",
    ),
    ("poison-string", "azurite", "the same bodies as dataType string"),
    (
        "hostile-routes",
        "local",
        "routes and partition ids with .., /, %2e, NUL, 10 KB, fullwidth, ...",
    ),
    ("hostile-routes-azure", "azurite", "the same on Azure Blob"),
    (
        "clock-skew",
        "local",
        "enqueued times 10 days back and 5 hours ahead, backwards in a batch",
    ),
    (
        "sigterm-mid-batch",
        "local",
        "SIGTERM with a large batch in flight, 4 times",
    ),
];

pub type CellFuture = Pin<Box<dyn Future<Output = Outcome> + Send>>;

/// Runs one cell (panics with the reason when the invariant does not hold).
pub fn run(name: &'static str, ctx: Arc<Ctx>, seed: u64) -> CellFuture {
    match name {
        "baseline" => Box::pin(proxied(ctx, name, seed, |_| {})),
        "storage-500" => Box::pin(proxied(ctx, name, seed, |p| {
            p.add_rule(Rule::status(500).method("PUT").probability(0.4).max_faults(25));
        })),
        "storage-503" => Box::pin(proxied(ctx, name, seed, |p| {
            p.add_rule(Rule::status(503).method("PUT").probability(0.4).max_faults(25));
        })),
        "storage-429" => Box::pin(proxied(ctx, name, seed, |p| {
            p.add_rule(Rule::throttle(1).method("PUT").probability(0.3).max_faults(8));
        })),
        "storage-reset" => Box::pin(proxied(ctx, name, seed, |p| {
            p.add_rule(Rule::reset().method("PUT").probability(0.3).max_faults(25));
        })),
        "storage-lost-response" => Box::pin(proxied(ctx, name, seed, |p| {
            p.add_rule(Rule::lose_response().method("PUT").probability(0.35).max_faults(25));
        })),
        "storage-latency" => Box::pin(proxied(ctx, name, seed, |p| {
            p.add_rule(
                Rule::slow_response(Duration::from_millis(1500))
                    .method("PUT")
                    .probability(0.1)
                    .max_faults(6),
            );
            p.add_rule(Rule::latency(Duration::from_millis(60)).probability(0.5));
        })),
        "storage-outage" => Box::pin(storage_outage(ctx, seed)),
        "azurite-stop-restart" => Box::pin(azurite_stop_restart(ctx, seed)),
        "handler-sigkill" => Box::pin(handler_sigkill(ctx, seed)),
        "handler-sigkill-azure" => Box::pin(handler_sigkill_azure(ctx, seed)),
        "retry-exhausted-gap" => Box::pin(retry_exhausted_gap(ctx, seed)),
        "outage-finite-retry" => Box::pin(outage_finite_retry(ctx, seed)),
        "partitions-16" => Box::pin(partitions_16(ctx, seed)),
        "redelivery-boundaries" => Box::pin(redelivery(ctx, seed, false)),
        "redelivery-azure" => Box::pin(redelivery(ctx, seed, true)),
        "oversized-413" => Box::pin(oversized(ctx, seed)),
        "poison-binary" => Box::pin(poison(ctx, seed, true)),
        "poison-string" => Box::pin(poison(ctx, seed, false)),
        "hostile-routes" => Box::pin(hostile_routes(ctx, seed, false)),
        "hostile-routes-azure" => Box::pin(hostile_routes(ctx, seed, true)),
        "clock-skew" => Box::pin(clock_skew(ctx, seed)),
        "sigterm-mid-batch" => Box::pin(sigterm(ctx, seed)),
        other => panic!("unknown cell {other}"),
    }
}

// ---------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------

/// Simulated events start 40 minutes past the hour, 30 hours ago: two hour boundaries,
/// all in the past.
fn sim_start() -> DateTime<Utc> {
    Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(30) + TimeDelta::minutes(40)
}

fn log_path(ctx: &Ctx, name: &str, seed: u64) -> PathBuf {
    let p = ctx.logs.join(format!("{name}-{seed}.log"));
    let _ = std::fs::remove_file(&p);
    p
}

/// A container name from a cell name and seed (3-63 lowercase, digits, hyphens).
fn container(name: &str, seed: u64) -> String {
    let mut c = format!("{name}-{seed:x}");
    c.truncate(63);
    c.trim_end_matches('-').to_string()
}

const PREFIX: &str = "raw/events";

/// A lake on Azurite: the container is created, the view reads it directly (not
/// through any proxy).
struct AzLake {
    view: LakeView,
    container: String,
    _scratch: tempfile::TempDir,
}

/// A lake in a new container of the shared Azurite.
async fn shared_lake(ctx: &Ctx, container: String) -> AzLake {
    ctx.containers.lock().unwrap().push(container.clone());
    az_lake(&ctx.azurite, container).await
}

async fn az_lake(az: &Azurite, container: String) -> AzLake {
    az.create_container(&container).await.expect("container is created");
    let scratch = tempfile::tempdir().unwrap();
    let view = LakeView::azurite(&az.base_url(), &container, PREFIX, scratch.path());
    AzLake {
        view,
        container,
        _scratch: scratch,
    }
}

/// Handler settings for an Azure lake reached at `base_url` (Azurite or a proxy).
fn az_env(base_url: &str, container: &str) -> Vec<(String, String)> {
    let env = object_store_env(base_url, container);
    let mut vars = env.vars;
    vars.push(("HUB2LAKE_LAKE_URL".into(), format!("az://{container}/{PREFIX}")));
    vars
}

/// Handler settings for a local-filesystem lake at `root`.
fn local_env(root: &Path) -> Vec<(String, String)> {
    vec![("HUB2LAKE_LAKE_URL".into(), format!("file://{}", root.display()))]
}

fn storage_env(retries: u32, budget_secs: u32, timeout_secs: u32) -> Vec<(String, String)> {
    vec![
        ("HUB2LAKE_STORAGE_MAX_RETRIES".into(), retries.to_string()),
        ("HUB2LAKE_STORAGE_RETRY_SECS".into(), budget_secs.to_string()),
        ("HUB2LAKE_STORAGE_TIMEOUT_SECS".into(), timeout_secs.to_string()),
    ]
}

/// A simulator run.
struct Sim {
    events: u64,
    partitions: u32,
    batch: usize,
    seed: u64,
    retry: Option<RetryPolicy>,
    faults: FaultPlan,
    env: Vec<(String, String)>,
    observer: Option<Arc<dyn Observer>>,
    start: DateTime<Utc>,
}

impl Sim {
    fn new(events: u64, partitions: u32, batch: usize, seed: u64) -> Self {
        Self {
            events,
            partitions,
            batch,
            seed,
            // functions/ingest/function.json: exponential backoff, forever.
            retry: Some(RetryPolicy::exponential(
                -1,
                Duration::from_secs(5),
                Duration::from_secs(300),
            )),
            faults: FaultPlan::new(),
            env: Vec::new(),
            observer: None,
            start: sim_start(),
        }
    }

    async fn run(self, cwd: &Path, log: &Path) -> (SimulationSummary, Expect) {
        let span = Duration::from_secs(2 * 3600);
        let source = EventSource::ChangeStream(ChangeStreamConfig {
            events: self.events,
            event_size: 300,
            seed: self.seed,
        });
        let mut c = SimulatorConfig::new(hub2lake_testkit::handler_exe(), "file:///unset");
        c.settings.clear();
        c.settings.extend(self.env.iter().cloned());
        c.settings.insert("RUST_LOG".into(), "info".into());
        c.settings.insert("HUB2LAKE_LOG_FORMAT".into(), "text".into());
        c.settings.insert("NO_COLOR".into(), "1".into());
        c.inherit_env = false;
        c.app_root = cwd.to_path_buf();
        c.handler_log = Some(log.to_path_buf());
        c.source = source.clone();
        c.partitions = self.partitions;
        c.first_sequence_number = 0;
        c.start = self.start;
        c.span = span;
        c.batch_size = self.batch;
        c.ingest.retry = self.retry;
        c.time_scale = 0.001;
        c.invocation_timeout = Duration::from_secs(60);
        c.max_restarts = 10;
        c.faults = self.faults;
        c.observer = self.observer;
        c.list_lake = false;
        let identity = c.eventhub.clone();
        // `simulator::run`'s future is not `Send` (it holds the config, whose failure
        // hooks are not `Sync`, across awaits): drive it on a blocking thread.
        let handle = tokio::runtime::Handle::current();
        let summary = tokio::task::spawn_blocking(move || {
            handle.block_on(tokio::time::timeout(Duration::from_secs(120), simulator::run(c)))
        })
        .await
        .expect("the simulation thread ends")
        .expect("the simulation ends within 120 s")
        .unwrap_or_else(|e| panic!("the simulation fails: {e}"));
        let hub = Hub::new(source, self.partitions, 0, self.start, span);
        let expect = expect_from(&summary, &hub, &identity);
        (summary, expect)
    }
}

/// What the host saw, as an expectation on the lake.
fn expect_from(summary: &SimulationSummary, hub: &Hub, id: &EventHubIdentity) -> Expect {
    let mut e = Expect::new(&id.namespace, &id.name, &id.consumer_group);
    for (p, plan) in hub.partitions.iter().enumerate() {
        for i in 0..plan.events {
            let ev = hub.event(p, i);
            let id = checker::expected_event_id(
                &e.namespace,
                &e.eventhub,
                &plan.partition_id,
                ev.sequence_number,
                &ev.body,
            );
            e.produced.insert((plan.partition_id.clone(), ev.sequence_number), id);
        }
    }
    for inv in &summary.invocations {
        let range = inv.first_sequence_number..=inv.last_sequence_number;
        for s in range.clone() {
            e.sent.insert((inv.partition_id.clone(), s));
        }
        match &inv.outcome {
            SimOutcome::Succeeded { .. } => {
                e.acked_batches.insert((
                    inv.partition_id.clone(),
                    inv.first_sequence_number,
                    inv.last_sequence_number,
                ));
                for s in range {
                    e.acked.insert((inv.partition_id.clone(), s));
                }
            }
            SimOutcome::Failed { status, .. } => {
                if status.is_none_or(|s| s >= 500) {
                    e.answered_5xx += 1;
                }
            }
            SimOutcome::HandlerDied { .. } => {}
        }
    }
    e.restarts = summary.restarts.len() as u64;
    e
}

fn note_summary(out: &mut Outcome, summary: &SimulationSummary) {
    out.notes.push(format!(
        "{} invocations, {} retries, {} skipped batches",
        summary.invocations.len(),
        summary.retries(),
        summary.skipped_batches().len()
    ));
}

/// The usual end of a cell: the checker, then the handler's output; the handler's
/// working directory holds nothing but (for local lakes) the lake.
async fn finish(view: &LakeView, expect: &Expect, log: &Path, cwd: &Path) -> Outcome {
    let mut out = checker::check(view, expect, far_future()).await;
    let stray: Vec<_> = checker::walk(cwd)
        .into_iter()
        .filter(|f| !f.starts_with(cwd.join("lake")))
        .collect();
    assert!(
        stray.is_empty(),
        "the handler wrote into its working directory: {stray:?}"
    );
    let lines = assert_no_panic(log);
    out.notes.push(format!("{lines} handler log lines"));
    out
}

/// The end of a simulator cell: [`finish`], and what the simulated host did.
async fn finish_sim(view: &LakeView, expect: &Expect, log: &Path, cwd: &Path, summary: &SimulationSummary) -> Outcome {
    let mut out = finish(view, expect, log, cwd).await;
    note_summary(&mut out, summary);
    out
}

// ---------------------------------------------------------------------------------
// Simulator cells against Azurite behind a fault proxy
// ---------------------------------------------------------------------------------

async fn proxied(ctx: Arc<Ctx>, name: &'static str, seed: u64, rules: impl FnOnce(&FaultProxy)) -> Outcome {
    let log = log_path(&ctx, name, seed);
    let az = &ctx.azurite;
    let lake = shared_lake(&ctx, container(name, seed)).await;
    let proxy = FaultProxy::start(az.addr(), seed).await.unwrap();
    rules(&proxy);
    let mut sim = Sim::new(600, 3, 50, seed);
    sim.env = az_env(&proxy.base_url(), &lake.container);
    // One in-process retry, a 3 s budget; a 1 s request timeout where responses are
    // held for 1.5 s (the write is applied, the handler gives up waiting).
    let timeout = if name == "storage-latency" { 1 } else { 2 };
    sim.env.extend(storage_env(1, 3, timeout));
    let cwd = tempfile::tempdir().unwrap();
    let (summary, expect) = sim.run(cwd.path(), &log).await;
    assert!(summary.skipped_batches().is_empty(), "retrying forever skips nothing");
    assert_eq!(
        expect.acked.len() as u64,
        summary.events_total(),
        "every event acknowledged"
    );
    let stats = proxy.stats();
    if name != "baseline" {
        assert!(stats.faults() > 0, "the proxy injected faults: {stats:?}");
    }
    let mut out = finish(&lake.view, &expect, &log, cwd.path()).await;
    out.notes
        .push(format!("proxy: {} requests, {} faults", stats.requests, stats.faults()));
    note_summary(&mut out, &summary);
    out
}

async fn storage_outage(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "storage-outage";
    let log = log_path(&ctx, name, seed);
    let az = &ctx.azurite;
    let lake = shared_lake(&ctx, container(name, seed)).await;
    let proxy = FaultProxy::start(az.addr(), seed).await.unwrap();
    let mut sim = Sim::new(600, 3, 50, seed);
    sim.env = az_env(&proxy.base_url(), &lake.container);
    sim.env.extend(storage_env(1, 1, 2));
    // The outage begins once storage has seen some traffic and ends after the third
    // failed invocation.
    let start_outage = proxy.handle();
    let outage = tokio::spawn(async move {
        for _ in 0..2000 {
            if start_outage.stats().requests >= 25 {
                start_outage.set_outage(true);
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    });
    let end_outage = proxy.handle();
    sim.faults = FaultPlan::new().after_failures(3, move |_| end_outage.set_outage(false));
    let cwd = tempfile::tempdir().unwrap();
    let (summary, expect) = sim.run(cwd.path(), &log).await;
    proxy.set_outage(false);
    assert!(outage.await.unwrap(), "the outage began");
    assert!(expect.answered_5xx >= 3, "the outage was answered 5xx");
    assert!(summary.skipped_batches().is_empty());
    let out = finish_sim(&lake.view, &expect, &log, cwd.path(), &summary).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("batch NOT written; answering non-2xx so the host retries"),
        "the operator sees why batches failed"
    );
    out
}

/// Counts successful invocations; runs `action` once at the n-th.
struct AfterSuccesses {
    n: u64,
    seen: AtomicU64,
    action: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
}

impl Observer for AfterSuccesses {
    fn invocation(&self, record: &InvocationRecord) {
        if record.outcome.is_success() && self.seen.fetch_add(1, Ordering::SeqCst) + 1 == self.n {
            if let Some(tx) = self.action.lock().unwrap().take() {
                let _ = tx.send(());
            }
        }
    }
}

fn after_successes(n: u64) -> (Arc<AfterSuccesses>, tokio::sync::oneshot::Receiver<()>) {
    let (tx, rx) = tokio::sync::oneshot::channel();
    (
        Arc::new(AfterSuccesses {
            n,
            seen: AtomicU64::new(0),
            action: Mutex::new(Some(tx)),
        }),
        rx,
    )
}

async fn azurite_stop_restart(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "azurite-stop-restart";
    let log = log_path(&ctx, name, seed);
    let mut az = Azurite::start().await.expect("Azurite starts (run `npm ci`)");
    let lake = az_lake(&az, container(name, seed)).await;
    let mut sim = Sim::new(600, 3, 50, seed);
    sim.env = az_env(&az.base_url(), &lake.container);
    sim.env.extend(storage_env(1, 1, 2));
    let (observer, fired) = after_successes(6);
    sim.observer = Some(observer);
    // Storage goes away while batches are being written and comes back 1 s later.
    let outage = tokio::spawn(async move {
        let began = fired.await.is_ok();
        if began {
            az.stop().await.unwrap();
            tokio::time::sleep(Duration::from_secs(1)).await;
            az.restart().await.unwrap();
        }
        (az, began)
    });
    let cwd = tempfile::tempdir().unwrap();
    let (summary, expect) = sim.run(cwd.path(), &log).await;
    // Azurite is back on the same port; it stays alive until the check is done.
    let (_az, began) = outage.await.unwrap();
    assert!(began, "the outage began");
    finish_sim(&lake.view, &expect, &log, cwd.path(), &summary).await
}

async fn retry_exhausted_gap(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "retry-exhausted-gap";
    let log = log_path(&ctx, name, seed);
    let az = &ctx.azurite;
    let lake = shared_lake(&ctx, container(name, seed)).await;
    let proxy = FaultProxy::start(az.addr(), seed).await.unwrap();
    // Partition 1's third batch (100..149) can never write its receipt.
    proxy.add_rule(
        Rule::status(503)
            .method("PUT")
            .path_contains("/_receipts/mongo-changes/hub2lake/1/100-149.json"),
    );
    let mut sim = Sim::new(600, 2, 50, seed);
    sim.retry = Some(RetryPolicy::fixed(2, Duration::from_secs(2)));
    sim.env = az_env(&proxy.base_url(), &lake.container);
    sim.env.extend(storage_env(1, 2, 2));
    let cwd = tempfile::tempdir().unwrap();
    let (summary, mut expect) = sim.run(cwd.path(), &log).await;
    let skipped: Vec<_> = summary
        .skipped_batches()
        .into_iter()
        .map(|b| (b.partition_id.clone(), b.first_sequence_number, b.last_sequence_number))
        .collect();
    assert_eq!(skipped, [("1".to_string(), 100, 149)], "exactly that batch is skipped");
    expect.exact_gaps = Some(skipped.into_iter().collect());
    let out = finish_sim(&lake.view, &expect, &log, cwd.path(), &summary).await;
    // What the operator sees: the seal's warning names the exact range.
    assert!(
        out.seal_warnings
            .iter()
            .any(|w| w.contains("sealed incomplete") && w.contains("missing sequence numbers 100..149 (50 events)")),
        "{:?}",
        out.seal_warnings
    );
    out
}

// ---------------------------------------------------------------------------------
// Simulator cells on a local lake
// ---------------------------------------------------------------------------------

async fn handler_sigkill(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "handler-sigkill";
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let view = LakeView::local(parent.path());
    let mut sim = Sim::new(600, 3, 50, seed);
    sim.env = local_env(&parent.path().join("lake"));
    sim.faults = FaultPlan::new()
        .kill_during(0, 1, Duration::ZERO)
        .kill_during(1, 2, Duration::from_millis(3))
        .kill_during(2, 3, Duration::from_millis(15));
    let (summary, expect) = sim.run(parent.path(), &log).await;
    // Two kill points may hit one process (batches in flight at once): 1 to 3 restarts.
    assert!((1..=3).contains(&summary.restarts.len()), "{:#?}", summary.restarts);
    assert!(summary.skipped_batches().is_empty());
    finish_sim(&view, &expect, &log, parent.path(), &summary).await
}

async fn handler_sigkill_azure(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "handler-sigkill-azure";
    let log = log_path(&ctx, name, seed);
    let az = &ctx.azurite;
    let lake = shared_lake(&ctx, container(name, seed)).await;
    // Slow storage widens the window in which a batch is half written.
    let proxy = FaultProxy::start(az.addr(), seed).await.unwrap();
    proxy.add_rule(Rule::latency(Duration::from_millis(40)).method("PUT"));
    let mut sim = Sim::new(400, 2, 50, seed);
    sim.env = az_env(&proxy.base_url(), &lake.container);
    sim.faults = FaultPlan::new()
        .kill_during(0, 1, Duration::from_millis(60))
        .kill_during(1, 2, Duration::from_millis(100));
    let cwd = tempfile::tempdir().unwrap();
    let (summary, expect) = sim.run(cwd.path(), &log).await;
    assert!((1..=2).contains(&summary.restarts.len()), "{:#?}", summary.restarts);
    finish_sim(&lake.view, &expect, &log, cwd.path(), &summary).await
}

async fn outage_finite_retry(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "outage-finite-retry";
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let view = LakeView::local(parent.path());
    let root = parent.path().join("lake");
    // A regular file where the second hour's shop/orders folder must go: every batch
    // with such an event fails with a real I/O error until it is removed.
    let start = sim_start();
    let second_hour = start.duration_trunc(TimeDelta::hours(1)).unwrap() + TimeDelta::hours(1);
    let blocker = root
        .join("shop/orders")
        .join(second_hour.format("%Y/%m/%d/%H").to_string());
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"not a directory").unwrap();
    let mut sim = Sim::new(600, 2, 50, seed);
    sim.start = start;
    sim.retry = Some(RetryPolicy::fixed(1, Duration::from_secs(1)));
    sim.env = local_env(&root);
    let unblock = blocker.clone();
    sim.faults = FaultPlan::new().after_failures(5, move |_| std::fs::remove_file(&unblock).unwrap());
    let (summary, expect) = sim.run(parent.path(), &log).await;
    assert!(!blocker.is_file(), "the outage ended");
    assert!(!summary.skipped_batches().is_empty(), "batches were checkpointed past");
    let out = finish_sim(&view, &expect, &log, parent.path(), &summary).await;
    assert!(out.gap_ranges >= 1, "the skipped batches show up as gaps");
    out
}

async fn partitions_16(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "partitions-16";
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let view = LakeView::local(parent.path());
    let mut sim = Sim::new(2400, 16, 50, seed);
    sim.env = local_env(&parent.path().join("lake"));
    let (summary, expect) = sim.run(parent.path(), &log).await;
    assert_eq!(summary.events_acknowledged(), 2400);
    finish_sim(&view, &expect, &log, parent.path(), &summary).await
}

// ---------------------------------------------------------------------------------
// Host-shaped requests, driven directly
// ---------------------------------------------------------------------------------

/// A handler driven with host-shaped requests, and what the host saw.
struct Driver {
    h: HandlerProc,
    expect: Expect,
    data_type: WireDataType,
}

const NS: &str = "contoso-ehns.servicebus.windows.net";
const HUB: &str = "mongo-changes";
const CG: &str = "hub2lake";

fn partition(id: &str) -> WirePartition {
    WirePartition {
        namespace: NS.into(),
        eventhub: HUB.into(),
        consumer_group: CG.into(),
        partition_id: id.into(),
    }
}

impl Driver {
    async fn start(env: &[(String, String)], log: &Path, cwd: &Path, data_type: WireDataType) -> Self {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        Self {
            h: HandlerProc::start(&env, log, cwd).await,
            expect: Expect::new(NS, HUB, CG),
            data_type,
        }
    }

    /// One delivery; `logical` are the bodies the handler decodes (defaults to the
    /// wire bodies).
    async fn deliver_as(
        &mut self,
        part: &WirePartition,
        events: &[WireEvent],
        logical: Option<&[Vec<u8>]>,
        retry: i64,
    ) -> Option<u16> {
        let body = request(part, events, self.data_type, retry);
        let status = match self.h.post("ingest", body).await {
            Ok((s, text)) => {
                if !(200..300).contains(&s) {
                    tracing_note(&self.h.log, &format!("HTTP {s}: {text}"));
                }
                Some(s)
            }
            Err(e) => {
                tracing_note(&self.h.log, &format!("no answer: {e}"));
                None
            }
        };
        let pairs: Vec<(i64, Vec<u8>)> = events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let body = logical.map_or_else(|| e.body.clone(), |l| l[i].clone());
                (e.sequence_number, body)
            })
            .collect();
        self.expect.delivery(&part.partition_id, &pairs, status);
        status
    }

    async fn deliver(&mut self, part: &WirePartition, events: &[WireEvent]) -> Option<u16> {
        self.deliver_as(part, events, None, 0).await
    }

    /// The host's retry policy: re-deliver until 2xx (bounded).
    async fn deliver_until_ok(&mut self, part: &WirePartition, events: &[WireEvent]) -> u16 {
        let mut last = None;
        for retry in 0..40 {
            last = self.deliver_as(part, events, None, retry).await;
            if last.is_some_and(|s| (200..300).contains(&s)) {
                return last.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!(
            "batch {}..{} never succeeded: {last:?}",
            events[0].sequence_number,
            events.last().unwrap().sequence_number
        )
    }
}

/// Test-side notes go into the handler's log file, marked, so one file tells the story.
fn tracing_note(log: &Path, line: &str) {
    use std::io::Write as _;
    if let Ok(mut f) = std::fs::OpenOptions::new().append(true).create(true).open(log) {
        let mut line = line.to_string();
        line.truncate(600);
        let _ = writeln!(f, "[test] {line}");
    }
}

/// Change events `seqs` of partition `pid`, spread over `routes`, `spacing` seconds
/// apart from 30 hours ago (10 minutes before an hour ends).
fn change_events_spaced(
    pid: &str,
    seqs: std::ops::RangeInclusive<i64>,
    routes: &[(&str, &str)],
    spacing: i64,
) -> Vec<WireEvent> {
    let base = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(30) + TimeDelta::minutes(50);
    wire_events(seqs.map(|s| {
        let (db, coll) = routes[(s as usize * 7 + s as usize / 13) % routes.len()];
        (
            s,
            change_event(db, coll, pid, s),
            base + TimeDelta::seconds(s * spacing),
        )
    }))
}

/// Change events 7 s apart: a batch of 100 crosses an hour boundary.
fn change_events(pid: &str, seqs: std::ops::RangeInclusive<i64>, routes: &[(&str, &str)]) -> Vec<WireEvent> {
    change_events_spaced(pid, seqs, routes, 7)
}

const ROUTES: &[(&str, &str)] = &[("shop", "orders"), ("shop", "customers"), ("crm", "contacts")];

async fn redelivery(ctx: Arc<Ctx>, seed: u64, azure: bool) -> Outcome {
    let name = if azure {
        "redelivery-azure"
    } else {
        "redelivery-boundaries"
    };
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let mut _proxy = None;
    let (view, env, _az) = if azure {
        let lake = shared_lake(&ctx, container(name, seed)).await;
        let proxy = FaultProxy::start(ctx.azurite.addr(), seed).await.unwrap();
        proxy.add_rule(Rule::lose_response().method("PUT").probability(0.3).max_faults(30));
        let mut env = az_env(&proxy.base_url(), &lake.container);
        env.extend(storage_env(1, 2, 2));
        _proxy = Some(proxy);
        let AzLake { view, _scratch, .. } = lake;
        (view, env, Some(_scratch))
    } else {
        let view = LakeView::local(parent.path());
        let env = vec![(
            "HUB2LAKE_LAKE_URL".to_string(),
            format!("file://{}", parent.path().join("lake").display()),
        )];
        (view, env, None)
    };
    let mut d = Driver::start(&env, &log, parent.path(), WireDataType::String).await;
    let p0 = partition("0");
    let p1 = partition("1");
    // One hour (events 1 s apart), routes interleaved: every re-delivery with other
    // boundaries writes objects of its own names. (Same-named objects from other
    // boundaries: `bug_retried_batch_records_a_wrong_sha256_and_blocks_the_seal`.)
    let all0 = change_events_spaced("0", 0..=299, ROUTES, 1);
    let all1 = change_events_spaced("1", 0..=99, ROUTES, 1);
    let all2 = change_events_spaced("2", 0..=99, ROUTES, 1);
    let slice = |all: &[WireEvent], a: usize, b: usize| all[a..=b].to_vec();
    // Batch boundaries differ on every re-delivery; some arrive out of order.
    for (a, b) in [
        (0, 99),
        (50, 149),
        (0, 149),
        (200, 299),
        (150, 199),
        (150, 199),
        (100, 249),
    ] {
        d.deliver_until_ok(&p0, &slice(&all0, a, b)).await;
    }
    for (a, b) in [(0, 49), (0, 49), (25, 74), (75, 99), (0, 99)] {
        d.deliver_until_ok(&p1, &slice(&all1, a, b)).await;
    }
    // Two hosts delivering at once (a lease being stolen): the same batch twice and an
    // overlapping one, concurrently; then whatever failed, until it succeeds.
    let p2 = partition("2");
    let concurrent = [(0usize, 59usize), (0, 59), (30, 99)];
    let posts = concurrent.map(|(a, b)| {
        let body = request(&p2, &slice(&all2, a, b), WireDataType::String, 0);
        d.h.post("ingest", body)
    });
    let answers = futures::future::join_all(posts).await;
    for ((a, b), answer) in concurrent.into_iter().zip(answers) {
        let status = answer.as_ref().ok().map(|(s, _)| *s);
        let events = slice(&all2, a, b);
        let pairs: Vec<(i64, Vec<u8>)> = events.iter().map(|e| (e.sequence_number, e.body.clone())).collect();
        d.expect.delivery("2", &pairs, status);
        if status != Some(200) {
            d.deliver_until_ok(&p2, &events).await;
        }
    }
    d.expect.exact_gaps = Some(BTreeSet::new());
    // What the operator sees after failed attempts: /healthz counts them and shows the
    // last storage error.
    let health = d.h.health().await;
    if d.expect.answered_5xx > 0 {
        assert!(health["last_storage_error"].is_string(), "{health}");
        let failed: u64 = ["mongo-changes/0", "mongo-changes/1", "mongo-changes/2"]
            .iter()
            .map(|k| health["partitions"][k]["failed_batches"].as_u64().unwrap_or(0))
            .sum();
        assert_eq!(failed, d.expect.answered_5xx, "{health}");
    }
    let out = finish(&view, &d.expect, &log, parent.path()).await;
    assert_eq!(out.in_lake, 500);
    out
}

async fn oversized(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "oversized-413";
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let view = LakeView::local(parent.path());
    let env = vec![
        (
            "HUB2LAKE_LAKE_URL".to_string(),
            format!("file://{}", parent.path().join("lake").display()),
        ),
        ("HUB2LAKE_MAX_REQUEST_BYTES".to_string(), "200000".to_string()),
    ];
    let mut d = Driver::start(&env, &log, parent.path(), WireDataType::String).await;
    let p = partition("0");
    let small = change_events("0", 0..=149, ROUTES);
    let big_body = |s: i64| {
        let mut v = serde_json::json!({"n": s, "pad": "x".repeat(8000)})
            .to_string()
            .into_bytes();
        v.shrink_to_fit();
        v
    };
    let t = small[50].enqueued_time;
    let big: Vec<WireEvent> = wire_events((50..=99).map(|s| (s, big_body(s), t)));

    assert_eq!(d.deliver(&p, &small[0..50]).await, Some(200));
    // With Content-Length: refused before the body is read.
    let status = d.deliver(&p, &big).await;
    assert_eq!(status, Some(413), "an oversized batch is answered 413");
    // Without Content-Length (chunked): refused while reading.
    let body = request(&p, &big, WireDataType::String, 1);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        body.into_bytes().chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
    let stream = futures::stream::iter(chunks);
    let answer = d.h.post("ingest", reqwest::Body::wrap_stream(stream)).await;
    let chunked_status = answer.as_ref().ok().map(|(s, _)| *s);
    let pairs: Vec<(i64, Vec<u8>)> = big.iter().map(|e| (e.sequence_number, e.body.clone())).collect();
    d.expect.delivery("0", &pairs, chunked_status);
    assert_eq!(chunked_status, Some(413), "chunked oversized body: {answer:?}");
    let health = d.h.health().await;
    assert_eq!(health["status"], "ok");
    // The host gives up on the batch (finite retries) and moves on.
    assert_eq!(d.deliver(&p, &small[100..150]).await, Some(200));
    d.expect.exact_gaps = Some([("0".to_string(), 50, 99)].into_iter().collect());
    let mut out = finish(&view, &d.expect, &log, parent.path()).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("request refused"), "the 413 is logged");
    out.notes.push("413 with and without Content-Length".into());
    out
}

/// Poison and odd bodies: (logical bytes, how it is sent in binary mode (base64 or a
/// raw string that is not base64), dead-lettered?).
fn poison_bodies() -> Vec<(&'static str, Vec<u8>, String, bool)> {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let mut deep_open = "[".repeat(10_000).into_bytes();
    deep_open.shrink_to_fit();
    let deep_balanced = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes();
    let deep_object = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000)).into_bytes();
    let deep_object_open = "{\"a\":".repeat(10_000).into_bytes();
    let huge_ok = serde_json::json!({"blob": "y".repeat(5 << 20)})
        .to_string()
        .into_bytes();
    let mut huge_bad = b"{\"blob\": \"".to_vec();
    huge_bad.extend(std::iter::repeat_n(b'z', 5 << 20));
    vec![
        ("change event", change_event("shop", "orders", "0", 0), None, false),
        ("invalid UTF-8", vec![0xff, 0xfe, 0xfd, b'{'], None, true),
        (
            "invalid base64",
            b"!!not base64!!".to_vec(),
            Some("!!not base64!!".into()),
            true,
        ),
        ("truncated object", b"{\"truncated\": ".to_vec(), None, true),
        ("truncated array", b"[1,2".to_vec(), None, true),
        ("number", b"42".to_vec(), None, false),
        ("string", b"\"just a string\"".to_vec(), None, false),
        ("array", b"[1,2,3]".to_vec(), None, false),
        ("null", b"null".to_vec(), None, false),
        ("10k [ unclosed", deep_open, None, true),
        ("10k [] balanced", deep_balanced, None, false),
        ("10k {\"a\": balanced", deep_object, None, false),
        ("10k {\"a\": unclosed", deep_object_open, None, true),
        ("5 MB object", huge_ok, None, false),
        ("5 MB unterminated", huge_bad, None, true),
        ("empty", Vec::new(), None, false),
        ("whitespace", b"  \n\t ".to_vec(), None, false),
        (
            "pretty JSON",
            b"{\n  \"a\": [1,\n 2],\n  \"b\": \"x y\"\n}\n".to_vec(),
            None,
            false,
        ),
        ("text with NUL and newline", b"a\0b\nc".to_vec(), None, false),
        ("BOM + JSON", "\u{feff}{\"a\":1}".as_bytes().to_vec(), None, false),
        ("number beyond f64 in array", b"[1e999999]".to_vec(), None, false),
        ("trailing garbage", b"{\"a\":1} garbage".to_vec(), None, true),
        ("lone surrogate escape", br#"{"s":"\ud800"}"#.to_vec(), None, false),
        ("duplicate keys", br#"{"ns":1,"ns":2}"#.to_vec(), None, false),
        (
            "not a change event",
            br#"{"operationType":5,"ns":"x"}"#.to_vec(),
            None,
            false,
        ),
    ]
    .into_iter()
    .map(|(n, bytes, raw, dead)| {
        let wire = raw.unwrap_or_else(|| b64(&bytes));
        (n, bytes, wire, dead)
    })
    .collect()
}

async fn poison(ctx: Arc<Ctx>, seed: u64, binary: bool) -> Outcome {
    let name = if binary { "poison-binary" } else { "poison-string" };
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let (view, mut env, _keep) = if binary {
        let view = LakeView::local(parent.path());
        let env = vec![(
            "HUB2LAKE_LAKE_URL".to_string(),
            format!("file://{}", parent.path().join("lake").display()),
        )];
        (view, env, None)
    } else {
        let lake = shared_lake(&ctx, container(name, seed)).await;
        let env = az_env(&ctx.azurite.base_url(), &lake.container);
        let AzLake { view, _scratch, .. } = lake;
        (view, env, Some(_scratch))
    };
    env.push((
        "HUB2LAKE_EVENT_ENCODING".into(),
        if binary { "binary" } else { "string" }.into(),
    ));
    // Bodies travel as strings either way: base64 text in binary mode (so invalid
    // base64 can be sent), the text itself in string mode.
    let mut d = Driver::start(&env, &log, parent.path(), WireDataType::String).await;
    let p = partition("0");
    let t = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(26);
    let mut cases = poison_bodies();
    if !binary {
        // A string binding carries text: no invalid UTF-8 or base64 to send.
        cases.retain(|(n, ..)| !matches!(*n, "invalid UTF-8" | "invalid base64"));
    }
    // Big bodies get their own batches; the rest share two.
    let mut batches: Vec<Vec<usize>> = vec![Vec::new(), Vec::new()];
    for (i, (_, bytes, ..)) in cases.iter().enumerate() {
        if bytes.len() > 1 << 20 {
            batches.push(vec![i]);
        } else {
            batches[i % 2].push(i);
        }
    }
    // Poison alone in a batch, too: a batch of only dead letters.
    let only_poison: Vec<usize> = cases
        .iter()
        .enumerate()
        .filter(|(_, c)| c.3 && c.1.len() < 1 << 20)
        .map(|(i, _)| i)
        .collect();
    batches.push(only_poison);
    let mut seq = 0i64;
    for batch in &batches {
        let mut events = Vec::new();
        let mut logical = Vec::new();
        for &i in batch {
            let (_, bytes, wire, dead) = &cases[i];
            let on_wire = if binary {
                wire.clone().into_bytes()
            } else {
                bytes.clone()
            };
            events.push((seq, on_wire, t + TimeDelta::milliseconds(seq)));
            // Dead letters keep the bytes as received: what did not decode as base64
            // is kept as sent.
            let raw = if binary && *wire != base64::engine::general_purpose::STANDARD.encode(bytes) {
                wire.clone().into_bytes()
            } else {
                bytes.clone()
            };
            if *dead {
                d.expect.poison.insert(("0".to_string(), seq), Some(raw));
            }
            logical.push(bytes.clone());
            seq += 1;
        }
        let events = wire_events(events);
        let mut status = None;
        for retry in 0..5 {
            status = d.deliver_as(&p, &events, Some(&logical), retry).await;
            if status == Some(200) {
                break;
            }
        }
        assert_eq!(status, Some(200), "a batch with poison events is still written");
    }
    d.expect.exact_gaps = Some(BTreeSet::new());
    let mut out = finish(&view, &d.expect, &log, parent.path()).await;
    assert_eq!(
        out.dead_letters as usize,
        d.expect.poison.len(),
        "one dead letter per poison event, however often its batch was delivered"
    );
    out.notes.push(format!("{} bodies", cases.len()));
    out
}

/// Route values meant to escape the lake or collide with its own names.
fn hostile_values() -> Vec<String> {
    let mut v: Vec<String> = [
        "..",
        ".",
        "/",
        "a/../../b",
        "../../../../../../tmp/escape",
        "%2e%2e",
        "%2e%2e%2f%2e%2e%2fescape",
        "%2F",
        "\0",
        "x\0y",
        "\u{FF0E}\u{FF0E}",
        "\u{FF0F}",
        "\u{FF0E}\u{FF0E}\u{FF0F}\u{FF0E}\u{FF0E}\u{FF0F}escape",
        "\u{2215}",
        "\u{2044}",
        "\u{29F8}",
        "\u{FE68}",
        "\\",
        "..\\..\\escape",
        "_receipts",
        "_DEADLETTER",
        "_manifest.json",
        "_hub2lake",
        "part-g1-00000.jsonl.gz",
        "",
        " ",
        "\t\n",
        "con",
        "a:b",
        "*?<>|\"",
        "x#1",
        "\u{202E}gnp.exe",
        "e\u{0301}",
        "\u{e9}",
        "\u{FF21}",
        "\u{1F980}",
        ".hidden",
        "trailing.",
        "\u{FEFF}bom",
        "~",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push("a".repeat(10 * 1024));
    v.push(format!("{}b", "a".repeat(10 * 1024)));
    v.push("../".repeat(3400));
    v.push("\u{FF0E}".repeat(4000));
    v
}

async fn hostile_routes(ctx: Arc<Ctx>, seed: u64, azure: bool) -> Outcome {
    let name = if azure {
        "hostile-routes-azure"
    } else {
        "hostile-routes"
    };
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let (view, mut env, _keep) = if azure {
        let lake = shared_lake(&ctx, container(name, seed)).await;
        let env = az_env(&ctx.azurite.base_url(), &lake.container);
        let AzLake { view, _scratch, .. } = lake;
        (view, env, Some(_scratch))
    } else {
        let view = LakeView::local(parent.path());
        let env = vec![(
            "HUB2LAKE_LAKE_URL".to_string(),
            format!("file://{}", parent.path().join("lake").display()),
        )];
        (view, env, None)
    };
    env.push(("HUB2LAKE_ROUTE_DATABASE_POINTER".into(), "/route/db".into()));
    env.push(("HUB2LAKE_ROUTE_COLLECTION_POINTER".into(), "/route/coll".into()));
    let mut d = Driver::start(&env, &log, parent.path(), WireDataType::String).await;
    // The Event Hub and consumer group names are hostile too (they name receipts).
    let (hub, cg) = ("../../hub\u{FF0F}..", "$Default/../..");
    d.expect = Expect::new(NS, hub, cg);
    let hostile = hostile_values();
    let t = Utc::now().duration_trunc(TimeDelta::hours(1)).unwrap() - TimeDelta::hours(27);
    let part = |id: &str| WirePartition {
        namespace: NS.into(),
        eventhub: hub.into(),
        consumer_group: cg.into(),
        partition_id: id.into(),
    };
    let n = hostile.len();
    // Partition "0": a change event and a pointer-routed event per hostile value.
    let mut events = Vec::new();
    for (i, v) in hostile.iter().enumerate() {
        let coll = &hostile[(i * 7 + 3) % n];
        let seq = 2 * i as i64;
        events.push((seq, change_event(v, coll, "0", seq), t + TimeDelta::seconds(seq)));
        let pointer = serde_json::json!({"route": {"db": coll, "coll": v}, "n": seq}).to_string();
        events.push((seq + 1, pointer.into_bytes(), t + TimeDelta::seconds(seq + 1)));
    }
    let events = wire_events(events);
    for chunk in events.chunks(30) {
        d.deliver_until_ok(&part("0"), chunk).await;
    }
    // Hostile partition ids, a few events each. Ids that sanitise alike would share
    // object names: one of each such set here, the collision separately below.
    let mut names = BTreeSet::new();
    let mut collider = None;
    for (j, pid) in hostile.iter().enumerate().filter(|(_, p)| !p.is_empty()) {
        let evs = wire_events((0..3).map(|s| {
            let v = &hostile[(j + s as usize) % n];
            (s, change_event(v, "c", pid, s), t + TimeDelta::seconds(s))
        }));
        if names.insert(hub2lake::lake::layout::sanitize_segment(pid)) {
            d.deliver_until_ok(&part(pid), &evs).await;
        } else if collider.is_none() {
            collider = Some((pid.clone(), evs));
        }
    }
    // Two partition ids, one name: the second is refused (never merged into the
    // first's objects or receipt) and stays unacknowledged.
    let (pid, evs) = collider.expect("some partition ids sanitise alike");
    let status = d.deliver(&part(&pid), &evs).await;
    assert_eq!(status, Some(500), "a colliding partition id is refused, not merged");
    let mut out = finish(&view, &d.expect, &log, parent.path()).await;
    // The values themselves survive in the records, byte for byte.
    let mut databases = BTreeSet::new();
    for o in view.lake.list("").await.unwrap() {
        if o.path.ends_with(".jsonl.gz") {
            let text = hub2lake::lake::encode::decode_object(&view.lake.get(&o.path).await.unwrap()).unwrap();
            for line in text.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let v: serde_json::Value = serde_json::from_slice(line).unwrap();
                if let Some(db) = v["database_name"].as_str() {
                    databases.insert(db.to_string());
                }
            }
        }
    }
    for v in &hostile {
        assert!(databases.contains(v), "the route value {v:?} is kept in the records");
    }
    let (status, _) = d.h.get("/healthz").await;
    assert_eq!(status, 200);
    out.notes.push(format!("{} hostile values", hostile.len()));
    out
}

async fn clock_skew(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "clock-skew";
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let view = LakeView::local(parent.path());
    let env = vec![(
        "HUB2LAKE_LAKE_URL".to_string(),
        format!("file://{}", parent.path().join("lake").display()),
    )];
    let mut d = Driver::start(&env, &log, parent.path(), WireDataType::String).await;
    let p = partition("0");
    let now = Utc::now();
    let at = |s: i64, base: DateTime<Utc>| base + TimeDelta::milliseconds(s * 250);
    let batch = |r: std::ops::RangeInclusive<i64>, time: &dyn Fn(i64) -> DateTime<Utc>| {
        wire_events(r.map(|s| (s, change_event("shop", "orders", "0", s), time(s))))
    };
    let days_ago_3 = now - TimeDelta::days(3);
    let ahead_5h = now + TimeDelta::hours(5);
    let days_ago_10 = now - TimeDelta::days(10);
    let b1 = batch(0..=49, &|s| at(s, days_ago_3));
    let b2 = batch(50..=99, &|s| at(s, ahead_5h));
    let b3 = batch(100..=149, &|s| at(s, days_ago_10));
    let b4 = batch(150..=199, &|s| at(s, now - TimeDelta::hours(2)));
    // Times jumping back and forth inside one batch.
    let b5 = batch(200..=239, &|s| {
        if s % 2 == 0 {
            now - TimeDelta::days(2)
        } else {
            now + TimeDelta::hours(3)
        }
    });
    for b in [&b1, &b2, &b3, &b4, &b5] {
        assert_eq!(d.deliver(&p, b).await, Some(200));
    }
    // The real clock seals the past and never the hours still ahead of it.
    let real = hub2lake::seal::run(
        &view.settings,
        &view.lake,
        &hub2lake::host::TimerInfo::default(),
        Utc::now(),
    )
    .await
    .expect("seal with the real clock");
    assert!(
        real.units_not_ready >= 1,
        "future hours are not sealed yet: {}",
        real.message
    );
    assert!(real.units_sealed >= 1, "past hours are: {}", real.message);
    d.expect.exact_gaps = Some(BTreeSet::new());
    let mut out = finish(&view, &d.expect, &log, parent.path()).await;
    out.notes.push(format!("real-clock seal: {}", real.message));
    out
}

async fn sigterm(ctx: Arc<Ctx>, seed: u64) -> Outcome {
    let name = "sigterm-mid-batch";
    let log = log_path(&ctx, name, seed);
    let parent = tempfile::tempdir().unwrap();
    let view = LakeView::local(parent.path());
    let env = vec![(
        "HUB2LAKE_LAKE_URL".to_string(),
        format!("file://{}", parent.path().join("lake").display()),
    )];
    let mut d = Driver::start(&env, &log, parent.path(), WireDataType::String).await;
    let p = partition("0");
    let mut outcomes = Vec::new();
    let per = 1500i64;
    for (i, delay_ms) in [0u64, 15, 60, 150].into_iter().enumerate() {
        let first = i as i64 * per;
        let events = change_events("0", first..=first + per - 1, ROUTES);
        let body = request(&p, &events, WireDataType::String, 0);
        let url = d.h.url("/ingest");
        let post = tokio::spawn(async move {
            reqwest::Client::new()
                .post(url)
                .header("Content-Type", "application/json; charset=utf-8")
                .body(body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| hub2lake::telemetry::error_chain(&e))
        });
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        d.h.sigterm();
        let answer = post.await.unwrap();
        let exit = d.h.wait_exit(Duration::from_secs(30)).await;
        assert!(
            exit.is_some_and(|s| s.success()),
            "the handler stops gracefully after SIGTERM: {exit:?}"
        );
        let status = answer.as_ref().ok().copied();
        let pairs: Vec<(i64, Vec<u8>)> = events.iter().map(|e| (e.sequence_number, e.body.clone())).collect();
        d.expect.delivery("0", &pairs, status);
        outcomes.push(format!("{delay_ms}ms: {answer:?}"));
        d.h.restart().await;
        d.expect.restarts += 1;
        if status != Some(200) {
            // The host saw a failure: it re-delivers the batch to the new process.
            d.deliver_until_ok(&p, &events).await;
        }
    }
    let mut out = finish(&view, &d.expect, &log, parent.path()).await;
    let text = std::fs::read_to_string(&log).unwrap();
    assert_eq!(
        text.matches("stopped gracefully").count(),
        4,
        "every SIGTERM ends in a graceful stop"
    );
    // How many SIGTERMs arrived with the batch still in flight (timing, not asserted).
    let mut in_flight = 0;
    let mut stopping = false;
    for line in text.lines() {
        if line.contains("shutdown requested") {
            stopping = true;
        } else if line.contains("batch written") && stopping {
            in_flight += 1;
        } else if line.contains("stopped gracefully") {
            stopping = false;
        }
    }
    out.notes.push(format!("{in_flight} of 4 SIGTERMs arrived mid-batch"));
    out.notes.extend(outcomes);
    out
}
