//! The log stream: a bounded queue, a batcher and a circuit breaker in front of any
//! [`EventSink`] (the shared Event Hubs producer, or a JSON-lines file).
//!
//! Logging never waits: [`Queue::offer`] is a `try_send` that counts a drop when the
//! queue is full. One [`Worker`] per target takes records off the queue, sends them in
//! batches (by count, or when the oldest has waited the batch timeout), retries a
//! failed batch with backoff, and after `circuit_threshold` consecutive failed batches
//! opens the circuit: nothing is sent (the queue fills, then drops) until one half-open
//! probe after `circuit_open`; its success closes the circuit, its failure re-opens it.
//! At shutdown the worker sends what is queued within a budget, then stops.
//!
//! [`spawn`] runs a worker on its own thread with its own single-threaded runtime:
//! sending logs shares no runtime with ingest, and a logging layer can exist before
//! (and without) the caller's runtime. Events logged on that thread (the worker's own,
//! and the producer's) are not streamed, so a failing target cannot feed itself.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use serde_json::Map;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::eventhub::{EventSink, OutEvent, SinkError, Target};

/// How a worker batches, retries and breaks the circuit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamConfig {
    pub batch_size: usize,
    pub batch_timeout: Duration,
    pub queue_size: usize,
    /// Consecutive failed batches that open the circuit.
    pub circuit_threshold: u32,
    /// How long the circuit stays open before one half-open probe.
    pub circuit_open: Duration,
    /// Attempts per batch while the circuit is closed (a probe gets one).
    pub attempts: u32,
    /// Wait before the second attempt; doubled for each one after.
    pub retry_backoff: Duration,
    /// Longest one attempt (connecting included) may take.
    pub send_timeout: Duration,
}

impl StreamConfig {
    pub fn from_settings(s: &super::settings::LogStreamSettings) -> Self {
        Self {
            batch_size: s.batch_size,
            batch_timeout: s.batch_timeout,
            queue_size: s.queue_size,
            circuit_threshold: s.circuit_threshold,
            circuit_open: s.circuit_open,
            ..Self::default()
        }
    }
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            batch_size: 100,
            batch_timeout: Duration::from_millis(1000),
            queue_size: 10_000,
            circuit_threshold: 5,
            circuit_open: Duration::from_secs(30),
            attempts: 3,
            retry_backoff: Duration::from_millis(200),
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// The circuit breaker's state, as `/healthz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// No stream target.
    Disabled,
    Closed,
    Open,
    HalfOpen,
}

impl CircuitState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disabled => "disabled",
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Closed,
            2 => Self::Open,
            3 => Self::HalfOpen,
            _ => Self::Disabled,
        }
    }

    fn to_u8(self) -> u8 {
        match self {
            Self::Disabled => 0,
            Self::Closed => 1,
            Self::Open => 2,
            Self::HalfOpen => 3,
        }
    }
}

/// The `log_stream` object of `/healthz` (and of the periodic stats line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogStreamHealth {
    pub state: CircuitState,
    /// Records not sent yet: in the queue, or in the batch being built or sent.
    pub queued: u64,
    /// Records the target accepted.
    pub sent: u64,
    /// Records lost: the queue was full, their batch failed, or the flush ran out of time.
    pub dropped: u64,
    pub failed_batches: u64,
    /// The last failure, prefixed with its time (RFC 3339).
    pub last_error: Option<String>,
}

impl LogStreamHealth {
    pub fn disabled() -> Self {
        Self {
            state: CircuitState::Disabled,
            queued: 0,
            sent: 0,
            dropped: 0,
            failed_batches: 0,
            last_error: None,
        }
    }
}

