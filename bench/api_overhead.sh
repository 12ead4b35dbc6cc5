#!/usr/bin/env bash
# The pinned path through each API, in one run, against the same fixed-answer nginx upstream: chat
# completions on a commit from before the request path was reshaped (A), and chat completions, the
# Responses API and Anthropic Messages on the working tree (B). Rounds alternate over the four so
# drift hits each alike; each row is the median of its rounds.
#   bash bench/api_overhead.sh [BEFORE]     (default: 0e4b2a8, the last commit before the reshape;
#   it still sends through httpx-aiohttp, dropped since: `.venv/bin/pip install httpx-aiohttp` first)
# Figures go to bench/results/api-overhead.txt (OUT=... to change). Needs nginx-light and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
BEFORE=${1:-0e4b2a8}
OUT=${OUT:-bench/results/api-overhead.txt}
DUR=${DUR:-6s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-"1 32"}
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; }
[ -x .venv/bin/turnout ] || bash deploy/setup.sh
trees=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done
            git worktree remove --force "$trees/a" 2>/dev/null || true; rm -rf "$trees"; }
trap cleanup EXIT
git worktree add -q --detach "$trees/a" "$BEFORE"
if ! curl -fs -o /dev/null -X POST http://127.0.0.1:18000/v1/chat/completions; then
  nginx -c "$SHARED/bench/upstream-nginx.conf" & pids="$pids $!"; sleep 1
fi
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
start() { # tree port: that tree's code first on the path, the shared venv for everything else
  (cd "$1" && PYTHONPATH="$1" exec "$OLDPWD/.venv/bin/python" -m gateway.cli serve --config bench/rules.overhead.yaml \
    --port "$2" >"/tmp/bench-api-$2.log" 2>&1) & pids="$pids $!"
  for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$2/healthz" && return; sleep 0.5; done
  echo "the gateway of $1 on $2 did not start:" >&2; tail -3 "/tmp/bench-api-$2.log" >&2; exit 1
}
start "$trees/a" 8095
start "$PWD" 8096
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores; pinned backend (model=upstream-model), auth on, cache bypassed, one worker each"
  echo "# chat-before = chat completions at $(git rev-parse --short "$BEFORE"); the rest: working tree on $(git rev-parse --short HEAD)"
  echo "# $ROUNDS rounds of $DUR per API and connection count, alternating; median of the rounds"
  KEY=$BENCH_API_KEY alternate_rounds "chat-before:8095:upstream-model:$SHARED/bench/chat.lua" \
    "chat:8096:upstream-model:$SHARED/bench/chat.lua" "responses:8096:upstream-model:bench/responses.lua" \
    "messages:8096:upstream-model:bench/messages.lua"
}
write_results "$OUT" run_all
