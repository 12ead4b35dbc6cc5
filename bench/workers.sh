#!/usr/bin/env bash
# Scale-out on one machine, side by side in one run: Turnout with 1, 2 and 4 worker processes
# (`turnout serve --workers N`) against Portkey's gateway in as many Node processes (bench/portkey_cluster.mjs)
# and LiteLLM with the same --num_workers (LITELLM=0 leaves it out), on the cache-miss path
# (pinned model, no cache), the cache-hit path (the same request, Redis cache) and, for Turnout, the
# auto path (the classifier routes every request, distinct prompts). The upstream is the shared
# fixed-answer nginx; wrk runs on the same cores (2 threads, 32 connections).
# Figures go to bench/results/workers.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
OUT=${OUT:-bench/results/workers.txt}
DUR=${DUR:-6s}
WORKERS=${WORKERS:-"1 2 4"}
command -v nginx >/dev/null && command -v wrk >/dev/null && command -v redis-server >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk redis-server; }
[ -x .venv/bin/turnout ] || bash deploy/setup.sh
[ "${LITELLM:-1}" = 0 ] || [ -x /tmp/bench-litellm-venv/bin/litellm ] || { python3 -m venv /tmp/bench-litellm-venv && /tmp/bench-litellm-venv/bin/pip install -q 'litellm[proxy]'; }
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
curl -fs -o /dev/null -X POST http://127.0.0.1:18000/v1/chat/completions || { nginx -c "$SHARED/bench/upstream-nginx.conf" & pids="$pids $!"; sleep 1; }
redis-cli -p 16379 ping >/dev/null 2>&1 || { redis-server --port 16379 --save '' >/tmp/bench-redis.log 2>&1 & pids="$pids $!"; sleep 0.5; }
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
LKEY=sk-bench-master-key-0123456789abcdef
PORTKEY_SERVER=/tmp/bench-portkey/node_modules/@portkey-ai/gateway/build/start-server.js
[ -f "$PORTKEY_SERVER" ] || { mkdir -p /tmp/bench-portkey && (cd /tmp/bench-portkey && npm init -y >/dev/null && npm install -s @portkey-ai/gateway@1.15.2 >/dev/null 2>&1); }

load() { # name workers path url key model script
  local out; out=$(KEY="$5" MODEL="$6" wrk -t2 -c32 -d"$DUR" -s "$SHARED/bench/$7" --latency "$4" 2>&1)
  printf '%-8s workers=%s path=%-5s rps=%-9s p50=%-8s p99=%-8s %s\n' "$1" "$2" "$3" \
    "$(awk '/Requests\/sec/{print $2}' <<<"$out")" "$(awk '$1=="50%"{print $2}' <<<"$out")" \
    "$(awk '$1=="99%"{print $2}' <<<"$out")" "$(grep -Eo 'Non-2xx or 3xx responses: [0-9]+|Socket errors:.*' <<<"$out" | tr '\n' ' ' || true)"
}
wait_for() { for _ in $(seq 1 120); do curl -fs -o /dev/null "$1" && return; sleep 0.5; done; echo "not up: $1" >&2; exit 1; }
stop() { kill "$1" 2>/dev/null || true; wait "$1" 2>/dev/null || true; sleep 1; }

run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -m); wrk -t2 -c32 -d$DUR on the same cores; upstream: fixed-answer nginx"
  echo "# miss = pinned model, no cache; hit = the same request at temperature 0 from the Redis cache; auto = classifier on every request"
  echo "# portkey = its Node gateway, N processes sharing the port (Node's cluster module); it has no cache or router of its own here"
  for w in $WORKERS; do
    TURNOUT_REDIS_URL=redis://127.0.0.1:16379/2 .venv/bin/turnout serve --config bench/rules.overhead.yaml \
      --port 8093 --workers "$w" >/tmp/bench-turnout-workers.log 2>&1 & local t=$!
    wait_for http://127.0.0.1:8093/healthz; sleep 2  # every worker up
    load turnout "$w" miss http://127.0.0.1:8093 "$BENCH_API_KEY" upstream-model chat.lua
    load turnout "$w" hit http://127.0.0.1:8093 "$BENCH_API_KEY" upstream-model chat-fixed.lua
    load turnout "$w" auto http://127.0.0.1:8093 "$BENCH_API_KEY" auto chat.lua
    stop "$t"
    WORKERS=$w PORTKEY_SERVER=$PORTKEY_SERVER node bench/portkey_cluster.mjs --port=8788 >/tmp/bench-portkey-workers.log 2>&1 & local k=$!
    wait_for http://127.0.0.1:8788/; sleep 2
    load portkey "$w" miss http://127.0.0.1:8788 none upstream-model chat-portkey.lua
    stop "$k"
    [ "${LITELLM:-1}" = 0 ] && continue
    for config in litellm-config.yaml litellm-cache-config.yaml; do
      LITELLM_MASTER_KEY=$LKEY LITELLM_LOG=ERROR /tmp/bench-litellm-venv/bin/litellm --config "$SHARED/bench/$config" \
        --host 127.0.0.1 --port 14001 --num_workers "$w" >/tmp/bench-litellm-workers.log 2>&1 & local l=$!
      wait_for http://127.0.0.1:14001/health/liveliness; sleep 2
      if [ "$config" = litellm-config.yaml ]; then
        load litellm "$w" miss http://127.0.0.1:14001 "$LKEY" upstream-model chat.lua
      else
        load litellm "$w" hit http://127.0.0.1:14001 "$LKEY" upstream-model chat-fixed.lua
      fi
      stop "$l"
    done
  done
}
write_results "$OUT" run_all
