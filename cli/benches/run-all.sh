#!/usr/bin/env bash
# Reproduces every number in BENCHMARKS.md: the criterion micro benchmarks and the
# hub2lake bench macro runs. Run it on an idle machine; it takes about 5 minutes.
# Results: target/benchmarks/ (criterion's report under target/criterion/).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/benchmarks
mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  rustc --version
} | tee "$out/machine.txt"

echo "== micro: cargo bench --bench ingest"
cargo bench --bench ingest 2>&1 | tee "$out/micro.txt" | grep -E '^[a-z].*/|thrpt|time:' || true

echo "== macro: hub2lake bench"
cargo build --release --quiet
bench=./target/release/hub2lake
run() {
  local name=$1
  shift
  echo "-- $name: hub2lake bench $*"
  "$bench" bench --partitions 2 --batches-per-partition 20 --batch-size 1000 --event-size 1024 \
    --json "$out/macro-$name.json" "$@" | tee "$out/macro-$name.txt"
}
run gzip6 --gzip-level 6
run gzip1 --gzip-level 1
run none --gzip-level 0
# glibc's own defaults (8 arenas per core, dynamic mmap threshold): what the
# handler's allocator settings (handler/src/memory.rs) change.
run gzip6-glibc-defaults --gzip-level 6 --set GLIBC_TUNABLES=glibc.malloc.arena_max=16
# One partition, one batch in flight: latency without a second batch competing for CPU.
"$bench" bench --partitions 1 --batches-per-partition 40 --batch-size 1000 --event-size 1024 \
  --gzip-level 6 --json "$out/macro-gzip6-1p.json" | tee "$out/macro-gzip6-1p.txt"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
