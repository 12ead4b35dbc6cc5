# Sourced by the bench scripts (from the repository root).
# find_shared: sets SHARED to the shared bench folder, wherever the script is run from, or stops
#   at once saying where to get it. write_results FILE: stdin to FILE only once it is all there,
#   so a run that fails never overwrites committed figures.

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
  local partial
  partial=$(mktemp "$1.partial.XXXXXX")
  if cat >"$partial" && [ -s "$partial" ]; then
    mv "$partial" "$1"
  else
    rm -f "$partial"
    echo "bench: no figures; $1 left as it was" >&2
    return 1
  fi
}
