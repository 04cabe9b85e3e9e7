"""Experiments over runs: one recipe trained and scored, cached (:func:`run_experiment`), or once per seed
(:func:`run_seeds`, ``simcse train --seeds``) with mean ± std over the seeds.

Both train with :func:`simcse.train.train` and score the best model with :func:`simcse.runs.report.score_run`.
:func:`run_experiment` serves the reproduction and comparison scripts, so a grid that is interrupted
resumes where it stopped: a finished run is read from its JSON, a run killed mid-way resumes from its
last checkpoint, a run killed before its first checkpoint starts again clean.

SimCSE's results move by a point or more between seeds, so a single run says little: :func:`run_seeds`
runs ``<output_dir>/seed-<N>`` per seed and writes ``<output_dir>/seeds.md`` and ``seeds.json``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from simcse.config import TrainConfig
from simcse.evaluation.tasks import PAPER_COLUMNS, TASKS
from simcse.io import StrPath, atomic_write_text, optional_path
from simcse.runs.checkpoints import list_checkpoints
from simcse.runs.folder import RESULT_FILE, RunFolder, read_metrics
from simcse.runs.report import score_run

__all__ = ["RESULT_FILE", "format_summary", "run_experiment", "run_seeds", "seed_config", "summarize"]

logger = logging.getLogger(__name__)


def run_experiment(
    cfg: TrainConfig,
    cache_dir: StrPath | None = None,
    *,
    tasks: Sequence[str] = TASKS,
    precision: str = "fp32",
    batch_size: int = 128,
    max_seq_length: int | None = None,
    device: str | None = None,
    keep_checkpoints: bool = False,
    train_fn: Callable[..., dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` unless its result is cached, then score its best model with :func:`simcse.runs.report.score_run`.

    Args:
        cfg: The run's config; it trains into ``cfg.output_dir``.
        cache_dir: Folder of the cached result, ``<cache_dir>/experiment.json`` (default ``cfg.output_dir``).
        tasks: STS tasks scored on the best model (default: the paper's 7 test sets).
        precision: ``bf16`` encodes the suite under bfloat16 autocast.
        batch_size: Sentences per forward pass when scoring.
        max_seq_length: Truncation when scoring (None: the saved model's own setting).
        device: Torch device for scoring (default: the first GPU when there is one, else the CPU).
        keep_checkpoints: Keep ``<output_dir>/checkpoints`` (by default removed once the result is cached).
        train_fn: The training function (default :func:`simcse.train.train`).

    Returns:
        ``{"state": train's final state, "train_s", "eval_s", "metrics": the run's metrics.jsonl records,
        "suite": score_suite's result}``.
    """
    path = RunFolder(optional_path(cache_dir) or cfg.output_dir).experiment
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    from simcse.train import train

    run = RunFolder(cfg.output_dir)
    resume = bool(list_checkpoints(run.root))
    if not resume:
        shutil.rmtree(run.root, ignore_errors=True)  # a run killed before its first checkpoint restarts clean
    start = time.perf_counter()
    state = (train_fn or train)(cfg, resume=resume)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    suite = score_run(
        run.root, tasks, cfg.data_dir, batch_size=batch_size, precision=precision,  # type: ignore[arg-type]
        max_seq_length=max_seq_length, device=device, align_uniform=True, record=False,
    )  # fmt: skip
    result = {
        "state": {k: v for k, v in state.items() if isinstance(v, (int, float, str, type(None)))},
        "train_s": train_s,
        "eval_s": time.perf_counter() - start,
        "metrics": read_metrics(run.metrics),
        "suite": suite,
    }
    if not keep_checkpoints:
        shutil.rmtree(run.checkpoints, ignore_errors=True)  # the result is final; free the disk
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return result


def seed_config(cfg: TrainConfig, seed: int) -> TrainConfig:
    """The recipe for one seed, in its own run directory ``<output_dir>/seed-<seed>``."""
    return dataclasses.replace(cfg, seed=seed, output_dir=RunFolder(cfg.output_dir).seed_run(seed))


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
        results[seed] = score_run(run.output_dir, tasks, cfg.data_dir, batch_size=cfg.eval_batch_size)
    summary = summarize(results)
    markdown, js = RunFolder(cfg.output_dir).summaries
    atomic_write_text(markdown, format_summary(summary))
    atomic_write_text(js, json.dumps({**summary, "runs": {s: r.output_dir for s, r in runs.items()}}, indent=2) + "\n")
    summary["files"] = [markdown, js]
    return summary
