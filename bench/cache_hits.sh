#!/usr/bin/env bash
# Cache-hit path, side by side in one run: the same request every time (shared/bench/chat-fixed.lua)
# through LiteLLM with its Redis cache and through Turnout with its Redis cache, one worker each,
# Redis on loopback (127.0.0.1:16379). Figures go to bench/results/cache-hits.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
OUT=${OUT:-bench/results/cache-hits.txt}
export DUR=${DUR:-8s} CONNS=${CONNS:-"1 32"} SCRIPT=chat-fixed.lua LITELLM_CONFIG=litellm-cache-config.yaml
command -v nginx >/dev/null && command -v wrk >/dev/null && command -v redis-server >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk redis-server; }
[ -x .venv/bin/turnout ] || bash deploy/setup.sh
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
redis-cli -p 16379 ping >/dev/null 2>&1 || { redis-server --port 16379 --save '' >/tmp/bench-redis.log 2>&1 & pids="$pids $!"; sleep 0.5; }
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
TURNOUT_REDIS_URL=redis://127.0.0.1:16379/1 .venv/bin/turnout serve --config bench/rules.overhead.yaml --port 8092 \
  >/tmp/bench-turnout-cache.log 2>&1 & pids="$pids $!"
for _ in $(seq 1 60); do curl -fs -o /dev/null http://127.0.0.1:8092/healthz && break; sleep 0.5; done
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores; path: cache hit (same request, temperature 0), Redis on loopback, auth on"
  GATEWAY_URL=http://127.0.0.1:8092 GATEWAY_KEY=$BENCH_API_KEY GATEWAY_MODEL=upstream-model \
    bash "$SHARED/bench/peer-overhead.sh"
  echo "# x-turnout-cache of the last request: $(curl -s -o /dev/null -D - http://127.0.0.1:8092/v1/chat/completions \
    -H "authorization: Bearer $BENCH_API_KEY" -H 'content-type: application/json' \
    -d '{"model":"upstream-model","temperature":0,"messages":[{"role":"user","content":"Summarize: the quick brown fox jumps over the lazy dog."}]}' \
    | tr -d '\r' | awk -F': ' 'tolower($1)=="x-turnout-cache"{print $2}')"
}
write_results "$OUT" run_all
