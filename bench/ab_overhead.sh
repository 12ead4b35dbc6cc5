#!/usr/bin/env bash
# Pinned-path overhead of two commits, A/B in one run: the same nginx upstream, the same venv, each
# gateway (one worker) run from its own tree, rounds alternating A B A B so drift hits both alike.
#   bash bench/ab_overhead.sh BEFORE [AFTER]     (commits; AFTER defaults to the working tree)
# Figures go to bench/results/ab-overhead.txt (OUT=... to change). Needs nginx-light and wrk.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
BEFORE=${1:?usage: bash bench/ab_overhead.sh BEFORE [AFTER]} AFTER=${2:-}
OUT=${OUT:-bench/results/ab-overhead.txt}
DUR=${DUR:-6s} ROUNDS=${ROUNDS:-3} CONNS=${CONNS:-"1 32"}
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; }
[ -x .venv/bin/turnout ] || bash deploy/setup.sh
trees=$(mktemp -d)
pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; git worktree remove --force "$trees/a" 2>/dev/null || true
            [ -z "$AFTER" ] || git worktree remove --force "$trees/b" 2>/dev/null || true; rm -rf "$trees"; }
trap cleanup EXIT
git worktree add -q --detach "$trees/a" "$BEFORE"
if [ -n "$AFTER" ]; then git worktree add -q --detach "$trees/b" "$AFTER"; b_tree="$trees/b"; else b_tree=$PWD; fi
if ! curl -fs -o /dev/null -X POST http://127.0.0.1:18000/v1/chat/completions; then
  nginx -c "$SHARED/bench/upstream-nginx.conf" & pids="$pids $!"; sleep 1
fi
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
start() { # tree port: that tree's code first on the path, the shared venv for everything else
  (cd "$1" && PYTHONPATH="$1" exec "$OLDPWD/.venv/bin/python" -m gateway.cli serve --config bench/rules.overhead.yaml \
    --port "$2" >"/tmp/bench-ab-$2.log" 2>&1) & pids="$pids $!"
  for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$2/healthz" && return; sleep 0.5; done
  echo "the gateway of $1 on $2 did not start" >&2; exit 1
}
start "$trees/a" 8095
start "$b_tree" 8096
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores; pinned backend (model=upstream-model), auth on, cache bypassed"
  echo "# A = $(git rev-parse --short "$BEFORE")  B = ${AFTER:+$(git rev-parse --short "$AFTER")}${AFTER:-working tree on $(git rev-parse --short HEAD)}"
  echo "# $ROUNDS rounds of $DUR per side and connection count, alternating; median of the rounds"
  KEY=$BENCH_API_KEY alternate_rounds "A:8095:upstream-model:$SHARED/bench/chat.lua" "B:8096:upstream-model:$SHARED/bench/chat.lua"
}
write_results "$OUT" run_all
