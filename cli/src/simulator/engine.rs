//! The run loop: one task per partition (one batch in flight each), a timer task, and
//! a supervisor that restarts the handler when it dies.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use tokio::sync::{oneshot, watch, Notify};
use tokio::task::JoinSet;

// The schedule used when `%HUB2LAKE_SEAL_SCHEDULE%` does not resolve: the handler's own default.
use hub2lake::config::DEFAULT_SEAL_SCHEDULE;
use hub2lake::host::wire::{eventhub_request, timer_request, WireDataType, WirePartition, WireRetry};

use super::app::{resolve_setting, RetryPolicy};
use super::client::{self, CallError};
use super::events::Hub;
use super::ncrontab::Schedule;
use super::process::{guid, HandlerProcess, Launch, HOST_PROBE_INTERVAL};
use super::report::LakeSummary;
use super::{
    lock, FailureAction, FailureInfo, InvocationRecord, KillPoint, Observer, Outcome, PartitionSummary, RestartRecord,
    SealRecord, SimError, SimulationSummary, SimulatorConfig, SkippedBatch,
};

/// How long to wait for a process to be seen dead after its connection broke.
const DEATH_GRACE: Duration = Duration::from_millis(750);

/// How long in-flight invocations may take to end after the handler died.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct PartState {
    total: u64,
    /// Next event index to deliver.
    next: u64,
    /// Events before this index are checkpointed.
    checkpoint: u64,
    checkpointed: bool,
    since_checkpoint: u32,
    finished: bool,
    sent_batches: HashSet<u64>,
    acked_batches: HashSet<u64>,
    acked_events: u64,
    invocations: u64,
    retries: u64,
    failed: u64,
    redeliveries: u64,
    skipped: BTreeMap<u64, SkippedBatch>,
}

struct TimerState {
    last: Option<DateTime<Utc>>,
    past_due: bool,
}

struct Shared {
    hub: Hub,
    batch_size: u64,
    checkpoint_frequency: u32,
    function: String,
    binding: String,
    data_type: WireDataType,
    retry: Option<RetryPolicy>,
    time_scale: f64,
    timeout: Duration,
    eventhub: super::EventHubIdentity,
    seed: u64,
    parts: Vec<Mutex<PartState>>,
    log: Mutex<Vec<InvocationRecord>>,
    seals: Mutex<Vec<SealRecord>>,
    timer: Mutex<TimerState>,
    progress: Notify,
    failures: AtomicU64,
    failure_hooks: Mutex<Vec<(u64, Option<FailureAction>)>>,
    kills: Mutex<Vec<(KillPoint, bool)>>,
    observer: Option<Arc<dyn Observer>>,
    t0: Instant,
}

enum TaskEnd {
    Finished,
    HandlerDown(String),
}

impl PartState {
    fn new(total: u64) -> Self {
        Self {
            total,
            next: 0,
            checkpoint: 0,
            checkpointed: false,
            since_checkpoint: 0,
            finished: false,
            sent_batches: HashSet::new(),
            acked_batches: HashSet::new(),
            acked_events: 0,
            invocations: 0,
            retries: 0,
            failed: 0,
            redeliveries: 0,
            skipped: BTreeMap::new(),
        }
    }
}

impl Shared {
    /// The run's state before the first delivery; takes the fault plan out of `config`.
    fn new(config: &mut SimulatorConfig) -> Self {
        let hub = Hub::new(
            config.source.clone(),
            config.partitions,
            config.first_sequence_number,
            config.start,
            config.span,
        );
        let seed = match &config.source {
            super::EventSource::ChangeStream(c) => c.seed,
            super::EventSource::Bodies(_) => 0,
        };
        let parts = hub
            .partitions
            .iter()
            .map(|p| Mutex::new(PartState::new(p.events)))
            .collect();
        let faults = std::mem::take(&mut config.faults);
        Self {
            hub,
            batch_size: config.batch_size as u64,
            checkpoint_frequency: config.checkpoint_frequency.max(1),
            function: config.ingest.name.clone(),
            binding: config.ingest.binding.clone(),
            data_type: config.ingest.data_type,
            retry: config.ingest.retry,
            time_scale: config.time_scale,
            timeout: config.invocation_timeout,
            eventhub: config.eventhub.clone(),
            seed,
            parts,
            log: Mutex::new(Vec::new()),
            seals: Mutex::new(Vec::new()),
            timer: Mutex::new(TimerState {
                last: None,
                past_due: false,
            }),
            progress: Notify::new(),
            failures: AtomicU64::new(0),
            failure_hooks: Mutex::new(faults.failure_hooks.into_iter().map(|(n, a)| (n, Some(a))).collect()),
            kills: Mutex::new(faults.kills.into_iter().map(|k| (k, false)).collect()),
            observer: config.observer.clone(),
            t0: Instant::now(),
        }
    }

