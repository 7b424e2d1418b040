#!/usr/bin/env bash
# Reproduces the numbers in BENCHMARKS.md: the criterion micro benchmarks, the
# compressors on the lake's own objects, and the `hub2lake bench` macro runs under the
# load of issue 16 (2 partitions x 29 batches x 1000 change events of ~1 KB, one batch
# in flight per partition). Run it on an idle machine; it takes about 10 minutes
# (MICRO=0 skips criterion: ~2 minutes). Results: target/benchmarks/, the macro table
# in target/benchmarks/macro.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=target/benchmarks
rm -rf "$out" && mkdir -p "$out"
{
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
  echo "nproc: $(nproc)"
  echo "cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  rustc --version
} | tee "$out/machine.txt"

if [ "${MICRO:-1}" != 0 ]; then
  echo "== micro: cargo bench -p hub2lake-cli --bench ingest"
  cargo bench -p hub2lake-cli --bench ingest 2>&1 | tee "$out/micro.txt" | grep -E '^[a-z].*/|time:|^ratio' || true
fi

echo "== macro: hub2lake bench"
cargo build --release --quiet
cargo build --release --quiet -p hub2lake-cli --example compressors
bench=./target/release/hub2lake
REPEATS=${REPEATS:-2}
run() {
  local name=$1 partitions=$2 batches=$3
  shift 3
  rm -rf "$out/lake-$name"
  echo "-- $name: hub2lake bench --partitions $partitions --batches-per-partition $batches $*"
  "$bench" bench --partitions "$partitions" --batches-per-partition "$batches" --batch-size 1000 \
    --event-size 1024 --lake "file://$PWD/$out/lake-$name" --json "$out/macro-$name-$round.json" "$@" \
    | tee "$out/macro-$name-$round.txt" | grep -E 'latency|CPU|output|RSS'
}
# Configurations alternate within each round, so a change in the machine's load
# shows in every row rather than in one.
for round in $(seq 1 "$REPEATS"); do
  run gzip6 2 29 --gzip-level 6
  run gzip1 2 29 --gzip-level 1
  run zstd1 2 29 --zstd-level 1
  run zstd3 2 29 --zstd-level 3
  run none 2 29 --gzip-level 0
  # One partition, one batch in flight: the latency of a batch with idle cores.
  run gzip6-1p 1 58 --gzip-level 6
  run zstd3-1p 1 58 --zstd-level 3
done

echo "== compressors on the gzip 6 run's objects"
./target/release/examples/compressors "$out/lake-gzip6" 1000 | tee "$out/compressors.txt"

python3 - "$out" <<'PY' | tee "$out/macro.md"
import glob, json, os, sys
out = sys.argv[1]
rows = {}
for path in sorted(glob.glob(os.path.join(out, "macro-*-*.json"))):
    name = os.path.basename(path)[len("macro-"):].rsplit("-", 1)[0]
    rows.setdefault(name, []).append(json.load(open(path)))
print("| run | handler CPU-s per GB | events per CPU-second | user / system CPU (s) | latency p50 / p99 (ms) | handler's own p99 (ms) | peak RSS (MB) | output MB (ratio) |")
print("|---|---|---|---|---|---|---|---|")
order = ["gzip6", "gzip1", "zstd1", "zstd3", "none", "gzip6-1p", "zstd3-1p"]
cells = [
    lambda r: "%.1f" % r["cpu_seconds_per_gb_input"],
    lambda r: "{:,.0f}".format(r["events_per_cpu_second"]),
    lambda r: "%.2f / %.2f" % (r["handler_user_seconds"], r["handler_system_seconds"]),
    lambda r: "%.1f / %.1f" % (r["latency_ms"]["p50"], r["latency_ms"]["p99"]),
    lambda r: "%.1f" % r["handler_own_ms"]["p99"],
    lambda r: "%.1f" % r["peak_rss_mb"],
]
for name in [n for n in order if n in rows] + sorted(set(rows) - set(order)):
    rs = rows[name]
    line = [name] + [" · ".join(cell(r) for r in rs) for cell in cells]
    line.append("%.2f (%.2fx)" % (rs[0]["output_bytes"] / 1e6, rs[0]["compression_ratio"]))
    print("| " + " | ".join(line) + " |")
PY
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/machine.txt"
