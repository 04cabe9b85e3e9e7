#!/usr/bin/env bash
# Unsupervised SimCSE with BERT-base on SimCSE's wiki1m (paper: STS avg 76.25), then the STS test table.
#   bash scripts/demos/run_unsup_example.sh [--key value ...]     e.g. --model_name_or_path roberta-base
# Needs the data (bash scripts/download_data.sh data) and, for a sensible run time, one GPU.
# Set SIMCSE_DATA_DIR if the data is not in ./data; extra arguments override the recipe's keys.
set -euo pipefail
cd "$(dirname "$0")/../.."
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-data}
# the paper's batch of 64 fits one GPU, so one process
accelerate launch --num_processes 1 training/train.py \
    --config training/configs/unsup_bert_base.yaml "$@" --test-tasks