/// Counters shared by the queue's producers, the worker and `/healthz`.
#[derive(Debug)]
struct Stats {
    state: AtomicU8,
    sent: AtomicU64,
    dropped: AtomicU64,
    failed_batches: AtomicU64,
    /// Records taken off the queue into the batch being built or sent.
    in_hand: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl Stats {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(CircuitState::Closed.to_u8()),
            sent: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            failed_batches: AtomicU64::new(0),
            in_hand: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    fn set_state(&self, state: CircuitState) {
        self.state.store(state.to_u8(), Ordering::Relaxed);
    }

    fn drop_records(&self, n: usize) {
        self.dropped.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn error(&self, e: &SinkError) {
        let text = format!(
            "{} {}",
            chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            super::error_chain(e)
        );
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
    }
}

/// The producers' side of a stream: cheap to offer to from any thread, never waits.
#[derive(Debug, Clone)]
pub struct Queue {
    tx: mpsc::Sender<Vec<u8>>,
    stats: Arc<Stats>,
}

impl Queue {
    /// Queues one record; when the queue is full (or the worker is gone) the record is
    /// dropped and counted. Returns whether it was queued.
    pub fn offer(&self, record: Vec<u8>) -> bool {
        match self.tx.try_send(record) {
            Ok(()) => true,
            Err(_) => {
                self.stats.drop_records(1);
                false
            }
        }
    }

    pub fn health(&self) -> LogStreamHealth {
        let s = &self.stats;
        LogStreamHealth {
            state: CircuitState::from_u8(s.state.load(Ordering::Relaxed)),
            queued: (self.tx.max_capacity() - self.tx.capacity()) as u64 + s.in_hand.load(Ordering::Relaxed),
            sent: s.sent.load(Ordering::Relaxed),
            dropped: s.dropped.load(Ordering::Relaxed),
            failed_batches: s.failed_batches.load(Ordering::Relaxed),
            last_error: s.last_error.lock().ok().and_then(|l| l.clone()),
        }
    }

    /// The queue's bound (records).
    pub fn capacity(&self) -> usize {
        self.tx.max_capacity()
    }
}

/// Tells a worker to flush within a budget and stop.
#[derive(Debug)]
pub struct Shutdown(watch::Sender<Option<Duration>>);

impl Shutdown {
    pub fn flush_within(&self, budget: Duration) {
        let _ = self.0.send(Some(budget));
    }
}

/// A queue, its worker and the worker's shutdown switch.
pub fn channel<S: EventSink>(sink: S, config: StreamConfig) -> (Queue, Worker<S>, Shutdown) {
    let (queue, parts, shutdown) = unbound_channel(config);
    (queue, parts.with_sink(sink), shutdown)
}

/// A worker's receiving end before its sink exists (a pipeline builds the sink on the
/// worker's own thread).
struct WorkerParts {
    rx: mpsc::Receiver<Vec<u8>>,
    config: StreamConfig,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<Option<Duration>>,
}

impl WorkerParts {
    fn with_sink<S: EventSink>(self, sink: S) -> Worker<S> {
        Worker {
            sink,
            rx: self.rx,
            config: self.config,
            stats: self.stats,
            shutdown: self.shutdown,
            breaker: Breaker::default(),
            sequence: 0,
        }
    }
}

/// A queue and its shutdown switch, with the worker's end still to be given a sink.
fn unbound_channel(config: StreamConfig) -> (Queue, WorkerParts, Shutdown) {
    let (tx, rx) = mpsc::channel(config.queue_size.max(1));
    let (shutdown_tx, shutdown_rx) = watch::channel(None);
    let stats = Arc::new(Stats::new());
    let queue = Queue {
        tx,
        stats: stats.clone(),
    };
    let parts = WorkerParts {
        rx,
        config,
        stats,
        shutdown: shutdown_rx,
    };
    (queue, parts, Shutdown(shutdown_tx))
}

/// Consecutive failures and, while open, when the probe is due.
#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    half_open: bool,
}

/// Why a delivery stopped before it was decided.
enum Interrupted {
    Shutdown(Duration),
}

/// Sends the queue's records to the sink; see the module docs.
pub struct Worker<S> {
    sink: S,
    rx: mpsc::Receiver<Vec<u8>>,
    config: StreamConfig,
    stats: Arc<Stats>,
    shutdown: watch::Receiver<Option<Duration>>,
    breaker: Breaker,
    sequence: i64,
}

impl<S: EventSink> Worker<S> {
    /// Runs until shut down (then flushes) or until every [`Queue`] is dropped.
    pub async fn run(mut self) {
        loop {
            if let Some(until) = self.breaker.open_until {
                tokio::select! {
                    biased;
                    budget = shutdown_requested(&mut self.shutdown) => return self.flush(Vec::new(), budget).await,
                    _ = tokio::time::sleep_until(until) => self.half_open(),
                }
            }
            let batch = match self.collect_batch().await {
                Ok(Some(batch)) => batch,
                Ok(None) => return,
                Err((pending, Interrupted::Shutdown(budget))) => return self.flush(pending, budget).await,
            };
            if let Err((pending, Interrupted::Shutdown(budget))) = self.deliver(batch).await {
                return self.flush(pending, budget).await;
            }
        }
    }

