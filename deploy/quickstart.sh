#!/usr/bin/env bash
# One command: set up, then serve the gateway on http://127.0.0.1:8080 answering from
# SmolLM2 running in-process on llama.cpp. No GPU, no API key, no Redis.
# The dev key is sk-turnout-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
bash deploy/setup.sh
exec .venv/bin/turnout serve --config deploy/rules.local.yaml --host "${HOST:-127.0.0.1}" --port "${PORT:-8080}"
