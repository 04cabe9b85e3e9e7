"""Run one experiment from a config, cached: train (or resume), score the best model on the STS suite, keep JSON.

Used by the reproduction and comparison scripts, so a grid that is interrupted resumes where it stopped:
a finished run is read from its JSON, a run killed mid-way resumes from its last checkpoint, a run
killed before its first checkpoint starts again clean.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Sequence
from typing import Any

from simcse.config import TrainConfig
from simcse.evaluation.tasks import TASKS
from simcse.io import StrPath, atomic_write_text, optional_path
from simcse.plots import read_metrics
from simcse.train.checkpoint import list_checkpoints

logger = logging.getLogger(__name__)

RESULT_FILE = "experiment.json"


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
    """Train ``cfg`` unless its result is cached, then score its best model with :func:`simcse.score_suite`.

    Args:
        cfg: The run's config; it trains into ``cfg.output_dir``.
        cache_dir: Folder of the cached result, ``<cache_dir>/experiment.json`` (default ``cfg.output_dir``).
        tasks: STS tasks scored on the best model (default: the paper's 7 test sets).
        precision: ``bf16`` encodes the suite under bfloat16 autocast.
        batch_size: Sentences per forward pass when scoring.
        max_seq_length: Truncation when scoring (None: the saved model's own setting).
        device: Torch device for scoring (default: cuda if available, else cpu).
        keep_checkpoints: Keep ``<output_dir>/checkpoints`` (by default removed once the result is cached).
        train_fn: The training function (default :func:`simcse.train.loop.train`).

    Returns:
        ``{"state": train's final state, "train_s", "eval_s", "metrics": the run's metrics.jsonl records,
        "suite": score_suite's result}``.
    """
    path = os.path.join(optional_path(cache_dir) or cfg.output_dir, RESULT_FILE)
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    import torch

    from simcse.encoder import Encoder
    from simcse.evaluation.scoring import score_suite
    from simcse.train import train

    out = cfg.output_dir
    resume = bool(list_checkpoints(out))
    if not resume:
        shutil.rmtree(out, ignore_errors=True)  # a run killed before its first checkpoint restarts clean
    start = time.perf_counter()
    state = (train_fn or train)(cfg, resume=resume)
    train_s = time.perf_counter() - start
    model = os.path.join(out, "model")
    if not os.path.isdir(model):
        raise RuntimeError(f"{out}: no model was saved (STS-B dev never finite?)")
    start = time.perf_counter()
    suite = score_suite(
        Encoder.from_pretrained(model), tasks, cfg.data_dir, batch_size=batch_size, precision=precision,  # type: ignore[arg-type]
        max_seq_length=max_seq_length, device=device or ("cuda" if torch.cuda.is_available() else "cpu"),
    )  # fmt: skip
    result = {
        "state": {k: v for k, v in state.items() if isinstance(v, (int, float, str, type(None)))},
        "train_s": train_s,
        "eval_s": time.perf_counter() - start,
        "metrics": read_metrics(os.path.join(out, "metrics.jsonl")),
        "suite": suite,
    }
    if not keep_checkpoints:
        shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)  # the result is final; free the disk
    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    return result