    /// The next batch: at least one record, then more until the batch is full or its
    /// first record has waited the batch timeout. `Ok(None)`: every producer is gone.
    async fn collect_batch(&mut self) -> Result<Option<Vec<OutEvent>>, (Vec<OutEvent>, Interrupted)> {
        let mut batch = Vec::new();
        let first = tokio::select! {
            biased;
            budget = shutdown_requested(&mut self.shutdown) => return Err((batch, Interrupted::Shutdown(budget))),
            record = self.rx.recv() => record,
        };
        let Some(first) = first else { return Ok(None) };
        batch.push(self.event(first));
        let deadline = Instant::now() + self.config.batch_timeout;
        while batch.len() < self.config.batch_size {
            // Take what is already queued without touching the timer.
            if let Ok(record) = self.rx.try_recv() {
                batch.push(self.event(record));
                continue;
            }
            tokio::select! {
                biased;
                budget = shutdown_requested(&mut self.shutdown) => return Err((batch, Interrupted::Shutdown(budget))),
                record = self.rx.recv() => match record {
                    Some(record) => batch.push(self.event(record)),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        Ok(Some(batch))
    }

    fn event(&mut self, body: Vec<u8>) -> OutEvent {
        self.sequence += 1;
        self.stats.in_hand.fetch_add(1, Ordering::Relaxed);
        OutEvent {
            body,
            partition_key: None,
            properties: Map::new(),
            source_partition: "logs".to_string(),
            source_sequence_number: self.sequence,
        }
    }

    /// Sends one batch with retries (one attempt while half-open) and updates the
    /// counters and the circuit.
    async fn deliver(&mut self, batch: Vec<OutEvent>) -> Result<(), (Vec<OutEvent>, Interrupted)> {
        let attempts = if self.breaker.half_open {
            1
        } else {
            self.config.attempts.max(1)
        };
        let mut backoff = self.config.retry_backoff;
        let mut last_error = None;
        for number in 1..=attempts {
            if number > 1 {
                tokio::select! {
                    biased;
                    budget = shutdown_requested(&mut self.shutdown) => return Err((batch, Interrupted::Shutdown(budget))),
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = backoff.saturating_mul(2);
            }
            let sent = tokio::select! {
                biased;
                budget = shutdown_requested(&mut self.shutdown) => return Err((batch, Interrupted::Shutdown(budget))),
                sent = attempt(&self.sink, &batch, self.config.send_timeout) => sent,
            };
            match sent {
                Ok(()) => {
                    self.succeeded(batch.len());
                    return Ok(());
                }
                Err(e) => last_error = Some(e),
            }
        }
        let error = last_error.unwrap_or_else(|| SinkError::Config("no attempt was made".into()));
        self.failed(batch.len(), &error);
        Ok(())
    }

    fn succeeded(&mut self, records: usize) {
        self.stats.sent.fetch_add(records as u64, Ordering::Relaxed);
        self.stats.in_hand.store(0, Ordering::Relaxed);
        if self.breaker.half_open || self.breaker.consecutive_failures > 0 {
            if self.breaker.half_open {
                tracing::info!(target: "hub2lake::telemetry", destination = %self.sink.describe(), "log stream circuit closed: the probe batch was sent");
            }
            self.breaker = Breaker::default();
        }
        self.stats.set_state(CircuitState::Closed);
    }

    fn failed(&mut self, records: usize, error: &SinkError) {
        self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
        self.stats.drop_records(records);
        self.stats.in_hand.store(0, Ordering::Relaxed);
        self.stats.error(error);
        self.breaker.consecutive_failures += 1;
        if self.breaker.half_open || self.breaker.consecutive_failures >= self.config.circuit_threshold {
            self.breaker.half_open = false;
            self.breaker.open_until = Some(Instant::now() + self.config.circuit_open);
            self.stats.set_state(CircuitState::Open);
            tracing::warn!(
                target: "hub2lake::telemetry",
                destination = %self.sink.describe(),
                failed_batches = self.breaker.consecutive_failures,
                open_secs = self.config.circuit_open.as_secs(),
                error = %super::error_chain(error),
                "log stream circuit open: logs are queued, then dropped, until a probe succeeds"
            );
        }
    }

    fn half_open(&mut self) {
        self.breaker.open_until = None;
        self.breaker.half_open = true;
        self.stats.set_state(CircuitState::HalfOpen);
    }

    /// Sends `pending` and what is queued within `budget`, then stops. With the circuit
    /// open nothing is tried: the records are counted as dropped at once.
    async fn flush(mut self, pending: Vec<OutEvent>, budget: Duration) {
        self.rx.close();
        let deadline = Instant::now() + budget;
        let mut batch = pending;
        loop {
            while batch.len() < self.config.batch_size {
                match self.rx.try_recv() {
                    Ok(record) => {
                        let event = self.event(record);
                        batch.push(event);
                    }
                    Err(_) => break,
                }
            }
            if batch.is_empty() {
                return;
            }
            let remaining = deadline.saturating_duration_since(Instant::now());
            if self.breaker.open_until.is_some() || remaining.is_zero() {
                self.give_up(batch.len());
                return;
            }
            let limit = remaining.min(self.config.send_timeout);
            match attempt(&self.sink, &batch, limit).await {
                Ok(()) => self.succeeded(batch.len()),
                Err(e) => {
                    self.failed(batch.len(), &e);
                    self.give_up(0);
                    return;
                }
            }
            batch = Vec::new();
        }
    }

    /// Counts `in_hand` and everything still queued as dropped.
    fn give_up(&mut self, in_hand: usize) {
        let mut lost = in_hand;
        while self.rx.try_recv().is_ok() {
            lost += 1;
        }
        self.stats.drop_records(lost);
        self.stats.in_hand.store(0, Ordering::Relaxed);
    }
}

/// One send of `batch`, given up after `limit`.
async fn attempt<S: EventSink>(sink: &S, batch: &[OutEvent], limit: Duration) -> Result<(), SinkError> {
    match tokio::time::timeout(limit, sink.send_batch(&Target::Any, batch)).await {
        Ok(result) => result,
        Err(_) => Err(SinkError::Send {
            target: sink.describe(),
            message: format!("no answer within {} ms", limit.as_millis()),
        }),
    }
}

/// Resolves when a flush is requested (a dropped [`Shutdown`] means "stop now").
async fn shutdown_requested(rx: &mut watch::Receiver<Option<Duration>>) -> Duration {
    loop {
        if let Some(budget) = *rx.borrow_and_update() {
            return budget;
        }
        if rx.changed().await.is_err() {
            return Duration::ZERO;
        }
    }
}

thread_local! {
    static ON_WORKER_THREAD: Cell<bool> = const { Cell::new(false) };
}

/// Whether the current thread is a stream worker's (its events are not streamed).
pub fn on_worker_thread() -> bool {
    ON_WORKER_THREAD.with(Cell::get)
}

/// A worker running on its own thread.
#[derive(Debug)]
pub struct Pipeline {
    /// `eventhub` or `file`.
    pub name: &'static str,
    /// Where it sends, for logs.
    pub destination: String,
    pub queue: Queue,
    shutdown: Shutdown,
    done: Mutex<Option<std::sync::mpsc::Receiver<()>>>,
}

impl Pipeline {
    /// Asks the worker to send what is queued within `budget` and waits for it at most
    /// that long (plus a little for the thread to finish). Returns whether it finished.
    pub fn flush(&self, budget: Duration) -> bool {
        self.shutdown.flush_within(budget);
        let Some(done) = self.done.lock().ok().and_then(|mut d| d.take()) else {
            return true;
        };
        done.recv_timeout(budget + Duration::from_millis(100)).is_ok()
    }
}

/// Starts a worker thread; `make_sink` runs on it (a sink need not be `Send`).
pub fn spawn<S, F>(
    name: &'static str,
    destination: String,
    config: StreamConfig,
    make_sink: F,
) -> std::io::Result<Pipeline>
where
    S: EventSink + 'static,
    F: FnOnce() -> S + Send + 'static,
{
    let (queue, parts, shutdown) = unbound_channel(config);
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(format!("log-stream-{name}"))
        .spawn(move || {
            ON_WORKER_THREAD.with(|f| f.set(true));
            let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("hub2lake: the {name} log stream cannot start its runtime: {e}");
                    return;
                }
            };
            runtime.block_on(parts.with_sink(make_sink()).run());
            let _ = done_tx.send(());
        })?;
    Ok(Pipeline {
        name,
        destination,
        queue,
        shutdown,
        done: Mutex::new(Some(done_rx)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    /// When a batch was sent, and its records' sequence numbers.
    type SentBatch = (Instant, Vec<i64>);

    /// A sender behind the producer's trait that records batches, and fails or hangs
    /// on demand.
    #[derive(Clone, Default)]
    struct Scripted {
        batches: Arc<Mutex<Vec<SentBatch>>>,
        calls: Arc<AtomicU64>,
        fail: Arc<AtomicBool>,
        hang: Arc<AtomicBool>,
    }

    impl Scripted {
        fn sizes(&self) -> Vec<usize> {
            self.batches.lock().unwrap().iter().map(|(_, b)| b.len()).collect()
        }
        fn calls(&self) -> u64 {
            self.calls.load(Ordering::SeqCst)
        }
    }

    impl EventSink for Scripted {
        async fn send_batch(&self, _target: &Target, events: &[OutEvent]) -> Result<(), SinkError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.hang.load(Ordering::SeqCst) {
                std::future::pending::<()>().await;
            }
            if self.fail.load(Ordering::SeqCst) {
                return Err(SinkError::Connect {
                    destination: "eventhub://127.0.0.1:1/application-logs".into(),
                    message: "connection refused".into(),
                });
            }
            let seqs = events.iter().map(|e| e.source_sequence_number).collect();
            self.batches.lock().unwrap().push((Instant::now(), seqs));
            Ok(())
        }
        fn describe(&self) -> String {
            "scripted".into()
        }
    }

    /// A failing target whose circuit opened on the first failed batch of 10 events.
    async fn with_an_open_circuit() -> (Scripted, Queue, tokio::task::JoinHandle<()>, Shutdown) {
        let sink = Scripted::default();
        sink.fail.store(true, Ordering::SeqCst);
        let (queue, worker, shutdown) = channel(
            sink.clone(),
            StreamConfig {
                circuit_threshold: 1,
                attempts: 1,
                ..config()
            },
        );
        let task = tokio::spawn(worker.run());
        offer(&queue, 10);
        settle(Duration::from_millis(10)).await;
        assert_eq!(queue.health().state, CircuitState::Open);
        (sink, queue, task, shutdown)
    }

    /// Batches go out only when full (or flushed): the timer is an hour away.
    fn without_the_batch_timer() -> StreamConfig {
        StreamConfig {
            batch_timeout: Duration::from_secs(3600),
            ..config()
        }
    }

    fn config() -> StreamConfig {
        StreamConfig {
            batch_size: 10,
            batch_timeout: Duration::from_secs(1),
            queue_size: 1000,
            circuit_threshold: 3,
            circuit_open: Duration::from_secs(30),
            attempts: 2,
            retry_backoff: Duration::from_millis(100),
            send_timeout: Duration::from_secs(10),
        }
    }

    fn offer(queue: &Queue, n: usize) {
        for i in 0..n {
            assert!(queue.offer(format!("{{\"message\":\"{i}\"}}").into_bytes()));
        }
    }

    /// Lets the worker run (paused time moves only when every task waits).
    async fn settle(d: Duration) {
        tokio::time::sleep(d).await;
    }

    #[tokio::test(start_paused = true)]
    async fn full_batches_go_at_once_and_the_rest_after_the_timeout() {
        let sink = Scripted::default();
        let (queue, worker, _shutdown) = channel(sink.clone(), without_the_batch_timer());
        let started = Instant::now();
        let task = tokio::spawn(worker.run());
        offer(&queue, 25);
        settle(Duration::from_millis(10)).await;
        assert_eq!(sink.sizes(), vec![10, 10], "full batches must not wait for the timer");
        settle(Duration::from_secs(3600)).await;
        assert_eq!(sink.sizes(), vec![10, 10, 5]);
        let last = sink.batches.lock().unwrap()[2].0;
        assert!(
            last - started >= Duration::from_secs(3600),
            "the partial batch waited its timeout"
        );
        let seqs: Vec<i64> = sink
            .batches
            .lock()
            .unwrap()
            .iter()
            .flat_map(|(_, s)| s.clone())
            .collect();
        assert_eq!(seqs, (1..=25).collect::<Vec<_>>(), "order is kept");
        assert_eq!(queue.health().sent, 25);
        drop(queue);
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_batch_goes_when_its_first_record_has_waited_the_timeout() {
        let sink = Scripted::default();
        let (queue, worker, _shutdown) = channel(sink.clone(), config());
        tokio::spawn(worker.run());
        offer(&queue, 3);
        settle(Duration::from_millis(900)).await;
        assert!(sink.sizes().is_empty(), "sent before the batch timeout");
        offer(&queue, 2);
        settle(Duration::from_millis(200)).await;
        assert_eq!(sink.sizes(), vec![5]);
        let h = queue.health();
        assert_eq!((h.state, h.sent, h.queued, h.dropped), (CircuitState::Closed, 5, 0, 0));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts_without_waiting_or_growing() {
        let sink = Scripted::default();
        let (queue, _worker, _shutdown) = channel(
            sink,
            StreamConfig {
                queue_size: 50,
                ..config()
            },
        );
        let started = std::time::Instant::now();
        let accepted = (0..10_000).filter(|i| queue.offer(vec![b'x'; 100 + i % 7])).count();
        assert!(started.elapsed() < Duration::from_secs(5), "offer never waits");
        assert_eq!(accepted, 50);
        let h = queue.health();
        assert_eq!(h.queued, 50, "memory is bounded by the queue size");
        assert_eq!(h.dropped, 10_000 - 50);
        assert_eq!(queue.capacity(), 50);
    }

    #[tokio::test(start_paused = true)]
    async fn the_circuit_opens_probes_half_open_and_closes_on_success() {
        let sink = Scripted::default();
        sink.fail.store(true, Ordering::SeqCst);
        let (queue, worker, _shutdown) = channel(sink.clone(), config());
        tokio::spawn(worker.run());

        // Three failed batches (two attempts each) open the circuit.
        for _ in 0..3 {
            offer(&queue, 10);
            settle(Duration::from_millis(500)).await;
        }
        let h = queue.health();
        assert_eq!(h.state, CircuitState::Open, "{h:?}");
        assert_eq!((h.failed_batches, h.dropped, h.sent), (3, 30, 0));
        assert!(h.last_error.as_deref().unwrap().contains("connection refused"), "{h:?}");
        assert_eq!(sink.calls(), 6, "two attempts per batch");

        // While open, nothing is tried; records wait in the queue.
        offer(&queue, 10);
        settle(Duration::from_secs(20)).await;
        assert_eq!(sink.calls(), 6);
        assert_eq!(queue.health().queued, 10);

        // After the pause: one probe, one attempt; it fails and the circuit re-opens.
        settle(Duration::from_secs(11)).await;
        assert_eq!(sink.calls(), 7, "a half-open probe is one attempt");
        let h = queue.health();
        assert_eq!((h.state, h.failed_batches), (CircuitState::Open, 4));

        // The target recovers: the next probe succeeds and the circuit closes.
        sink.fail.store(false, Ordering::SeqCst);
        offer(&queue, 10);
        settle(Duration::from_secs(30)).await;
        let h = queue.health();
        assert_eq!(h.state, CircuitState::Closed, "{h:?}");
        assert_eq!(h.sent, 10, "the probe batch");
        settle(Duration::from_secs(2)).await;
        assert_eq!(
            queue.health().sent,
            10,
            "only what was offered after the failed probe is left"
        );
        assert_eq!(sink.sizes(), vec![10]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_half_open_probe_is_observable_while_it_is_in_flight() {
        let (sink, queue, _task, _shutdown) = with_an_open_circuit().await;
        sink.fail.store(false, Ordering::SeqCst);
        sink.hang.store(true, Ordering::SeqCst);
        offer(&queue, 10);
        settle(Duration::from_secs(31)).await;
        assert_eq!(queue.health().state, CircuitState::HalfOpen);
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_flushes_what_is_queued_without_waiting_for_the_timer() {
        let sink = Scripted::default();
        let (queue, worker, shutdown) = channel(sink.clone(), without_the_batch_timer());
        let task = tokio::spawn(worker.run());
        offer(&queue, 25);
        settle(Duration::from_millis(10)).await;
        let started = Instant::now();
        shutdown.flush_within(Duration::from_secs(2));
        task.await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(sink.sizes(), vec![10, 10, 5]);
        assert_eq!(queue.health().sent, 25);
        assert!(!queue.offer(b"late".to_vec()), "nothing is queued after the flush");
    }

    #[tokio::test(start_paused = true)]
    async fn the_flush_never_exceeds_its_budget_even_when_the_target_hangs() {
        let sink = Scripted::default();
        sink.hang.store(true, Ordering::SeqCst);
        let (queue, worker, shutdown) = channel(sink.clone(), config());
        let task = tokio::spawn(worker.run());
        offer(&queue, 35);
        settle(Duration::from_millis(10)).await;
        assert_eq!(sink.calls(), 1, "the first batch is in flight");
        let started = Instant::now();
        shutdown.flush_within(Duration::from_secs(2));
        task.await.unwrap();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
            "{took:?}"
        );
        let h = queue.health();
        assert_eq!(h.sent, 0);
        assert_eq!(h.dropped, 35, "everything that could not go is counted: {h:?}");
        assert_eq!(h.queued, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn with_the_circuit_open_the_flush_gives_up_at_once() {
        let (sink, queue, task, shutdown) = with_an_open_circuit().await;
        offer(&queue, 7);
        let calls = sink.calls();
        let started = Instant::now();
        shutdown.flush_within(Duration::from_secs(2));
        task.await.unwrap();
        assert!(started.elapsed() < Duration::from_millis(10));
        assert_eq!(sink.calls(), calls);
        assert_eq!(queue.health().dropped, 17);
    }

    #[test]
    fn a_worker_thread_flushes_a_failing_target_within_the_budget() {
        let sink = Scripted::default();
        sink.fail.store(true, Ordering::SeqCst);
        let s = sink.clone();
        let pipeline = spawn(
            "test",
            "scripted".into(),
            StreamConfig {
                batch_timeout: Duration::from_millis(20),
                retry_backoff: Duration::from_millis(1),
                ..config()
            },
            move || s,
        )
        .unwrap();
        for i in 0..15 {
            pipeline.queue.offer(format!("{i}").into_bytes());
        }
        let started = std::time::Instant::now();
        assert!(pipeline.flush(Duration::from_millis(500)));
        assert!(started.elapsed() < Duration::from_millis(600));
        let h = pipeline.queue.health();
        assert_eq!(h.sent, 0);
        assert_eq!(h.dropped, 15, "{h:?}");
        assert!(h.failed_batches >= 1);
    }
}