    /// After the handler died: the host re-acquires the partitions and each resumes from
    /// its last checkpoint (in-flight invocations are not checkpointed). Returns where
    /// each rewound partition resumes.
    fn rewind_to_checkpoints(&self) -> Vec<(String, i64)> {
        let mut resume_from = Vec::new();
        for (p, st) in self.parts.iter().enumerate() {
            let reset = {
                let mut st = lock(st);
                if !st.finished || st.next != st.checkpoint {
                    st.finished = false;
                    st.next = st.checkpoint;
                    st.since_checkpoint = 0;
                    resume_from.push((self.hub.partitions[p].partition_id.clone(), self.seq(p, st.next)));
                    Some((st.next, st.checkpointed.then(|| self.seq(p, st.checkpoint) - 1)))
                } else {
                    None
                }
            };
            if let (Some((next, ck)), Some(o)) = (reset, &self.observer) {
                o.progress(p, next, ck);
            }
        }
        resume_from
    }

    fn partition_summaries(&self) -> Vec<PartitionSummary> {
        self.parts
            .iter()
            .enumerate()
            .map(|(p, st)| {
                let st = lock(st);
                let plan = &self.hub.partitions[p];
                PartitionSummary {
                    partition_id: plan.partition_id.clone(),
                    events: plan.events,
                    first_sequence_number: plan.first_sequence_number,
                    last_sequence_number: plan.last_sequence_number(),
                    checkpoint: st.checkpointed.then(|| self.seq(p, st.checkpoint) - 1),
                    acknowledged_events: st.acked_events,
                    batches: st.acked_batches.len() as u64,
                    invocations: st.invocations,
                    retries: st.retries,
                    failed_invocations: st.failed,
                    redeliveries: st.redeliveries,
                    skipped: st.skipped.values().cloned().collect(),
                }
            })
            .collect()
    }

    fn seq(&self, p: usize, index: u64) -> i64 {
        self.hub.partitions[p].first_sequence_number + index as i64
    }

    /// Simulated now: every partition has had everything before it answered.
    fn clock(&self) -> DateTime<Utc> {
        let end = self.hub.end();
        self.parts
            .iter()
            .enumerate()
            .map(|(p, st)| {
                let st = lock(st);
                if st.next >= st.total {
                    end
                } else {
                    self.hub.enqueued_time(p, st.next)
                }
            })
            .min()
            .unwrap_or(end)
    }

    fn all_finished(&self) -> bool {
        self.parts.iter().all(|p| lock(p).finished)
    }

    fn take_kill(&self, p: usize, batch: u64) -> Option<Duration> {
        let mut kills = lock(&self.kills);
        kills
            .iter_mut()
            .find(|(k, fired)| !*fired && k.partition == p && k.batch == batch)
            .map(|(k, fired)| {
                *fired = true;
                k.delay
            })
    }

    fn record(&self, r: InvocationRecord) {
        if let Some(o) = &self.observer {
            o.invocation(&r);
        }
        lock(&self.log).push(r);
    }

    fn failed(&self, info: FailureInfo) {
        let due: Vec<FailureAction> = {
            let mut hooks = lock(&self.failure_hooks);
            hooks
                .iter_mut()
                .filter(|(n, a)| *n <= info.failures && a.is_some())
                .filter_map(|(_, a)| a.take())
                .collect()
        };
        for action in due {
            action(&info);
        }
    }
}

