# Sourced by the bench scripts (from the repository root).
# find_shared: sets SHARED to the shared bench folder, wherever the script is run from, or stops
#   at once saying where to get it. write_results FILE COMMAND...: the command's output (echoed to
#   stderr) replaces FILE only when the command succeeded and printed something, so a run that
#   fails part-way never overwrites committed figures.

find_shared() {
  local dir candidates=("$PWD/../shared" "$PWD/../../shared" "$HOME/shared")
  [ -n "${SHARED:-}" ] && candidates=("$SHARED")  # asked for: that one or none
  for dir in "${candidates[@]}"; do
    if [ -n "$dir" ] && [ -f "$dir/bench/peer-overhead.sh" ]; then
      SHARED=$(cd "$dir" && pwd)
      return
    fi
  done
  echo "bench: shared/bench/peer-overhead.sh not found (looked in \$SHARED, ../shared, ../../shared, ~/shared)." >&2
  echo "bench: it ships in the team's shared folder beside the repository; set SHARED=/path/to/shared." >&2
  exit 2
}

write_results() {
  # Names of its own: bash scoping is dynamic, and the command runs inside this function.
  local _results_file=$1 _results_partial _results_status=0
  shift
  _results_partial=$(mktemp "$_results_file.partial.XXXXXX")
  "$@" >"$_results_partial" || _results_status=$?
  cat "$_results_partial" >&2
  if [ "$_results_status" -eq 0 ] && [ -s "$_results_partial" ]; then
    mv "$_results_partial" "$_results_file"
  else
    rm -f "$_results_partial"
    echo "bench: the run failed (exit $_results_status) or printed nothing; $_results_file left as it was" >&2
    return 1
  fi
}

# alternate_rounds SIDE...: for each connection count in $CONNS, $ROUNDS rounds of $DUR of wrk over
#   the sides, alternating so that drift hits each alike, then one row per side: the median round's
#   requests/s, p50 and p99. A side is LABEL:PORT:MODEL:SCRIPT (MODEL and $KEY go to the wrk script).
#   A side that answers anything but 2xx stops the run.
alternate_rounds() {
  local rounds_dir c side label port model script out status=0
  rounds_dir=$(mktemp -d)
  for c in $CONNS; do
    for side in "$@"; do : >"$rounds_dir/${side%%:*}-$c"; done
    for _ in $(seq 1 "$ROUNDS"); do
      for side in "$@"; do
        IFS=: read -r label port model script <<<"$side"
        out=$(KEY=$KEY MODEL=$model wrk -t1 -c"$c" -d"$DUR" -s "$script" --latency "http://127.0.0.1:$port" 2>&1)
        if grep -q 'Non-2xx' <<<"$out"; then echo "$label answered non-2xx" >&2; status=1; break 3; fi
        echo "$(awk '/Requests\/sec/{print $2}' <<<"$out") $(awk '$1=="50%"{print $2}' <<<"$out") $(awk '$1=="99%"{print $2}' <<<"$out")" >>"$rounds_dir/$label-$c"
      done
    done
    for side in "$@"; do
      label=${side%%:*}
      sort -n "$rounds_dir/$label-$c" | awk -v s="$label" -v c="$c" -v n="$ROUNDS" '{r[NR]=$1; p50[NR]=$2; p99[NR]=$3; all=all " " $1}
        END { m=int((n+1)/2); printf "%-12s c=%-3s rps=%-9s (rounds:%s)  p50=%-9s p99=%s\n", s, c, r[m], all, p50[m], p99[m] }'
    done
  done
  rm -rf "$rounds_dir"
  return $status
}

# fixed_upstream_bench [SETUP_PROFILE]: what the wrk benches in front of the fixed-answer nginx
#   upstream share: nginx and wrk installed, .venv set up (deploy/setup.sh SETUP_PROFILE), $work a
#   temporary folder and $pids the processes to stop (both cleaned up on exit), and the upstream
#   answering on 127.0.0.1:18000 (started unless one already does).
fixed_upstream_bench() {
  command -v nginx >/dev/null && command -v wrk >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light wrk; }
  [ -x .venv/bin/turnout ] || bash deploy/setup.sh ${1:-}
  work=$(mktemp -d)
  pids=""
  trap 'for p in $pids; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
  if ! curl -fs -o /dev/null -X POST http://127.0.0.1:18000/v1/chat/completions; then
    nginx -c "$SHARED/bench/upstream-nginx.conf" & pids="$pids $!"; sleep 1
  fi
}
