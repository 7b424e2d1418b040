//! The macro benchmark: the real `handler` binary over HTTP, fed pre-built host
//! requests from the simulator's event generator, measured from outside the way an
//! operator would (`/proc` for memory and CPU, wall clock for throughput and latency).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde::Serialize;
use tokio::sync::mpsc;

use crate::simulator::client;
use crate::simulator::process::{HandlerProcess, Launch};
use crate::simulator::report::percentile;
use crate::simulator::{ChangeStreamConfig, EventSource, Hub, SimError};
use hub2lake::host::wire::{eventhub_request, WireDataType, WirePartition, WireRetry};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    pub handler: PathBuf,
    /// App settings for the handler (at least `HUB2LAKE_LAKE_URL`).
    pub settings: BTreeMap<String, String>,
    pub partitions: u32,
    pub batches_per_partition: u64,
    pub batch_size: u64,
    pub event_size: usize,
    pub seed: u64,
}

/// Measured results (also written as JSON).
#[derive(Debug, Clone, Serialize)]
pub struct BenchResult {
    pub partitions: u32,
    pub batches: u64,
    pub batch_size: u64,
    pub events: u64,
    pub input_bytes: u64,
    pub request_bytes: u64,
    pub wall_seconds: f64,
    pub events_per_second: f64,
    pub input_mb_per_second: f64,
    pub latency_ms: Percentiles,
    /// Per invocation, the handler's own time (reading the request, decoding,
    /// encoding: latency minus storage calls), from its `batch written` log lines.
    pub handler_own_ms: Percentiles,
    /// Per invocation, the wall time of its storage calls.
    pub storage_ms: Percentiles,
    /// The handler's CPU time (user + system) while driven.
    pub handler_cpu_seconds: f64,
    pub handler_user_seconds: f64,
    /// Kernel time: sockets, and for a local lake file creation.
    pub handler_system_seconds: f64,
    pub cpu_seconds_per_gb_input: f64,
    /// Events written per second of the handler's CPU time.
    pub events_per_cpu_second: f64,
    /// Bytes of the objects written (data and dead letters, not receipts), summed
    /// from the `batch written` log lines: the same for every kind of lake.
    pub output_bytes: u64,
    /// Event-body bytes per output byte.
    pub compression_ratio: f64,
    pub peak_rss_mb: f64,
    pub idle_rss_mb: f64,
    pub largest_request_mb: f64,
    pub ready_ms: f64,
    pub non_2xx: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    fn of(mut ms: Vec<f64>) -> Self {
        ms.sort_by(f64::total_cmp);
        Self {
            p50: percentile(&ms, 0.50),
            p95: percentile(&ms, 0.95),
            p99: percentile(&ms, 0.99),
            max: ms.last().copied().unwrap_or(0.0),
        }
    }
}

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    Handler(#[from] SimError),
    #[error("this benchmark reads /proc/<pid>: it needs Linux ({0})")]
    Proc(String),
}