pub async fn run(mut config: SimulatorConfig) -> Result<SimulationSummary, SimError> {
    let lake_url = check_config(&config)?;
    let schedule = seal_schedule(&config)?;
    let shared = Arc::new(Shared::new(&mut config));
    if let Some(o) = &shared.observer {
        o.plan(&shared.hub.partitions, config.batch_size);
    }
    let restarts = supervise(&shared, &config, schedule.as_ref()).await?;
    let elapsed = shared.t0.elapsed();
    let (lake, lake_error) = if config.list_lake {
        match list_lake(&config).await {
            Ok(l) => (Some(l), None),
            Err(e) => (None, Some(e)),
        }
    } else {
        (None, None)
    };
    let invocations = std::mem::take(&mut *lock(&shared.log));
    let seals = std::mem::take(&mut *lock(&shared.seals));
    Ok(SimulationSummary {
        handler: config.handler.clone(),
        lake_url,
        eventhub: config.eventhub.name.clone(),
        consumer_group: config.eventhub.consumer_group.clone(),
        batch_size: config.batch_size,
        checkpoint_frequency: config.checkpoint_frequency,
        retry_policy: config.ingest.retry.map(|r| r.to_string()),
        start: shared.hub.start,
        end: shared.hub.end(),
        elapsed,
        partitions: shared.partition_summaries(),
        invocations,
        seals,
        restarts,
        lake,
        lake_error,
    })
}

/// Refuses a configuration the run cannot start with; returns the lake URL it writes to.
fn check_config(config: &SimulatorConfig) -> Result<String, SimError> {
    if !config.handler.is_file() {
        return Err(SimError::HandlerMissing {
            path: config.handler.clone(),
        });
    }
    if config.partitions == 0 || config.partitions > 1024 {
        return Err(SimError::Config("partitions must be from 1 to 1024".into()));
    }
    if config.batch_size == 0 {
        return Err(SimError::Config("the batch size must be at least 1".into()));
    }
    if !(config.time_scale.is_finite() && config.time_scale >= 0.0) {
        return Err(SimError::Config("the time scale must be a number >= 0".into()));
    }
    config
        .settings
        .get("HUB2LAKE_LAKE_URL")
        .cloned()
        .or_else(|| {
            config
                .inherit_env
                .then(|| std::env::var("HUB2LAKE_LAKE_URL").ok())
                .flatten()
        })
        .ok_or_else(|| SimError::Config("the app settings have no HUB2LAKE_LAKE_URL".into()))
}

/// The timer's schedule resolved as the host does (`%SETTING%` from the app settings);
/// `None` when the run has no timer.
fn seal_schedule(config: &SimulatorConfig) -> Result<Option<Schedule>, SimError> {
    let Some(raw) = config.seal.as_ref().and_then(|s| s.schedule.clone()) else {
        return Ok(None);
    };
    let text = match resolve_setting(&raw, &config.settings) {
        Ok(t) => t,
        Err(problem) => {
            tracing::warn!(
                "{problem}; the Functions host would not index the timer function. Using {DEFAULT_SEAL_SCHEDULE:?}"
            );
            DEFAULT_SEAL_SCHEDULE.to_string()
        }
    };
    Ok(Some(Schedule::parse(&text)?))
}

