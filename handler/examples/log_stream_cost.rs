//! CPU cost of one streamed log record, for BENCHMARKS.md ("Log stream"):
//!
//! ```sh
//! cargo run --release -p hub2lake-handler --example log_stream_cost -- none 200000
//! cargo run --release -p hub2lake-handler --example log_stream_cost -- file 200000
//! cargo run --release -p hub2lake-handler --example log_stream_cost -- failing 200000
//! ```
//!
//! Logs N `batch written` events (the handler's per-batch info line, with its fields)
//! inside an invocation span like the server's, then flushes, and prints the process's
//! CPU time (every thread: the logging one and the stream's worker) per event. `none`
//! installs no subscriber (the events cost next to nothing), `file` streams to a
//! JSON-lines file, `failing` to an Event Hub on a closed 127.0.0.1 port (the circuit
//! opens; records queue, then drop). Console logs are off in every mode.

use std::time::{Duration, Instant};

use hub2lake::config::LogFormat;
use hub2lake::telemetry::{self, LogStreamSettings};

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "file".into());
    let n: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let dir = std::env::temp_dir().join(format!("hub2lake-log-cost-{}", std::process::id()));
    let file = dir.join("stream.jsonl");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(1);
    let cs = format!("Endpoint=sb://127.0.0.1:{port}/;SharedAccessKeyName=s;SharedAccessKey=a2V5;EntityPath=logs");
    let env = |k: &str| -> Option<String> {
        match (mode.as_str(), k) {
            (_, "HUB2LAKE_LOG_STDOUT") => Some("false".into()),
            (_, "HUB2LAKE_LOG_STREAM_QUEUE_SIZE") => Some("1000000".into()),
            ("file", "HUB2LAKE_LOG_STREAM_FILE") => Some(file.display().to_string()),
            ("failing", "HUB2LAKE_LOG_EVENTHUB_CONNECTION_STRING") => Some(cs.clone()),
            _ => None,
        }
    };
    let settings = LogStreamSettings::from_lookup(env).expect("valid settings");
    if mode != "none" {
        telemetry::init_service("bench", LogFormat::Text, &settings);
    }
    let cpu = cpu_seconds();
    let wall = Instant::now();
    for i in 0..n {
        let span = tracing::info_span!(
            "invocation",
            function = "ingest",
            invocation_id = "0f8fad5b-d9cb-469f-a165-70867728950e",
            eventhub = "mongo-changes",
            partition = "3",
            first_seq = i as i64 * 1000,
            last_seq = i as i64 * 1000 + 999,
        );
        let _entered = span.enter();
        tracing::info!(
            records = 1000u64,
            dead_letters = 0u64,
            objects_created = 7u64,
            objects_existing = 0u64,
            stored_bytes = 160_000u64,
            duration_ms = 42u64,
            storage_us = 1800u64,
            handler_us = 40_200u64,
            "batch written"
        );
    }
    let logging = wall.elapsed();
    telemetry::flush();
    let total_cpu = cpu_seconds() - cpu;
    let health = telemetry::log_stream_health();
    println!(
        "mode {mode}: {n} events, logging took {:.3} s on the caller, CPU {:.3} s in all threads = {:.2} µs per event; \
         stream: state {}, sent {}, dropped {}, failed batches {}",
        logging.as_secs_f64(),
        total_cpu,
        total_cpu * 1e6 / n as f64,
        health.state.as_str(),
        health.sent,
        health.dropped,
        health.failed_batches,
    );
    let _ = std::fs::remove_dir_all(&dir);
    std::thread::sleep(Duration::from_millis(10));
}
