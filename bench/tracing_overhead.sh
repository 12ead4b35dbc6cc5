#!/usr/bin/env bash
# What tracing costs the pinned path, in one run: the same working tree served twice against the
# fixed-answer nginx upstream, tracing off (A) and on at 100 % sampling (B, spans exported over
# OTLP/HTTP to an nginx trace sink, bench/trace-sink-nginx.conf, which answers every export 200). Rounds alternate; each row is
# the median of its rounds.
#   bash bench/tracing_overhead.sh
# Figures go to bench/results/tracing-overhead.txt (OUT=... to change). Needs nginx-light, wrk, and
# the otel extra (deploy/setup.sh dev installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
OUT=${OUT:-bench/results/tracing-overhead.txt}
DUR=${DUR:-6s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-"1 32"}
fixed_upstream_bench dev
nginx -c "$PWD/bench/trace-sink-nginx.conf" & pids="$pids $!"; sleep 0.5
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
start() { # port, then any environment for that gateway
  local port=$1; shift
  env "$@" .venv/bin/turnout serve --config bench/rules.overhead.yaml --port "$port" >"/tmp/bench-tracing-$port.log" 2>&1 &
  pids="$pids $!"
  for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$port/healthz" && return; sleep 0.5; done
  echo "the gateway on $port did not start" >&2; exit 1
}
start 8098 TURNOUT_OTEL_ENDPOINT=
start 8099 TURNOUT_OTEL_ENDPOINT=http://127.0.0.1:18200
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores; working tree on $(git rev-parse --short HEAD); pinned (model=upstream-model), auth on, cache bypassed"
  echo "# off: no tracing; on: every request traced (SERVER, route, CLIENT spans), exported over OTLP/HTTP"
  echo "# $ROUNDS rounds of $DUR per side and connection count, alternating; median of the rounds"
  KEY=$BENCH_API_KEY alternate_rounds "tracing-off:8098:upstream-model:$SHARED/bench/chat.lua" \
    "tracing-on:8099:upstream-model:$SHARED/bench/chat.lua"
  if grep -q "trace export failed" /tmp/bench-tracing-8099.log; then echo "# trace export failed during the run"; fi
}
write_results "$OUT" run_all
