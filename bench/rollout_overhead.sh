#!/usr/bin/env bash
# What rollouts cost the pinned path, in one run, one gateway process, the fixed-answer nginx
# upstream: a route with one backend (plain) against the same route split between two variants
# (split), and a route shadowed at sample 0 (shadow-off) against 0.05 (shadow-5pct) and 1.0
# (shadow-on); at most 4 shadow calls in flight, the rest dropped and counted. Rounds alternate over the four so drift hits each
# alike; each row is the median of its rounds; the shadow's own figures follow.
#   bash bench/rollout_overhead.sh
# Figures go to bench/results/rollout-overhead.txt (OUT=... to change). Needs nginx-light and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
OUT=${OUT:-bench/results/rollout-overhead.txt}
DUR=${DUR:-6s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-"1 32"} PORT=${PORT:-8097}
fixed_upstream_bench
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning TURNOUT_ADMIN_KEY=bench-admin-0123456789
.venv/bin/turnout serve --config bench/rules.rollouts.yaml --port "$PORT" >"/tmp/bench-rollouts.log" 2>&1 & pids="$pids $!"
for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$PORT/healthz" && break; sleep 0.5; done
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores; working tree on $(git rev-parse --short HEAD); auth on, cache bypassed, one worker"
  echo "# $ROUNDS rounds of $DUR per route and connection count, alternating; median of the rounds"
  local route sides=()
  for route in plain split shadow-off shadow-5pct shadow-on; do sides+=("$route:$PORT:$route:$SHARED/bench/chat.lua"); done
  KEY=$BENCH_API_KEY alternate_rounds "${sides[@]}"
  echo "# the shadows' own figures over the run (GET /admin/reports/variants):"
  curl -fs "http://127.0.0.1:$PORT/admin/reports/variants?since=1h" \
    -H "authorization: Bearer $TURNOUT_ADMIN_KEY" | .venv/bin/python -c '
import json, sys
for route, report in json.load(sys.stdin)["routes"].items():
    for shadow in report["shadows"]:
        print("#", route + ": shadow", shadow["backend"], "of", shadow["primary"] + ":", "pairs", shadow["pairs"],
              "agreement", shadow["agreement"], "dropped at the bound", shadow["shadow_dropped"],
              "errors", shadow["shadow_errors"])'
}
write_results "$OUT" run_all
