#!/usr/bin/env bash
# Sets up .venv on first use, then starts the app on the embedded defaults.
# Extra args go to app.py (e.g. --port 8080, --host 0.0.0.0).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export TOKENIZERS_PARALLELISM=false GRADIO_ANALYTICS_ENABLED=False
exec .venv/bin/python app.py "$@"
