#!/usr/bin/env bash
# Supervised SimCSE with BERT-base on SimCSE's NLI triplets (paper: STS avg 81.57), then the STS test table.
#   NUM_GPUS=4 bash scripts/demos/run_sup_example.sh [--key value ...]
# The paper's global batch is 512: 4 GPUs x 128 (the recipe's batch_size is per process). With fewer
# GPUs, keep the global batch with the gradient cache, e.g. NUM_GPUS=1 and
#   --batch_size 512 --grad_cache_chunk_size 128
# (gradient accumulation would not add negatives). Needs the data: bash scripts/download_data.sh data
set -euo pipefail
cd "$(dirname "$0")/../.."
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-data}
NUM_GPUS=${NUM_GPUS:-4}
if [ "$NUM_GPUS" -gt 1 ]; then
    launch=(accelerate launch --multi_gpu --num_processes "$NUM_GPUS")
else
    launch=(accelerate launch --num_processes 1)
fi
"${launch[@]}" training/train.py --config training/configs/sup_bert_base.yaml "$@" --test-tasks