/// Runs the benchmark.
pub async fn run(config: &BenchConfig) -> Result<BenchResult, BenchError> {
    let (lines_tx, lines_rx) = mpsc::unbounded_channel();
    let timings = tokio::spawn(collect_timings(lines_rx));
    let handler = HandlerProcess::start(&launch(config, lines_tx), 1).await?;
    let pid = handler
        .pid
        .ok_or_else(|| BenchError::Proc("the handler exited at once".into()))?;
    let ready = handler.ready_after;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let idle_rss = proc_status_kb(pid, "VmRSS:")?;

    let requests = build_requests(config);
    let input_bytes: u64 = requests.iter().flatten().map(|(_, input)| *input).sum();
    let request_bytes: u64 = requests.iter().flatten().map(|(r, _)| r.len() as u64).sum();
    let largest = requests.iter().flatten().map(|(r, _)| r.len()).max().unwrap_or(0);
    let cpu_before = proc_cpu_seconds(pid)?;

    let wall = Instant::now();
    let mut tasks = Vec::new();
    let port = handler.port;
    for partition in requests {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(partition.len());
            let mut failures = 0u64;
            for (i, (body, _)) in partition.into_iter().enumerate() {
                let t = Instant::now();
                let answer = client::invoke(
                    port,
                    "ingest",
                    body,
                    &format!("bench-{i}"),
                    Duration::from_secs(600),
                    None,
                )
                .await;
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
                if !matches!(answer, Ok(ref a) if (200..300).contains(&a.status)) {
                    failures += 1;
                }
            }
            (latencies, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut non_2xx = 0;
    for t in tasks {
        if let Ok((l, f)) = t.await {
            latencies.extend(l);
            non_2xx += f;
        }
    }
    let wall_seconds = wall.elapsed().as_secs_f64();
    let cpu = proc_cpu_seconds(pid)? - cpu_before;
    let peak_rss = proc_status_kb(pid, "VmHWM:")?;
    handler.kill_and_wait().await;
    let written = timings.await.unwrap_or_default();
    let output_bytes: u64 = written.iter().map(|b| b.stored_bytes).sum();

    let events = u64::from(config.partitions) * config.batches_per_partition * config.batch_size;
    Ok(BenchResult {
        partitions: config.partitions,
        batches: u64::from(config.partitions) * config.batches_per_partition,
        batch_size: config.batch_size,
        events,
        input_bytes,
        request_bytes,
        wall_seconds,
        events_per_second: events as f64 / wall_seconds,
        input_mb_per_second: input_bytes as f64 / 1e6 / wall_seconds,
        latency_ms: Percentiles::of(latencies),
        handler_own_ms: Percentiles::of(written.iter().map(|b| b.own_ms).collect()),
        storage_ms: Percentiles::of(written.iter().map(|b| b.storage_ms).collect()),
        handler_cpu_seconds: cpu.total(),
        handler_user_seconds: cpu.user,
        handler_system_seconds: cpu.system,
        cpu_seconds_per_gb_input: cpu.total() / (input_bytes as f64 / 1e9),
        events_per_cpu_second: events as f64 / cpu.total().max(0.01),
        output_bytes,
        compression_ratio: input_bytes as f64 / output_bytes.max(1) as f64,
        peak_rss_mb: peak_rss as f64 / 1024.0,
        idle_rss_mb: idle_rss as f64 / 1024.0,
        largest_request_mb: largest as f64 / 1e6,
        ready_ms: ready.as_secs_f64() * 1000.0,
        non_2xx,
    })
}

/// The handler as the host starts it, with JSON logs at `info` for the server: each
/// `batch written` line carries that batch's storage and own time.
fn launch(config: &BenchConfig, lines: mpsc::UnboundedSender<String>) -> Launch {
    let mut settings = config.settings.clone();
    settings.insert("RUST_LOG".into(), "warn,hub2lake::server=info".into());
    settings.insert("HUB2LAKE_LOG_FORMAT".into(), "json".into());
    Launch {
        executable: config.handler.clone(),
        app_root: std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
        settings,
        inherit_env: false,
        ready_timeout: Duration::from_secs(30),
        // Start-up is measured to the millisecond.
        probe_interval: Duration::from_millis(1),
        log_file: None,
        lines: Some(lines),
    }
}

/// Every request body, per partition, built before the clock starts.
fn build_requests(config: &BenchConfig) -> Vec<Vec<(Bytes, u64)>> {
    let per_partition = config.batches_per_partition * config.batch_size;
    let source = EventSource::ChangeStream(ChangeStreamConfig {
        events: per_partition * u64::from(config.partitions),
        event_size: config.event_size,
        seed: config.seed,
    });
    let start = chrono::Utc::now() - chrono::TimeDelta::hours(3);
    let hub = Hub::new(source, config.partitions, 0, start, Duration::from_secs(7200));
    (0..config.partitions as usize)
        .map(|p| {
            let wire_partition = WirePartition {
                partition_id: p.to_string(),
                ..WirePartition::default()
            };
            (0..config.batches_per_partition)
                .map(|b| {
                    let events: Vec<_> = (b * config.batch_size..(b + 1) * config.batch_size)
                        .map(|i| hub.event(p, i))
                        .collect();
                    let input: u64 = events.iter().map(|e| e.body.len() as u64).sum();
                    let retry = Some(WireRetry {
                        retry_count: 0,
                        max_retry_count: -1,
                    });
                    let body = eventhub_request(
                        "events",
                        &wire_partition,
                        &events,
                        WireDataType::String,
                        retry,
                        "ingest",
                    );
                    (Bytes::from(body), input)
                })
                .collect()
        })
        .collect()
}

/// What the handler logged about one written batch.
#[derive(Debug, Clone, Copy, PartialEq)]
struct WrittenBatch {
    own_ms: f64,
    storage_ms: f64,
    stored_bytes: u64,
}

/// Reads the handler's JSON log lines until it exits; returns every written batch.
async fn collect_timings(mut lines: mpsc::UnboundedReceiver<String>) -> Vec<WrittenBatch> {
    let mut written = Vec::new();
    while let Some(line) = lines.recv().await {
        written.extend(batch_timing(&line));
    }
    written
}

/// `handler_us`, `storage_us` (in ms) and `stored_bytes` of a `batch written` JSON
/// log line.
fn batch_timing(line: &str) -> Option<WrittenBatch> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    if v.get("message")?.as_str()? != "batch written" {
        return None;
    }
    let number = |k: &str| v.get(k).and_then(serde_json::Value::as_u64);
    Some(WrittenBatch {
        own_ms: number("handler_us")? as f64 / 1000.0,
        storage_ms: number("storage_us")? as f64 / 1000.0,
        stored_bytes: number("stored_bytes").unwrap_or(0),
    })
}

fn proc_status_kb(pid: u32, field: &str) -> Result<u64, BenchError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).map_err(|e| BenchError::Proc(e.to_string()))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| BenchError::Proc(format!("no {field} in /proc/{pid}/status")))
}

