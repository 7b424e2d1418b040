//! A tiny run of `hub2lake bench` against the real handler binary: the harness
//! works end to end and reports every figure BENCHMARKS.md uses. (Numbers are not
//! asserted: performance is measured, not tested.)

use std::process::Command;

#[test]
fn a_tiny_bench_run_reports_every_figure() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("bench.json");
    let lake = dir.path().join("lake");
    let out = Command::new(env!("CARGO_BIN_EXE_hub2lake"))
        .args(["bench", "--handler"])
        .arg(hub2lake_testkit::handler_exe())
        .arg("--lake")
        .arg(format!("file://{}", lake.display()))
        .args([
            "--partitions",
            "2",
            "--batches-per-partition",
            "3",
            "--batch-size",
            "50",
        ])
        .args(["--event-size", "300", "--gzip-level", "1", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "throughput",
        "invocation latency",
        "handler's own",
        "storage calls",
        "peak RSS",
        "ready",
        "events per CPU-second",
        "output",
    ] {
        assert!(stdout.contains(line), "no {line:?} in\n{stdout}");
    }
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(r["events"], 300);
    assert_eq!(r["batches"], 6);
    assert_eq!(r["non_2xx"], 0);
    let positive = |k: &str| {
        r.pointer(k)
            .and_then(serde_json::Value::as_f64)
            .is_some_and(|v| v > 0.0)
    };
    for k in [
        "/events_per_second",
        "/input_mb_per_second",
        "/latency_ms/p99",
        "/handler_own_ms/p50",
        "/storage_ms/p50",
        "/peak_rss_mb",
        "/idle_rss_mb",
        "/ready_ms",
    ] {
        assert!(positive(k), "{k} missing or not positive in {r}");
    }
    assert!(r["handler_cpu_seconds"].as_f64().is_some_and(|v| v >= 0.0), "{r}");
    let user_and_system = r["handler_user_seconds"].as_f64().unwrap() + r["handler_system_seconds"].as_f64().unwrap();
    assert!(
        (user_and_system - r["handler_cpu_seconds"].as_f64().unwrap()).abs() < 1e-6,
        "{r}"
    );
    // The output the handler reports is what the lake holds: every data object's
    // size (receipts are bookkeeping, not output).
    assert_eq!(r["output_bytes"].as_u64(), Some(data_object_bytes(&lake)), "{r}");
    assert!(positive("/compression_ratio"), "{r}");
    // Every invocation's log line was read: the handler's own time never exceeds
    // the latency the client saw.
    assert!(r["handler_own_ms"]["max"].as_f64() <= r["latency_ms"]["max"].as_f64());
}

/// Sizes of the `.jsonl*` objects under `dir`, receipts and other `_` areas aside.
fn data_object_bytes(dir: &std::path::Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let meta = entry.metadata().unwrap();
        if meta.is_dir() && !name.starts_with('_') {
            total += data_object_bytes(&entry.path());
        } else if meta.is_file() && name.contains(".jsonl") {
            total += meta.len();
        }
    }
    total
}
