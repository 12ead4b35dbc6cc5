#!/usr/bin/env bash
# A soak: 64 connections for 10 minutes (DUR), 10 % of requests on a route whose primary fails
# every call (its breaker opens; a probe every 2 s). Counts 5xx, latency percentiles, and the
# gateway's resident memory every 5 s; growth is measured from the end of the first minute.
# Figures go to bench/results/soak.md. Needs nginx-light and wrk (installed when missing).
set -euo pipefail
cd "$(dirname "$0")/.."
DUR=${DUR:-600} CONNS=${CONNS:-64} PORT=${PORT:-8095} WARMUP=${WARMUP:-60}
OUT=${OUT:-bench/results/soak.md}
source bench/common.sh
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; }
[ -x .venv/bin/turnout ] || bash deploy/setup.sh
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
nginx -c "$PWD/bench/soak-nginx.conf" & pids="$pids $!"
export BENCH_API_KEY=sk-bench-soak-0123456789 TURNOUT_LOG_LEVEL=warning
.venv/bin/turnout serve --config bench/rules.soak.yaml --port "$PORT" >/tmp/bench-soak.log 2>&1 & gw=$!
pids="$pids $gw"
for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.5; done
rss_log=$(mktemp)
( start=$(date +%s); while kill -0 "$gw" 2>/dev/null; do
    echo "$(( $(date +%s) - start )) $(awk '/VmRSS/{print $2}' "/proc/$gw/status")" >>"$rss_log"; sleep 5; done ) &
pids="$pids $!"
wrk_out=$(KEY=$BENCH_API_KEY wrk -t2 -c"$CONNS" -d"${DUR}s" --timeout 10s -s bench/soak.lua --latency \
  "http://127.0.0.1:$PORT")
metrics=$(curl -fs "http://127.0.0.1:$PORT/metrics")
report() {
  .venv/bin/python bench/soak_report.py "$rss_log" "$WARMUP" "$DUR" "$CONNS" <<<"$wrk_out"$'\n'"@@METRICS@@"$'\n'"$metrics"
}
write_results "$OUT" report