/// Starts the handler, delivers until every partition is done, and restarts the handler
/// each time it dies (as the host restarts a dead worker). Returns the restarts.
async fn supervise(
    shared: &Arc<Shared>,
    config: &SimulatorConfig,
    schedule: Option<&Schedule>,
) -> Result<Vec<RestartRecord>, SimError> {
    let launch = Launch {
        executable: config.handler.clone(),
        app_root: config.app_root.clone(),
        settings: config.settings.clone(),
        inherit_env: config.inherit_env,
        ready_timeout: config.ready_timeout,
        probe_interval: HOST_PROBE_INTERVAL,
        log_file: config.handler_log.clone(),
        lines: None,
    };
    let seal = config.seal.as_ref();
    let mut restarts: Vec<RestartRecord> = Vec::new();
    let mut generation = 0u32;
    loop {
        generation += 1;
        let handler = Arc::new(HandlerProcess::start(&launch, generation).await?);
        tracing::info!(
            generation,
            port = handler.port,
            ready_ms = handler.ready_after.as_millis() as u64,
            "handler ready"
        );
        if let Some(o) = &shared.observer {
            o.handler_ready(generation, handler.port, handler.ready_after);
        }
        let timer = schedule.zip(seal);
        let Some(context) = run_generation(shared, &handler, timer).await? else {
            if let Some(o) = &shared.observer {
                o.finished();
            }
            if let Some(seal) = seal.filter(|s| s.at_end) {
                let next = Utc::now().max(shared.hub.end());
                let _ = fire_seal(shared, &handler, seal, next, true).await;
            }
            handler.kill_and_wait().await;
            return Ok(restarts);
        };
        let status = handler
            .exited_within(DEATH_GRACE)
            .await
            .unwrap_or_else(|| "stopped answering (connection refused) and was killed".into());
        let reason = match context {
            Some(c) => format!("{status} {c}"),
            None => status,
        };
        handler.kill_and_wait().await;
        let record = RestartRecord {
            generation,
            reason: reason.clone(),
            at: shared.t0.elapsed(),
            resume_from: shared.rewind_to_checkpoints(),
        };
        tracing::info!(generation, reason = %record.reason, "handler died; restarting it");
        if let Some(o) = &shared.observer {
            o.restart(&record);
        }
        restarts.push(record);
        if restarts.len() as u32 > config.max_restarts {
            return Err(SimError::TooManyRestarts {
                restarts: restarts.len() as u32,
                reason,
                output: handler.output_tail(),
            });
        }
    }
}

/// One life of the handler: a task per unfinished partition and the timer, until all are
/// done (`None`) or the handler died (`Some(context)`, context saying what was in flight
/// if a task noticed first).
async fn run_generation(
    shared: &Arc<Shared>,
    handler: &Arc<HandlerProcess>,
    timer: Option<(&Schedule, &super::SealPlan)>,
) -> Result<Option<Option<String>>, SimError> {
    let mut tasks = JoinSet::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    for p in 0..shared.parts.len() {
        if !lock(&shared.parts[p]).finished {
            tasks.spawn(partition_task(shared.clone(), handler.clone(), p, stop_rx.clone()));
        }
    }
    if let Some((schedule, seal)) = timer {
        tasks.spawn(timer_task(
            shared.clone(),
            handler.clone(),
            schedule.clone(),
            seal.clone(),
            stop_rx.clone(),
        ));
    }
    let died: Option<Option<String>> = loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break None,
                Some(Ok(TaskEnd::Finished)) => {}
                Some(Ok(TaskEnd::HandlerDown(context))) => break Some(Some(context)),
                Some(Err(e)) => {
                    tasks.abort_all();
                    return Err(SimError::Internal(format!("a simulator task failed: {e}")));
                }
            },
            _ = handler.exited() => break Some(None),
        }
    };
    // Like the host stopping its listeners: nothing new starts, in-flight calls end
    // on their own (the process is gone, so they fail fast), then the rest is cut.
    let _ = stop_tx.send(true);
    let drained = tokio::time::timeout(STOP_GRACE, async { while tasks.join_next().await.is_some() {} }).await;
    if drained.is_err() {
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }
    Ok(died)
}

async fn list_lake(config: &SimulatorConfig) -> Result<LakeSummary, String> {
    let settings = config.settings.clone();
    let inherit = config.inherit_env;
    let lookup = move |k: &str| {
        settings
            .get(k)
            .cloned()
            .or_else(|| inherit.then(|| std::env::var(k).ok()).flatten())
    };
    let settings = hub2lake::config::Settings::from_lookup(lookup).map_err(|e| e.to_string())?;
    let lake = hub2lake::lake::Lake::open(&settings).map_err(|e| e.to_string())?;
    let objects = lake.list("").await.map_err(|e| e.to_string())?;
    let local_root = match &settings.lake {
        hub2lake::config::LakeLocation::Local { root } => Some(root.clone()),
        hub2lake::config::LakeLocation::Azure { .. } => None,
    };
    Ok(LakeSummary::from_listing(
        settings.lake.to_string(),
        local_root,
        &objects,
    ))
}

