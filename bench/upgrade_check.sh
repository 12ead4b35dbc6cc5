#!/usr/bin/env bash
# The drift check: installs the newest versions pyproject.toml allows into a throwaway virtual
# environment (ignoring deploy/constraints.txt), lists what differs from the lock, and runs the
# linters and the whole suite on them. Not part of .ci/run: main stays green on the lock while
# this says what an upgrade would break. When it passes, `bash deploy/lock.sh` takes the upgrade.
#   bash bench/upgrade_check.sh [pytest arguments]
# Writes bench/results/upgrade-check.txt (the version differences and the suite's last lines),
# pass or fail, and exits non-zero when anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/newest_venv.sh
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
newest_venv "$venv"

check() {
  echo "# bench/upgrade_check.sh, $(date -u +%Y-%m-%dT%H:%MZ): newest allowed versions against deploy/constraints.txt"
  echo "## versions that differ from the lock (locked -> newest)"
  "$venv/bin/python" -m pip freeze --disable-pip-version-check --exclude turnout \
    | sed -E 's/\+[A-Za-z0-9.]+$//' | sort >"$venv/newest.txt"
  grep '==' deploy/constraints.txt | sort >"$venv/locked.txt"
  join -t= -j1 <(sed 's/==/=/' "$venv/locked.txt" | sort -t= -k1,1) <(sed 's/==/=/' "$venv/newest.txt" | sort -t= -k1,1) \
    | awk -F= '$2 != $3 {print "  " $1 ": " $2 " -> " $3}'
  echo "## suite"
  local status=0
  "$venv/bin/ruff" check . || status=1
  "$venv/bin/mypy" || status=1
  "$venv/bin/python" -m pytest -q -p no:cacheprovider "$@" 2>&1 | tail -n 40 || status=1
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  return "$status"
}
# A failing check is the finding: the report is written either way, and the exit status says which.
status=0
check "$@" >"$venv/report.txt" || status=$?
cat "$venv/report.txt"
cp "$venv/report.txt" bench/results/upgrade-check.txt
echo "upgrade check: $([ "$status" = 0 ] && echo passed || echo FAILED) (bench/results/upgrade-check.txt)"
exit "$status"
