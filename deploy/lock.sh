#!/usr/bin/env bash
# Regenerates deploy/constraints.txt, the exact versions that CI, deploy/setup.sh (so the quick
# start) and the image install. It installs every extra into a clean virtual environment with the
# newest versions pyproject.toml allows, and writes `pip freeze` of it. Run it, then the suite
# (bash .ci/run), and commit both: an upgrade is a reviewed change, never a surprise.
#   bash deploy/lock.sh
# bench/upgrade_check.sh runs the suite on the newest allowed versions without writing the lock.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/newest_venv.sh
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
newest_venv "$venv"
pip="$venv/bin/python -m pip -q --disable-pip-version-check --no-input"
frozen=$("$venv/bin/python" -m pip freeze --disable-pip-version-check --exclude turnout)
# Debian's python3 (which tests/deploy/test_image.py builds the image's venv with) may need packages
# a newer interpreter does not (redis wants async-timeout before 3.11.3): add what its serving set
# adds, pinned as resolved there, without touching the versions above.
system=/usr/bin/python3
if [ -x "$system" ] && [ "$("$system" -V)" != "$("$venv/bin/python" -V)" ]; then
  "$system" -m venv "$venv/system"
  "$venv/system/bin/python" -m pip -q --disable-pip-version-check --no-input install -c <(echo "$frozen") ".[local]"
  system_frozen=$("$venv/system/bin/python" -m pip freeze --disable-pip-version-check --exclude turnout)
  frozen=$("$venv/bin/python" - "$frozen" "$system_frozen" <<'PY'
import re, sys
def pins(text): return {re.sub(r"[-_.]+", "-", line.split("==")[0]).lower(): line for line in text.split() if "==" in line}
merged = {**pins(sys.argv[2]), **pins(sys.argv[1])}  # the first interpreter's versions win
print("\n".join(merged[name] for name in sorted(merged)))
PY
)
fi
# A local version label (torch's +cpu) names a build, not a release: ==2.13.0 still matches it.
frozen=$(sed -E 's/^([A-Za-z0-9_.-]+==[^+]+)\+[A-Za-z0-9.]+$/\1/' <<<"$frozen")
# The image's gpu variant swaps onnxruntime for onnxruntime-gpu (its own releases; CUDA-only, so
# resolved here without installing it: pip reads the wheel's metadata only).
onnxruntime_gpu=$($pip install --dry-run --no-deps --ignore-installed --report - onnxruntime-gpu \
  | "$venv/bin/python" -c 'import json, sys; print(json.load(sys.stdin)["install"][0]["metadata"]["version"])')
{
  echo "# Exact versions for CI, deploy/setup.sh and the image; made by deploy/lock.sh (pip freeze of a"
  echo "# clean virtual environment with every extra), $("$venv/bin/python" -V), $(date -u +%Y-%m-%d)."
  echo "# Install with: pip install -c deploy/constraints.txt '.[extras]'. Refresh: bash deploy/lock.sh"
  echo "$frozen"
  echo "onnxruntime-gpu==$onnxruntime_gpu"
} >deploy/constraints.txt
echo "wrote deploy/constraints.txt ($(grep -c '==' deploy/constraints.txt) pins)"