/// Delivers one partition's batches until it runs out of events or the handler dies.
async fn partition_task(
    sh: Arc<Shared>,
    handler: Arc<HandlerProcess>,
    p: usize,
    mut stop: watch::Receiver<bool>,
) -> TaskEnd {
    let partition_id = sh.hub.partitions[p].partition_id.clone();
    let wire_partition = WirePartition {
        namespace: sh.eventhub.namespace.clone(),
        eventhub: sh.eventhub.name.clone(),
        consumer_group: sh.eventhub.consumer_group.clone(),
        partition_id: partition_id.clone(),
    };
    loop {
        if *stop.borrow() {
            return TaskEnd::HandlerDown("stopping".into());
        }
        let Some((batch, from, to)) = next_batch(&sh, p) else {
            return TaskEnd::Finished;
        };
        let events: Vec<_> = (from..to).map(|i| sh.hub.event(p, i)).collect();
        let (first_seq, last_seq) = (sh.seq(p, from), sh.seq(p, to - 1));
        let mut backoff = sh.retry.map(|r| r.backoff(sh.seed ^ ((p as u64) << 32) ^ batch));
        let mut retry_count = 0u32;
        loop {
            let retry = sh.retry.map(|r| WireRetry {
                retry_count: i64::from(retry_count),
                max_retry_count: r.max_retry_count,
            });
            let body = Bytes::from(eventhub_request(
                &sh.binding,
                &wire_partition,
                &events,
                sh.data_type,
                retry,
                &sh.function,
            ));
            let request_bytes = body.len() as u64;
            let kill = sh.take_kill(p, batch);
            let started = sh.t0.elapsed();
            let t = Instant::now();
            let answer = call(&sh, &handler, body, kill).await;
            let latency = t.elapsed();
            let outcome = classify(answer, &handler).await;
            let mut record = InvocationRecord {
                partition_id: partition_id.clone(),
                batch,
                first_sequence_number: first_seq,
                last_sequence_number: last_seq,
                events: to - from,
                request_bytes,
                retry_count,
                handler_generation: handler.generation,
                started,
                latency,
                outcome: outcome.clone(),
                checkpoint: None,
            };
            count_invocation(&sh, p, retry_count, &outcome);
            match &outcome {
                Outcome::HandlerDied { .. } => {
                    sh.record(record);
                    return TaskEnd::HandlerDown(format!(
                        "while partition {partition_id} seq {first_seq}..{last_seq} was in flight"
                    ));
                }
                Outcome::Failed { error, .. } => {
                    let failures = sh.failures.fetch_add(1, Ordering::SeqCst) + 1;
                    let info = FailureInfo {
                        failures,
                        partition_id: partition_id.clone(),
                        first_sequence_number: first_seq,
                        retry_count,
                        error: error.clone(),
                    };
                    let retrying = sh.retry.is_some_and(|r| r.allows_retry(retry_count));
                    if retrying {
                        sh.record(record);
                        sh.failed(info);
                        let delay = backoff.as_mut().map(|b| b.next_delay()).unwrap_or_default();
                        tokio::select! {
                            _ = tokio::time::sleep(delay.mul_f64(sh.time_scale)) => {}
                            _ = async { let _ = stop.wait_for(|s| *s).await; } => return TaskEnd::HandlerDown("stopping".into()),
                        }
                        retry_count += 1;
                        continue;
                    }
                    // Retries exhausted (or none configured): the host checkpoints anyway.
                    record.checkpoint = checkpoint_after(&sh, p, batch, to, Some((error.clone(), retry_count + 1)));
                    sh.record(record);
                    sh.failed(info);
                    break;
                }
                Outcome::Succeeded { .. } => {
                    record.checkpoint = checkpoint_after(&sh, p, batch, to, None);
                    sh.record(record);
                    break;
                }
            }
        }
    }
}

