"""What a finished run reports: its training curves, its model card, its best model's STS test scores.

:func:`log_summary` logs the outcome; :func:`finish_run` draws ``training_curves.png`` from the run's
``metrics.jsonl`` (into the run folder, and beside the best model) and rewrites the card. :func:`score_run`
loads the best model and scores it on the STS test suite, the one way ``--test-tasks``, ``--seeds`` and the
experiment grids do it; :func:`add_test_results` keeps that result (``sts_test.json``) and puts it in the card.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from typing import Any, Literal

from simcse.config import TrainConfig
from simcse.evaluation.dev import best_text
from simcse.evaluation.tasks import TASKS
from simcse.io import StrPath, atomic_write_text
from simcse.plots import plot_training_curves
from simcse.runs.card import write_model_card
from simcse.runs.checkpoints import TrainerState
from simcse.runs.folder import RunFolder, read_metrics

logger = logging.getLogger(__name__)


def finish_run(cfg: TrainConfig) -> dict[str, str]:
    """End-of-run report (main process): ``training_curves.png`` in the run and model folders (unless
    ``plot_curves`` is off), the card.

    A failure here is logged, not raised: the trained model is already safe on disk.
    """
    run, written = RunFolder(cfg.output_dir), {}
    try:
        if cfg.plot_curves:
            records = read_metrics(run.metrics)
            title = f"{cfg.model_name_or_path} - {cfg.mode} SimCSE ({cfg.objective}) - {run.root}"
            written["curves"] = plot_training_curves(records, run.curves, title, metric=cfg.metric_for_best)
        if os.path.isdir(run.model):
            if "curves" in written:
                tmp = os.path.join(run.model, f".{os.path.basename(run.model_curves)}.tmp-{os.getpid()}")
                shutil.copyfile(written["curves"], tmp)
                os.replace(tmp, run.model_curves)
            card = write_model_card(run.root, cfg)
            if card:
                written["card"] = card
    except Exception as err:  # e.g. a broken matplotlib install must not fail a finished run
        logger.warning("could not write the training curves or model card: %s: %s", type(err).__name__, err)
    return written


def log_summary(state: TrainerState, model: StrPath, metric: str = "stsb_dev") -> None:
    """Log the outcome, with a warning for anything skipped on the way (also in the returned state)."""
    logger.info("best %s at step %d; model in %s", best_text(metric, state.best_metric), state.best_step, model)
    if state.sources:  # several sources (datasets): how many batches each gave
        logger.info("batches per source: %s", ", ".join(f"{k} {v['batches']}" for k, v in state.sources.items()))
    skipped = {k: v for k, v in state.data.items() if v}
    if skipped or state.nonfinite_skipped:
        logger.warning(
            "skipped: %s; %d step(s) with a non-finite loss",
            ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items()) or "no input lines",
            state.nonfinite_skipped,
        )


def add_test_results(run_dir: StrPath, result: dict[str, Any]) -> str | None:
    """Record the best model's STS test results (``<run_dir>/sts_test.json``) and put them in its card."""
    atomic_write_text(RunFolder(run_dir).test_results, json.dumps(result, indent=2) + "\n")
    return write_model_card(run_dir)


def score_run(
    run_dir: StrPath,
    tasks: Sequence[StrPath] = TASKS,
    data_dir: StrPath | None = None,
    *,
    batch_size: int = 128,
    precision: Literal["fp32", "bf16"] = "fp32",
    max_seq_length: int | None = None,
    device: str | None = None,
    align_uniform: bool | None = None,
    record: bool = True,
) -> dict[str, Any]:
    """Score a run's best model (``<run_dir>/model``) on STS test tasks with :func:`simcse.score_suite`.

    Args:
        run_dir: The run folder.
        tasks: Task names or custom files (default: the paper's 7 test sets).
        data_dir: The data directory.
        batch_size: Sentences per forward pass.
        precision: ``bf16`` encodes under bfloat16 autocast.
        max_seq_length: Truncation when scoring (None: the saved model's own setting).
        device: Torch device (None: the first GPU when there is one, else the CPU).
        align_uniform: Also report alignment and uniformity on STS-B (None: when STS-B test is scored).
        record: Keep the result in ``sts_test.json`` and the model card (:func:`add_test_results`).

    Raises:
        RuntimeError: the run saved no model.
    """
    from simcse.encoder import Encoder
    from simcse.evaluation.scoring import score_suite

    run = RunFolder(run_dir)
    if not os.path.isdir(run.model):
        raise RuntimeError(f"{run.root}: no model was saved (STS-B dev never finite?)")
    if align_uniform is None:
        align_uniform = "STSBenchmark" in tasks  # measured on STS-B test: only when it is scored
    result = score_suite(
        Encoder.from_pretrained(run.model, device=device), tasks, data_dir, batch_size=batch_size,
        precision=precision, max_seq_length=max_seq_length, align_uniform=align_uniform,
    )  # fmt: skip
    if record:
        add_test_results(run.root, result)
    return result
