#!/usr/bin/env bash
# Throughput of `hub2lake bridge` into the file sink: a fresh redis-server (no
# persistence) on a free port, COUNT change events of ~SIZE bytes published first, then
# the time the bridge takes to deliver and acknowledge all of them.
#
#   cargo build --release -p hub2lake-cli && bash cli/benches/bridge.sh [COUNT] [SIZE] [BATCH_SIZE] [extra bridge flags…]
set -euo pipefail
cd "$(dirname "$0")/../.."
COUNT=${1:-300000}
SIZE=${2:-1000}
BATCH=${3:-100}
shift $(( $# < 3 ? $# : 3 ))
BIN=./target/release/hub2lake
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
WORK=$(mktemp -d)
redis-server --port "$PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$WORK" >"$WORK/redis.log" &
REDIS=$!
trap 'kill $REDIS 2>/dev/null; rm -rf "$WORK"' EXIT
until redis-cli -p "$PORT" ping >/dev/null 2>&1; do sleep 0.05; done
URL="redis://127.0.0.1:$PORT"

"$BIN" bridge publish --redis-url "$URL" --stream changes --count "$COUNT" --event-size "$SIZE"
echo "stream: $(redis-cli -p "$PORT" xlen changes) entries, $(redis-cli -p "$PORT" memory usage changes) bytes in Redis"

start=$(date +%s.%N)
"$BIN" bridge --redis-url "$URL" --stream changes --group bench --consumer bench \
    --body-field data --partition-key-field key --batch-size "$BATCH" \
    --to-file "$WORK/out" --progress-interval-ms 1000 "$@" 2>"$WORK/bridge.log" &
BRIDGE=$!
# Done when the group has read every entry and nothing is pending (all acknowledged).
until [ "$(redis-cli -p "$PORT" xinfo groups changes 2>/dev/null | awk '
        prev=="entries-read" {read=$0} prev=="pending" {pending=$0} {prev=$0}
        END {print (read==n && pending==0) ? "done" : "no"}' n="$COUNT")" = done ]; do
    sleep 0.02
done
end=$(date +%s.%N)
peak=$(awk '/VmHWM/ {print $2/1024 " MB"}' "/proc/$BRIDGE/status")
cpu=$(awk '{print ($14+$15)/100 " s"}' "/proc/$BRIDGE/stat")
kill -TERM "$BRIDGE"
wait "$BRIDGE"
lines=$(wc -l <"$WORK/out/changes.jsonl")
bytes=$(stat -c %s "$WORK/out/changes.jsonl")
awk -v n="$COUNT" -v l="$lines" -v b="$bytes" -v s="$start" -v e="$end" 'BEGIN {
    t = e - s
    printf "delivered %d entries (%d lines, %.0f MB written) in %.2f s: %.0f entries/s, %.1f MB/s of file\n", n, l, b/1e6, t, n/t, b/1e6/t
}'
echo "bridge: peak RSS $peak, CPU time $cpu"
grep -o 'progress: [0-9]* entries/s' "$WORK/bridge.log" | head -8