/// The next batch of partition `p` as (batch number, first index, end index), or
/// `None` when the partition has no more events (it is then marked finished).
fn next_batch(sh: &Shared, p: usize) -> Option<(u64, u64, u64)> {
    let mut st = lock(&sh.parts[p]);
    if st.next >= st.total {
        // Recent Event Hubs extensions also checkpoint an idle/closing partition.
        if st.since_checkpoint > 0 {
            st.checkpoint = st.next;
            st.checkpointed = true;
            st.since_checkpoint = 0;
        }
        st.finished = true;
        let (next, ck) = (st.next, st.checkpointed.then(|| sh.seq(p, st.checkpoint) - 1));
        drop(st);
        if let Some(o) = &sh.observer {
            o.progress(p, next, ck);
        }
        sh.progress.notify_one();
        return None;
    }
    let from = st.next;
    let to = (from + sh.batch_size).min(st.total);
    let batch = from / sh.batch_size;
    if !st.sent_batches.insert(batch) {
        st.redeliveries += 1;
    }
    Some((batch, from, to))
}

/// Counts one invocation of partition `p` (a retry if `retry_count > 0`, failed or not).
fn count_invocation(sh: &Shared, p: usize, retry_count: u32, outcome: &Outcome) {
    let mut st = lock(&sh.parts[p]);
    st.invocations += 1;
    if retry_count > 0 {
        st.retries += 1;
    }
    if matches!(outcome, Outcome::Failed { .. }) {
        st.failed += 1;
    }
}

/// The host's checkpoint step after an invocation returned (success, or failure with
/// retries exhausted). Returns the checkpointed sequence number, if one was written.
fn checkpoint_after(sh: &Shared, p: usize, batch: u64, to: u64, failure: Option<(String, u32)>) -> Option<i64> {
    let (delivered, current, written) = {
        let mut st = lock(&sh.parts[p]);
        let from = st.next;
        st.next = to;
        match failure {
            None => {
                if st.acked_batches.insert(batch) {
                    st.acked_events += to - from;
                }
                st.skipped.remove(&batch);
            }
            Some((error, attempts)) => {
                if !st.acked_batches.contains(&batch) {
                    st.skipped.insert(
                        batch,
                        SkippedBatch {
                            partition_id: sh.hub.partitions[p].partition_id.clone(),
                            first_sequence_number: sh.seq(p, from),
                            last_sequence_number: sh.seq(p, to - 1),
                            events: to - from,
                            attempts,
                            last_error: error,
                        },
                    );
                }
            }
        }
        st.since_checkpoint += 1;
        let written = if st.since_checkpoint >= sh.checkpoint_frequency {
            st.checkpoint = to;
            st.checkpointed = true;
            st.since_checkpoint = 0;
            Some(sh.seq(p, to) - 1)
        } else {
            None
        };
        (st.next, st.checkpointed.then(|| sh.seq(p, st.checkpoint) - 1), written)
    };
    if let Some(o) = &sh.observer {
        o.progress(p, delivered, current);
    }
    sh.progress.notify_one();
    written
}

/// Sends one invocation; with a kill point, SIGKILLs the handler once the body is sent.
async fn call(
    sh: &Shared,
    handler: &HandlerProcess,
    body: Bytes,
    kill: Option<Duration>,
) -> Result<client::Answer, CallError> {
    let id = guid();
    let Some(delay) = kill else {
        return client::invoke(handler.port, &sh.function, body, &id, sh.timeout, None).await;
    };
    let (sent_tx, sent_rx) = oneshot::channel();
    let invocation = client::invoke(handler.port, &sh.function, body, &id, sh.timeout, Some(sent_tx));
    tokio::pin!(invocation);
    let killer = async {
        let _ = sent_rx.await;
        tokio::time::sleep(delay).await;
        tracing::info!(
            pid = handler.pid,
            "fault plan: killing the handler (SIGKILL) with a batch in flight"
        );
        handler.kill();
    };
    tokio::select! {
        answer = &mut invocation => {
            // Answered before the kill point: the crash still happens, between batches.
            handler.kill();
            answer
        }
        _ = killer => invocation.await,
    }
}

