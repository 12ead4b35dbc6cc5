#!/usr/bin/env bash
# What guardrails cost the pinned path, in one run, one gateway process, the fixed-answer nginx
# upstream: a route with none (plain), with a pattern and the PII check on input (input: the prompt
# holds an email and a phone number, both redacted), and with those plus the shipped moderation
# model on the answer (both). Rounds alternate over the three so drift hits each alike; each row is
# the median of its rounds.
#   bash bench/guardrail_overhead.sh
# Figures go to bench/results/guardrail-overhead.txt (OUT=... to change). Needs nginx-light and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
OUT=${OUT:-bench/results/guardrail-overhead.txt}
DUR=${DUR:-6s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-"1 32"} PORT=${PORT:-8098}
fixed_upstream_bench
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
.venv/bin/turnout serve --config bench/rules.guardrails.yaml --port "$PORT" >"/tmp/bench-guardrails.log" 2>&1 & pids="$pids $!"
for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.5; done
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores; working tree on $(git rev-parse --short HEAD); auth on, cache bypassed, one worker"
  echo "# $ROUNDS rounds of $DUR per route and connection count, alternating; median of the rounds"
  local route sides=()
  for route in plain input both; do sides+=("$route:$PORT:$route:bench/chat-pii.lua"); done
  KEY=$BENCH_API_KEY alternate_rounds "${sides[@]}"
  echo "# guardrail results over the run (turnout_guardrail_results_total):"
  curl -fs "http://127.0.0.1:$PORT/metrics" | grep '^turnout_guardrail_results_total' | sed 's/^/# /'
}
write_results "$OUT" run_all