/// CPU time of a process, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct CpuTime {
    user: f64,
    system: f64,
}

impl CpuTime {
    fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// utime and stime of a process (USER_HZ is 100 on Linux).
fn proc_cpu_seconds(pid: u32) -> Result<CpuTime, BenchError> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| BenchError::Proc(e.to_string()))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = text.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    // utime and stime are fields 14 and 15 of stat; here 0-based after the name: 11, 12.
    Ok(CpuTime {
        user: ticks(11) as f64 / 100.0,
        system: ticks(12) as f64 / 100.0,
    })
}

impl std::fmt::Display for BenchResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "events              {} in {} batches of {} over {} partitions",
            self.events, self.batches, self.batch_size, self.partitions
        )?;
        writeln!(
            f,
            "input               {:.1} MB of event bodies ({:.1} MB of host requests; largest {:.1} MB)",
            self.input_bytes as f64 / 1e6,
            self.request_bytes as f64 / 1e6,
            self.largest_request_mb
        )?;
        writeln!(f, "wall time           {:.2} s", self.wall_seconds)?;
        writeln!(
            f,
            "throughput          {:.0} events/s, {:.1} MB/s of input",
            self.events_per_second, self.input_mb_per_second
        )?;
        writeln!(
            f,
            "invocation latency  p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.latency_ms.p50, self.latency_ms.p95, self.latency_ms.p99, self.latency_ms.max
        )?;
        writeln!(
            f,
            "  handler's own     p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms (latency minus storage calls)",
            self.handler_own_ms.p50, self.handler_own_ms.p95, self.handler_own_ms.p99, self.handler_own_ms.max
        )?;
        writeln!(
            f,
            "  storage calls     p50 {:.1} ms, p95 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            self.storage_ms.p50, self.storage_ms.p95, self.storage_ms.p99, self.storage_ms.max
        )?;
        writeln!(
            f,
            "handler CPU         {:.2} s (user {:.2} s, system {:.2} s): {:.1} CPU-s per GB of input, {:.0} events per CPU-second",
            self.handler_cpu_seconds,
            self.handler_user_seconds,
            self.handler_system_seconds,
            self.cpu_seconds_per_gb_input,
            self.events_per_cpu_second
        )?;
        writeln!(
            f,
            "output              {:.2} MB of objects ({:.2}x smaller than the event bodies)",
            self.output_bytes as f64 / 1e6,
            self.compression_ratio
        )?;
        writeln!(
            f,
            "handler memory      peak RSS {:.1} MB, idle RSS {:.1} MB",
            self.peak_rss_mb, self.idle_rss_mb
        )?;
        writeln!(f, "start-up            ready {:.1} ms after exec", self.ready_ms)?;
        write!(f, "failed invocations  {}", self.non_2xx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timings_come_from_batch_written_lines_only() {
        let written = r#"{"timestamp":"t","level":"INFO","message":"batch written","records":3,"stored_bytes":4096,"storage_us":2500,"handler_us":1250}"#;
        assert_eq!(
            batch_timing(written),
            Some(WrittenBatch {
                own_ms: 1.25,
                storage_ms: 2.5,
                stored_bytes: 4096
            })
        );
        for other in [
            r#"{"message":"request refused","storage_us":1,"handler_us":1}"#,
            r#"{"message":"batch written","storage_us":1}"#,
            "plain text",
        ] {
            assert_eq!(batch_timing(other), None, "{other}");
        }
    }

    #[test]
    fn percentiles_pick_ranks() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.max), (51.0, 95.0, 99.0, 100.0));
    }
}
