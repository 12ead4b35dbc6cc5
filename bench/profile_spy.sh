#!/usr/bin/env bash
# The pinned path profiled by sampling, as served: `turnout serve` (one process) under wrk at 32
# connections against the fixed-answer upstream, py-spy sampling it without slowing it (cProfile,
# bench/profile_path.py, roughly halves its throughput and inflates small calls).
#   bash bench/profile_spy.sh [SECONDS]      (MODEL=auto profiles the auto path instead)
# Writes bench/results/profile-<path>.svg (a flame graph) and profile-<path>-top.txt (functions by
# the share of samples they are on the stack of, and by their own). py-spy goes to /tmp/bench-py-spy.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
SECONDS_=${1:-10}
MODEL=${MODEL:-upstream-model}
name=$([ "$MODEL" = auto ] && echo auto || echo pinned)
[ -x /tmp/bench-py-spy/bin/py-spy ] || { python3 -m venv /tmp/bench-py-spy && /tmp/bench-py-spy/bin/pip install -q py-spy; }
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
curl -fs -o /dev/null -X POST http://127.0.0.1:18000/v1/chat/completions || { nginx -c "$SHARED/bench/upstream-nginx.conf" & pids="$pids $!"; sleep 1; }
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
.venv/bin/turnout serve --config bench/rules.overhead.yaml --port 8094 >/tmp/bench-spy.log 2>&1 & server=$!; pids="$pids $server"
for _ in $(seq 1 60); do curl -fs -o /dev/null http://127.0.0.1:8094/healthz && break; sleep 0.5; done
load() { KEY=$BENCH_API_KEY MODEL=$MODEL wrk -t1 -c32 -d"$1" -s "$SHARED/bench/chat.lua" http://127.0.0.1:8094; }
load 3s >/dev/null  # warm up
raw=$(mktemp)
load "$((SECONDS_ + 2))s" >"$raw.wrk" & wrk_pid=$!
sleep 1
/tmp/bench-py-spy/bin/py-spy record --pid "$server" --duration "$SECONDS_" --rate 400 --format raw -o "$raw" --nonblocking >/dev/null 2>&1
/tmp/bench-py-spy/bin/py-spy record --pid "$server" --duration 3 --rate 400 -o "bench/results/profile-$name.svg" --nonblocking >/dev/null 2>&1 || true
wait "$wrk_pid"
{ echo "# $name path, c=32, ${SECONDS_} s sampled by py-spy at 400 Hz, $(awk '/Requests\/sec/{print $2}' "$raw.wrk") req/s while sampled"
  .venv/bin/python -m bench.collapsed_top "$raw"; } >"bench/results/profile-$name-top.txt"
cat "bench/results/profile-$name-top.txt"
rm -f "$raw" "$raw.wrk"
