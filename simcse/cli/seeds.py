"""One recipe, several seeds: train each, score each best model on the STS test suite, report mean ± std.

SimCSE's results move by a point or more between seeds, so a single run says little. This runs
``<output_dir>/seed-<N>`` per seed and writes ``<output_dir>/seeds.md`` and ``seeds.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from simcse.config import TrainConfig
from simcse.evaluation.tasks import PAPER_COLUMNS, TASKS
from simcse.io import StrPath, atomic_write_text
from simcse.train.card import add_test_results

logger = logging.getLogger(__name__)

SUMMARY_FILES = ("seeds.md", "seeds.json")


def seed_config(cfg: TrainConfig, seed: int) -> TrainConfig:
    """The recipe for one seed, in its own run directory ``<output_dir>/seed-<seed>``."""
    return dataclasses.replace(cfg, seed=seed, output_dir=os.path.join(cfg.output_dir, f"seed-{seed}"))


def evaluate_run(
    run_dir: StrPath, tasks: Sequence[StrPath] = TASKS, data_dir: StrPath | None = None, batch_size: int = 128
) -> dict[str, Any]:
    """Score ``<run_dir>/model`` on STS test tasks; the result goes to ``sts_test.json`` and the model card."""
    import torch

    from simcse.encoder import Encoder
    from simcse.evaluation.scoring import score_suite

    device = "cuda" if torch.cuda.is_available() else "cpu"
    encoder = Encoder.from_pretrained(os.path.join(run_dir, "model"))
    result = score_suite(
        encoder, tasks, data_dir, batch_size=batch_size, device=device,
        align_uniform="STSBenchmark" in tasks,  # measured on STS-B test: only when it is scored
    )  # fmt: skip
    add_test_results(run_dir, result)
    return result


def summarize(results: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """Per task (and the average): every seed's score, mean and sample standard deviation (ddof=1)."""
    tasks = list(next(iter(results.values()))["tasks"])
    columns: dict[str, list[float]] = {t: [r["tasks"][t]["score"] for r in results.values()] for t in tasks}
    columns["avg"] = [r["avg"] for r in results.values()]
    n = len(results)
    return {
        "seeds": list(results),
        "scores": columns,
        "mean": {k: float(np.mean(v)) for k, v in columns.items()},
        "std": {k: float(np.std(v, ddof=1)) if n > 1 else 0.0 for k, v in columns.items()},
        "protocol": "STS test suite, SentEval protocol: Spearman x 100 of cosine; std over seeds with ddof=1",
    }


def format_summary(summary: dict[str, Any]) -> str:
    """A markdown table: one row per seed, then mean ± std."""
    keys = list(summary["scores"])
    heads = ["seed", *(PAPER_COLUMNS.get(k, k) for k in keys if k != "avg"), "Avg."]
    lines = ["| " + " | ".join(heads) + " |", "|" + "---:|" * len(heads)]
    for i, seed in enumerate(summary["seeds"]):
        lines.append("| " + " | ".join([str(seed), *(f"{summary['scores'][k][i]:.2f}" for k in keys)]) + " |")
    cells = [f"{summary['mean'][k]:.2f} ± {summary['std'][k]:.2f}" for k in keys]
    lines.append("| " + " | ".join([f"mean ± std ({len(summary['seeds'])})", *cells]) + " |")
    return "\n".join(lines) + "\n"


def run_seeds(
    cfg: TrainConfig,
    seeds: Sequence[int],
    *,
    resume: bool = False,
    tasks: Sequence[str] = TASKS,
    train_fn: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any] | None:
    """Train ``cfg`` once per seed, then score every best model (main process only) and write the summary.

    Every process trains every seed first, so processes never wait on another's evaluation.

    Returns:
        The summary (see :func:`summarize`), or None on processes other than the main one.
    """
    from accelerate import PartialState

    from simcse.train import train

    if len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds repeats a seed: {list(seeds)}")
    train_fn = train_fn or train
    runs = {seed: seed_config(cfg, seed) for seed in seeds}
    for seed, run in runs.items():
        logger.info("seed %d: training into %s", seed, run.output_dir)
        train_fn(run, resume=resume)
    if not PartialState().is_main_process:
        return None
    results = {}
    for seed, run in runs.items():
        logger.info("seed %d: STS test suite", seed)
        results[seed] = evaluate_run(run.output_dir, tasks, cfg.data_dir, cfg.eval_batch_size)
    summary = summarize(results)
    markdown, js = (os.path.join(cfg.output_dir, name) for name in SUMMARY_FILES)
    atomic_write_text(markdown, format_summary(summary))
    atomic_write_text(js, json.dumps({**summary, "runs": {s: r.output_dir for s, r in runs.items()}}, indent=2) + "\n")
    summary["files"] = [markdown, js]
    return summary
