#!/usr/bin/env bash
# Gateway overhead side by side in one run, one process each:
#   direct nginx upstream  vs  LiteLLM proxy  vs  Portkey's gateway  vs  a bare Python proxy (bench/bare_proxy.py:
#   what Python does here)  vs  Turnout pinned  vs  Turnout auto  vs  the classifier alone (one thread).
# Then the targets' ratios. Figures go to bench/results/overhead.txt.
# ALT_MODEL=DIR (a classifier model directory) adds gateway-auto-alt rows: model auto routed by it.
# Needs root for apt (nginx-light, wrk) the first time; LiteLLM goes to /tmp/bench-litellm-venv.
set -euo pipefail
cd "$(dirname "$0")/.."
source bench/common.sh
find_shared
OUT=${OUT:-bench/results/overhead.txt}
export DUR=${DUR:-8s} CONNS=${CONNS:-"1 32"}
command -v nginx >/dev/null && command -v wrk >/dev/null || {
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; }
[ -x .venv/bin/turnout ] || bash deploy/setup.sh
pids=""
measured=$(mktemp)
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -f "$measured"; }
trap cleanup EXIT
# The upstream is started here, not by peer-overhead.sh, whose exit would stop it before our own rows.
if ! curl -fs -o /dev/null -X POST http://127.0.0.1:18000/v1/chat/completions; then
  nginx -c "$SHARED/bench/upstream-nginx.conf" & pids="$pids $!"; sleep 1
fi
export BENCH_API_KEY=sk-bench-turnout-0123456789 TURNOUT_LOG_LEVEL=warning
start() { # port transport [rules]
  TURNOUT_UPSTREAM_TRANSPORT=$2 .venv/bin/turnout serve --config "${3:-bench/rules.overhead.yaml}" --port "$1" \
    >"/tmp/bench-turnout-$1-$2.log" 2>&1 & pids="$pids $!"
  for _ in $(seq 1 60); do curl -fs -o /dev/null "http://127.0.0.1:$1/healthz" && return; sleep 0.5; done
  echo "turnout on $1 did not start" >&2; exit 1
}
start 8090 aiohttp
.venv/bin/python -m bench.bare_proxy 8093 >/tmp/bench-bare.log 2>&1 & pids="$pids $!"
if [ -n "${ALT_MODEL:-}" ]; then
  alt_rules=$(mktemp --suffix=.yaml)
  { cat bench/rules.overhead.yaml; printf 'router: {kind: classifier, model: %s}\n' "$(realpath "$ALT_MODEL")"; } >"$alt_rules"
  start 8092 aiohttp "$alt_rules"
fi
run_all() {
  echo "# $(date -u +%FT%TZ) $(nproc) cores, $(uname -m); path: pinned backend (model=upstream-model), auth on, cache bypassed (no temperature 0 or seed)"
  echo "# gateway = Turnout pinned; bare = bench/bare_proxy.py (raw ASGI, same uvicorn and aiohttp, nothing else)"
  echo "# gateway-auto = model auto: the shipped classifier routes every request (distinct prompts, no cache)"
  [ -z "${ALT_MODEL:-}" ] || echo "# gateway-auto-alt = model auto routed by $ALT_MODEL ($(tr -d '\n ' <"$ALT_MODEL/manifest.json" | grep -o '"layers":[0-9]*' || echo 'layers unknown'))"
  GATEWAY_URL=http://127.0.0.1:8090 GATEWAY_KEY=$BENCH_API_KEY GATEWAY_MODEL=upstream-model \
    bash "$SHARED/bench/peer-overhead.sh"
  gateway_run() { # name port model conns
    out=$(KEY=$BENCH_API_KEY MODEL=$3 wrk -t1 -c"$4" -d"$DUR" -s "$SHARED/bench/chat.lua" --latency "http://127.0.0.1:$2" 2>&1)
    printf '%-14s c=%-3s rps=%-10s p50=%-9s p99=%-9s %s\n' "$1" "$4" "$(awk '/Requests\/sec/{print $2}' <<<"$out")" \
      "$(awk '$1=="50%"{print $2}' <<<"$out")" "$(awk '$1=="99%"{print $2}' <<<"$out")" \
      "$(grep -Eo 'Non-2xx or 3xx responses: [0-9]+|Socket errors:.*' <<<"$out" | tr '\n' ' ' || true)"
  }
  for c in $CONNS; do
    gateway_run bare 8093 upstream-model "$c"
    gateway_run gateway-auto 8090 auto "$c"
    [ -z "${ALT_MODEL:-}" ] || gateway_run gateway-auto-alt 8092 auto "$c"
  done
  .venv/bin/python -m bench.classifier_alone "${DUR%s}"
}
ratios() { # the issue's targets, from the rows above
  awk 'function ms(v) { sub("p50=", "", v); return v ~ /us$/ ? v / 1000 : v ~ /ms$/ ? v + 0 : v * 1000 }
    { split($2, c, "="); split($3, r, "="); rps[$1 "@" c[2]] = r[2]; p50[$1 "@" c[2]] = ms($4) }
    END {
      printf "# pinned c=1 p50 over direct: %.3f ms (bare: %.3f ms)\n", p50["gateway@1"] - p50["direct@1"], p50["bare@1"] - p50["direct@1"]
      printf "# pinned / bare:    c=1 %.0f %%   c=32 %.0f %%\n", 100 * rps["gateway@1"] / rps["bare@1"], 100 * rps["gateway@32"] / rps["bare@32"]
      if (rps["portkey@32"]) printf "# pinned / portkey:  c=1 %.2fx  c=32 %.2fx\n", rps["gateway@1"] / rps["portkey@1"], rps["gateway@32"] / rps["portkey@32"]
      printf "# pinned c=32 / c=1: %.2f\n", rps["gateway@32"] / rps["gateway@1"]
      bound = 1 / (1 / rps["gateway@32"] + 1 / rps["classifier@1"])
      printf "# auto c=32 / (pinned c=32 plus one decision, serially: %.0f req/s): %.0f %%\n", bound, 100 * rps["gateway-auto@32"] / bound
    }' "$1"
}
run_all_and_ratios() { run_all | tee "$measured"; ratios "$measured"; }
write_results "$OUT" run_all_and_ratios
