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
