#!/usr/bin/env bash
# Set up ./.venv if needed, then run the whole test suite offline.
# Data: $SIMCSE_DATA_DIR, else ../shared/data (the folder holding senteval/, corpus/, nli/).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-../shared/data}
exec .venv/bin/python -m pytest -q "$@"
