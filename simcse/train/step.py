"""One training step, the one home of: views -> embeddings -> the objective's loss (+ MLM) -> update.

:class:`TrainStep` is what the loop calls once per step and what ``scripts/bench_train.py`` times: one
forward over every view of the batch (dropout makes the views differ), the objective's loss through
its registry entry (the gradient cache calls the same loss), one agreement across processes, then
the update or, when any process's loss is not finite, no update on any process.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from simcse.distributed import rank_and_world, sum_over_processes
from simcse.train.config import TrainConfig
from simcse.train.grad_cache import GradCache
from simcse.train.model import length_group_rows, mask_tokens
from simcse.train.objective import ObjectiveStep


def embed_views(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    """Every view of the batch in one step's forward -> ``(views, batch, dim)``.

    Unsupervised rows hold each sentence twice, so the two copies get different dropout masks. The
    rows go through the model as one batch, or, with :func:`simcse.train.model.length_group_rows`, as
    length-sorted groups of it inside the model's one forward call (the same embeddings with less
    padding; see :func:`simcse.train.model.grouped_forward`).
    ``same_dropout_mask`` (an ablation) forwards the first view once and uses it for both.
    """
    views = cfg.num_views
    group = length_group_rows(cfg, batch["input_ids"].device)
    if cfg.same_dropout_mask:
        first = {k: v[: v.shape[0] // views] for k, v in batch.items()}
        z = model(**first, group_rows=group)  # (batch, dim)
        return torch.stack([z] * views)  # (views, batch, dim)
    z = model(**batch, group_rows=group)  # (views * batch, dim)
    return z.view(views, -1, z.shape[-1])  # (views, batch, dim)


def compute_loss(
    model: Any, batch: dict[str, torch.Tensor], cfg: TrainConfig, tokenizer: Any, objective: ObjectiveStep | None = None
) -> torch.Tensor:
    """The full training loss of one batch (``cfg.objective``, plus the weighted MLM loss if enabled).

    ``objective`` carries the objective's state across steps (queue, collapse watch); None builds a
    fresh one, which suits stateless objectives (a queue would start empty).
    """
    z = embed_views(model, batch, cfg)  # (views, batch, dim)
    loss = (objective or ObjectiveStep(cfg, z.shape[-1])).loss(model, z, batch)
    if cfg.do_mlm:
        special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids, device=loss.device))
        masked, labels = mask_tokens(
            batch["input_ids"], special | (batch["attention_mask"] == 0), tokenizer.mask_token_id,
            len(tokenizer), cfg.mlm_probability,
        )  # fmt: skip
        mlm_batch = {**batch, "input_ids": masked, "labels": labels}
        inner = model.module if hasattr(model, "module") else model
        loss = loss + cfg.mlm_weight * inner.mlm_loss(**mlm_batch)
    return loss


def make_grad_cache(
    cfg: TrainConfig, accelerator: Any = None, objective: ObjectiveStep | None = None
) -> GradCache | None:
    """The gradient cache for ``cfg.grad_cache_chunk_size``, or None.

    Its loss is the objective's own (:meth:`ObjectiveStep.loss`, as in :func:`compute_loss`), so the
    step records the same collapse metrics with or without the cache.
    """
    if not cfg.grad_cache_chunk_size:
        return None
    step = objective if objective is not None else ObjectiveStep(cfg, 0)

    def loss_fn(z: torch.Tensor) -> torch.Tensor:
        return step.loss(None, z, {})  # the cache's objectives (infonce) read neither model nor batch

    return GradCache(cfg.grad_cache_chunk_size, loss_fn, cfg.num_views, accelerator)


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused: one kernel per tensor instead of a dozen ops (the same update; CPU and CUDA alike)."""
    trainable = [p for p in model.parameters() if p.requires_grad]  # not a momentum encoder's
    return torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True)


class StepOutcome(NamedTuple):
    """What every process agreed on after a step's forward."""

    loss: float  # the mean over processes (NaN when any is not finite)
    finite: bool  # every process's loss is finite (else no process updated)
    stop: bool  # some process was asked to stop
    failed: bool  # some process reported a failure (e.g. it could not write the metrics)


def agree_on_step(loss: torch.Tensor, stop: bool = False, failed: bool = False) -> StepOutcome:
    """The step's one sum over processes, and its one host sync: the decisions every process takes alike."""
    local = loss.detach().float().reshape(1)
    finite = torch.isfinite(local)
    flags = torch.tensor([float(stop), float(failed)], device=local.device)
    total = sum_over_processes(torch.cat([torch.where(finite, local, 0.0), (~finite).float(), flags])).tolist()
    nonfinite = total[1] > 0
    mean = math.nan if nonfinite else total[0] / rank_and_world()[1]
    return StepOutcome(mean, not nonfinite, total[2] > 0, total[3] > 0)


class TrainStep:
    """One optimizer step: forward over the views, the objective's loss, agreement, backward, clip, update.

    Args:
        accelerator: The run's ``accelerate.Accelerator`` (autocast, backward with loss scaling, clipping).
        model: The prepared (possibly DDP-wrapped) training model.
        optimizer: The prepared optimizer.
        cfg: The run's config.
        objective: The objective's loop-side state (queue, momentum encoder, collapse watch).

    Example:
        >>> step = TrainStep(accelerator, model, optimizer, cfg, objective)  # doctest: +SKIP
        >>> outcome = step(batch)  # updated on every process, or (not outcome.finite) on none  # doctest: +SKIP
    """

    def __init__(
        self, accelerator: Any, model: Any, optimizer: Any, cfg: TrainConfig, objective: ObjectiveStep
    ) -> None:
        self.accelerator, self.model, self.optimizer, self.cfg, self.objective = (
            accelerator, model, optimizer, cfg, objective,
        )  # fmt: skip
        self.tokenizer = accelerator.unwrap_model(model).encoder.tokenizer
        self.cache = make_grad_cache(cfg, accelerator, objective)  # None: one forward with graph over the batch

    def __call__(self, batch: dict[str, torch.Tensor], stop: bool = False, failed: bool = False) -> StepOutcome:
        """Run the step on this process's rows ``batch``; ``stop``/``failed``: this process's flags to share."""
        acc, cfg = self.accelerator, self.cfg
        with acc.autocast():
            if self.cache is not None:
                loss = self.cache.loss(self.model, batch)
            else:
                loss = compute_loss(self.model, batch, cfg, self.tokenizer, self.objective)
        # every process takes the same branch below: a process alone in DDP's all-reduce would wait for ever
        outcome = agree_on_step(loss, stop, failed)
        if outcome.finite and not outcome.failed:
            (self.cache.backward if self.cache is not None else acc.backward)(loss)
            if cfg.max_grad_norm > 0:
                acc.clip_grad_norm_(self.model.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.objective.after_step(self.model)  # EMA of the momentum encoder, enqueue this step's keys
        self.optimizer.zero_grad(set_to_none=True)
        return outcome
