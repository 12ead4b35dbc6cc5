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
  local out=$1 partial status=0
  shift
  partial=$(mktemp "$out.partial.XXXXXX")
  "$@" >"$partial" || status=$?
  cat "$partial" >&2
  if [ "$status" -eq 0 ] && [ -s "$partial" ]; then
    mv "$partial" "$out"
  else
    rm -f "$partial"
    echo "bench: the run failed (exit $status) or printed nothing; $out left as it was" >&2
    return 1
  fi
}
