"""Evaluation during training and the choice of the best model, on every process together.

The run's dev evaluators (:func:`simcse.evaluation.dev.dev_evaluators`: the paper's STS-B / SICK-R dev by
default, else the config's ``dev_evaluators``) are built on every process before any training, so bad data
or a ``metric_for_best`` that no evaluator reports stops the run at once. At each evaluation every process
scores the model, each encoding a share of the texts (:mod:`simcse.evaluation.sharding`), so all of them hold
the same metrics and take the same decision; the main process alone writes the best model, and every process
waits for that write (:func:`simcse.runs.folder.save_together`). A failure on one process (out of memory
while encoding) ends every process with its message, never with the others waiting in a collective.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from simcse.config import TrainConfig
from simcse.distributed import share_outcome, was_shared
from simcse.evaluation.base import Evaluator
from simcse.evaluation.dev import dev_evaluators, improves, metric_label
from simcse.evaluation.evaluators import run_evaluators
from simcse.evaluation.sharding import together
from simcse.runs.card import matryoshka_record, render_model_card
from simcse.runs.checkpoints import TrainerState
from simcse.runs.folder import BEST_FILE, CARD_FILE, RunFolder, save_together

logger = logging.getLogger(__name__)


def build_dev_evaluators(cfg: TrainConfig) -> list[Evaluator]:
    """The run's dev evaluators, built on every process (a failure on any stops all, in one line)."""
    return together(
        # with matryoshka_dims and no evaluators of its own, STS-B dev at each trained size too
        lambda: dev_evaluators(
            cfg.dev_evaluators, cfg.metric_for_best, cfg.data_dir, cfg.eval_batch_size, cfg.matryoshka_dims
        ),
        "reading the dev sets",
    )


def evaluate(
    accelerator: Any, model: Any, evaluators: list[Evaluator], cfg: TrainConfig, run: RunFolder,
    state: TrainerState, step: int,
) -> dict[str, Any]:  # fmt: skip
    """Score ``model`` on every process; save it when ``cfg.metric_for_best`` improves (ties keep the earlier).

    Returns every metric (``new_best: True`` when the model was saved), the same on every process.
    """
    encoder = accelerator.unwrap_model(model).encoder
    metrics: dict[str, Any] = {}
    error = None
    try:
        metrics = run_evaluators(evaluators, encoder, cfg.eval_batch_size, use_head=not cfg.mlp_only_train)
    except Exception as err:
        if was_shared(err):  # every process already raises it (it failed inside an encoding shared by all)
            raise
        error = err
    finally:
        encoder.train()
    share_outcome(error, f"evaluating step {step}")
    value = metrics[cfg.metric_for_best]
    save = None
    if improves(value, state.best_metric if state.best_step >= 0 else None, cfg.metric_for_best):
        state.best_metric, state.best_step = value, step
        metrics["new_best"] = True
        if accelerator.is_main_process:
            best = {BEST_FILE: json.dumps({"step": step, "metric": cfg.metric_for_best, "value": value})}
            best[CARD_FILE] = render_model_card(cfg, metrics, step)  # saved with the weights, atomically
            best.update(matryoshka_record(cfg, metrics))  # the trained sizes and their dev scores

            def save() -> None:
                encoder.save(run.model, include_head=not cfg.mlp_only_train, extra_files=best)
                logger.info(
                    "step %d: best %s so far (%.4g), saved to %s", step, metric_label(cfg.metric_for_best), value,
                    run.model,
                )

    # every process waits here for the save, and stops with it if it fails
    save_together(accelerator, save, "best model", run.model, cfg.output_dir)
    return metrics

