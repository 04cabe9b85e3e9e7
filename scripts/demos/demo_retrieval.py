"""CPU demo: fine-tune all-MiniLM-L6-v2 and keep the checkpoint with the best retrieval nDCG@10.

1. Build the STS-B retrieval set (``scripts/bench/build_retrieval_dev.py``) into ``data/stsb-retrieval``
   (git-ignored) unless it is there: dev queries from STS-B dev pairs, test queries from STS-B test pairs.
2. Train ``training/configs/demo_retrieval_minilm.yaml``: NLI triplets, evaluated before the first step and
   every 10 steps on the **dev** queries; the best ``stsb-retrieval/ndcg@10`` is kept.
3. Score the start (the packaged model) and the saved model on the **test** queries, which chose nothing,
   and print a before/after table (nDCG@10, MRR@10, Recall@10) with the dev curve.

Usage (about 10 minutes on 2 CPU cores)::

    python scripts/demos/demo_retrieval.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

from simcse.config import load_config
from simcse.data_dir import resolve_data_dir
from simcse.encoder import Encoder
from simcse.evaluation.retrieval import RetrievalEvaluator
from simcse.evaluation.retrieval_data import load_beir
from simcse.runs.folder import RunFolder
from simcse.train import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "training", "configs", "demo_retrieval_minilm.yaml")
BUILD = os.path.join(REPO, "scripts", "bench", "build_retrieval_dev.py")
SHOWN = ("ndcg@10", "mrr@10", "recall@10")


def test_scores(model: str, folder: str) -> dict[str, float]:
    """nDCG@10, MRR@10, Recall@10 of ``model`` on the set's test queries."""
    evaluator = RetrievalEvaluator(load_beir(folder, "test"), name="test")
    scores = evaluator(Encoder.from_pretrained(model), 128)
    return {k: scores[f"test/{k}"] for k in SHOWN}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="shared data directory (else $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--set", default=os.path.join(REPO, "data", "stsb-retrieval"), help="the BEIR folder")
    parser.add_argument("--output-dir", default="runs/demo-retrieval-minilm")
    args = parser.parse_args()
    data_dir = resolve_data_dir(args.data_dir)
    if not os.path.isdir(args.set):
        subprocess.run([sys.executable, BUILD, "--data-dir", data_dir, "--output", args.set], check=True)
    cfg = load_config(CONFIG, {"data_dir": data_dir, "output_dir": args.output_dir})
    specs = [{**cfg.dev_evaluators[0], "path": args.set}]
    cfg = load_config(CONFIG, {"data_dir": data_dir, "output_dir": args.output_dir, "dev_evaluators": specs})
    metric = cfg.metric_for_best
    start = time.perf_counter()
    state = train(cfg)
    minutes = (time.perf_counter() - start) / 60
    curve = [(r["step"], r[metric]) for r in RunFolder(cfg.output_dir).read_metrics() if metric in r]
    before = test_scores(cfg.model_name_or_path, args.set)
    after = test_scores(RunFolder(cfg.output_dir).model, args.set)
    print(f"\ntrained {state['step']} steps in {minutes:.1f} min; dev {metric} by step: "
          + ", ".join(f"{s}: {v:.4f}" for s, v in curve) + f"; saved step {state['best_step']}\n")  # fmt: skip
    print("| test queries (306) | " + " | ".join(SHOWN) + " |\n|---|" + "---:|" * len(SHOWN))
    for name, scores in (("all-MiniLM-L6-v2 (start)", before), (f"best by dev (step {state['best_step']})", after)):
        print(f"| {name} | " + " | ".join(f"{scores[k]:.4f}" for k in SHOWN) + " |")


if __name__ == "__main__":
    main()