/// Turns an HTTP result into an outcome, telling a dead handler from a failed call.
async fn classify(answer: Result<client::Answer, CallError>, handler: &HandlerProcess) -> Outcome {
    match answer {
        Ok(a) if (200..300).contains(&a.status) => Outcome::Succeeded { status: a.status },
        Ok(a) => {
            let text = String::from_utf8_lossy(&a.body);
            let error = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| text.chars().take(500).collect());
            Outcome::Failed {
                status: Some(a.status),
                error: format!("HTTP {}: {error}", a.status),
            }
        }
        Err(CallError::TimedOut) => Outcome::Failed {
            status: None,
            error: CallError::TimedOut.to_string(),
        },
        Err(e @ CallError::Refused(_)) => match handler.exited_within(DEATH_GRACE).await {
            Some(status) => Outcome::HandlerDied {
                error: format!("{e}; process {status}"),
            },
            None => Outcome::HandlerDied {
                error: format!("{e}; the process is alive but not listening"),
            },
        },
        Err(e @ CallError::Dropped(_)) => match handler.exited_within(DEATH_GRACE).await {
            Some(status) => Outcome::HandlerDied {
                error: format!("{e}; process {status}"),
            },
            None => Outcome::Failed {
                status: None,
                error: e.to_string(),
            },
        },
    }
}

/// Fires the timer per its schedule as simulated time passes.
async fn timer_task(
    sh: Arc<Shared>,
    handler: Arc<HandlerProcess>,
    schedule: Schedule,
    seal: super::SealPlan,
    mut stop: watch::Receiver<bool>,
) -> TaskEnd {
    let end = sh.hub.end();
    loop {
        let done = sh.all_finished();
        let horizon = if done { end } else { sh.clock().min(end) };
        loop {
            let last = lock(&sh.timer).last;
            let after = last.unwrap_or(sh.hub.start - TimeDelta::seconds(1));
            let Some(next) = schedule.next_after(after).filter(|n| *n <= horizon) else {
                break;
            };
            if let Err(reason) = fire_seal(&sh, &handler, &seal, next, false).await {
                lock(&sh.timer).past_due = true;
                return TaskEnd::HandlerDown(reason);
            }
        }
        if done {
            return TaskEnd::Finished;
        }
        tokio::select! {
            _ = sh.progress.notified() => {}
            _ = async { let _ = stop.wait_for(|s| *s).await; } => return TaskEnd::HandlerDown("stopping".into()),
        }
    }
}

/// One timer invocation. `Err` when the handler died meanwhile (the occurrence is
/// then fired again, past due, after the restart).
async fn fire_seal(
    sh: &Shared,
    handler: &HandlerProcess,
    seal: &super::SealPlan,
    next: DateTime<Utc>,
    at_end: bool,
) -> Result<(), String> {
    let (last, past_due) = {
        let t = lock(&sh.timer);
        (t.last, t.past_due)
    };
    let body = Bytes::from(timer_request(&seal.binding, last, next, past_due, &seal.function));
    let t = Instant::now();
    let answer = client::invoke(handler.port, &seal.function, body, &guid(), sh.timeout, None).await;
    let latency = t.elapsed();
    let outcome = classify(answer.clone(), handler).await;
    let logs = answer
        .as_ref()
        .ok()
        .and_then(|a| serde_json::from_slice::<hub2lake::host::InvocationResponse>(&a.body).ok())
        .map(|r| r.logs)
        .unwrap_or_default();
    let (status, error) = match &outcome {
        Outcome::Succeeded { status } => (Some(*status), None),
        Outcome::Failed { status, error } => (*status, Some(error.clone())),
        Outcome::HandlerDied { error } => (None, Some(error.clone())),
    };
    let record = SealRecord {
        scheduled: next,
        past_due,
        at_end,
        status,
        latency,
        error,
        logs,
    };
    if let Some(o) = &sh.observer {
        o.seal(&record);
    }
    lock(&sh.seals).push(record);
    if let Outcome::HandlerDied { error } = outcome {
        tracing::debug!(%error, "handler died during a seal run");
        return Err("during a seal run".into());
    }
    // A failed timer run is not retried (no retry policy on the timer); the next
    // occurrence comes as scheduled.
    let mut t = lock(&sh.timer);
    t.last = Some(next);
    t.past_due = false;
    Ok(())
}
