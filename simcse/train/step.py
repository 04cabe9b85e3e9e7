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


def embed_views(
    model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig, extras: dict | None = None, **extra: Any
) -> torch.Tensor:
    """Every view of the batch in one step's forward -> ``(views, batch, dim)``.

    Unsupervised rows hold each sentence twice, so the two copies get different dropout masks. The
    rows go through the model as one batch, or, with :func:`simcse.train.model.length_group_rows`, as
    length-sorted groups of it inside the model's one forward call (the same embeddings with less
    padding; see :func:`simcse.train.model.grouped_forward`).
    ``same_dropout_mask`` (an ablation) forwards the first view once and uses it for both.
    ``extra`` (``mlm=...``, ``predict=True``) asks the same forward call for more outputs, written into
    ``extras`` (predictions arranged like the views).
    """
    views = cfg.num_views
    group = length_group_rows(cfg, batch["input_ids"].device)
    rows = batch if not cfg.same_dropout_mask else {k: v[: v.shape[0] // views] for k, v in batch.items()}
    out = model(**rows, group_rows=group, **extra)
    z, more = out if isinstance(out, tuple) else (out, {})  # (rows, dim), {name: ...}
    if extras is not None:
        extras.update(more)
    if cfg.same_dropout_mask:
        if "predictions" in more:
            extras["predictions"] = torch.stack([more["predictions"]] * views)  # type: ignore[index]
        return torch.stack([z] * views)  # (views, batch, dim)
    if "predictions" in more and extras is not None:
        extras["predictions"] = more["predictions"].view(views, -1, z.shape[-1])  # (views, batch, dim)
    return z.view(views, -1, z.shape[-1])  # (views, batch, dim)


def compute_loss(
    model: Any, batch: dict[str, torch.Tensor], cfg: TrainConfig, tokenizer: Any, objective: ObjectiveStep | None = None
) -> torch.Tensor:
    """The full training loss of one batch (``cfg.objective``, plus the weighted MLM loss if enabled).

    ``objective`` carries the objective's state across steps (queue, collapse watch); None builds a
    fresh one, which suits stateless objectives (a queue would start empty). The MLM loss and the
    objective's predictor run inside the model's forward call, so DDP sees every module the loss uses.
    """
    extra: dict[str, Any] = {}
    if cfg.do_mlm:
        device = batch["input_ids"].device
        special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids, device=device))
        masked, labels = mask_tokens(
            batch["input_ids"], special | (batch["attention_mask"] == 0), tokenizer.mask_token_id,
            len(tokenizer), cfg.mlm_probability,
        )  # fmt: skip
        extra["mlm"] = {**batch, "input_ids": masked, "labels": labels}
    from simcse.objectives import OBJECTIVES

    if OBJECTIVES[cfg.objective].needs_predictor:
        extra["predict"] = True
    extras: dict[str, torch.Tensor] = {}
    z = embed_views(model, batch, cfg, extras, **extra)  # (views, batch, dim)
    step = objective or ObjectiveStep(cfg, z.shape[-1])
    loss = step.loss(model, z, batch, predictions=extras.get("predictions"))
    if cfg.do_mlm:
        loss = loss + cfg.mlm_weight * extras["mlm_loss"]
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


def to_device(batch: dict[str, Any], device: Any) -> dict[str, Any]:
    """The batch on ``device``; to a GPU from pinned memory without blocking (the CPU runs ahead)."""
    if device.type == "cuda":
        return {k: v.pin_memory().to(device, non_blocking=True) for k, v in batch.items()}
    return {k: v.to(device) for k, v in batch.items()}


class StepOutcome(NamedTuple):
    """What every process agreed on, read at a step that asks for it (covering the steps since the last read)."""

    loss: float  # mean over processes and over the finite steps since the last read (NaN when none was)
    steps: int  # steps since the last read, this one included
    skipped: int  # of which were skipped on every process: some process's loss was not finite
    in_a_row: int  # the longest run of skipped steps seen since the last read (runs continue across reads)
    stop: bool  # some process was asked to stop
    failed: bool  # some process reported a failure (e.g. it could not write the metrics)

    @property
    def finite(self) -> bool:
        """No step since the last read was skipped."""
        return self.skipped == 0


class TrainStep:
    """One optimizer step: forward over the views, the objective's loss, agreement, backward, clip, update.

    The step needs no host sync: whether any process's loss is non-finite is summed over processes on
    the device, and the fused AdamW skips its update on the device when it is (the protocol
    ``torch.amp.GradScaler`` uses with such optimizers), so every process takes the same path and the CPU
    runs ahead of the GPU. The loss, the skip counts and the stop/failure flags are read (one host sync,
    one sum over processes) only at steps called with ``read=True``. Objectives that update a momentum
    encoder or a queue after the step, and optimizers without on-device skipping, read the flag at every
    step instead (one host sync).

    Args:
        accelerator: The run's ``accelerate.Accelerator`` (autocast, backward with loss scaling, clipping).
        model: The prepared (possibly DDP-wrapped) training model.
        optimizer: The prepared optimizer.
        cfg: The run's config.
        objective: The objective's loop-side state (queue, momentum encoder, collapse watch).

    Example:
        >>> step = TrainStep(accelerator, model, optimizer, cfg, objective)  # doctest: +SKIP
        >>> step(batch, read=False)  # None: nothing read, no host sync  # doctest: +SKIP
        >>> outcome = step(batch)  # the agreed mean loss, skips, stop flag  # doctest: +SKIP
    """

    def __init__(
        self, accelerator: Any, model: Any, optimizer: Any, cfg: TrainConfig, objective: ObjectiveStep
    ) -> None:
        self.accelerator, self.model, self.optimizer, self.cfg, self.objective = (
            accelerator, model, optimizer, cfg, objective,
        )  # fmt: skip
        self.tokenizer = accelerator.unwrap_model(model).encoder.tokenizer
        self.cache = make_grad_cache(cfg, accelerator, objective)  # None: one forward with graph over the batch
        self._inner = getattr(optimizer, "optimizer", optimizer)  # under Accelerate's wrapper
        self._skip_on_device = getattr(self._inner, "_step_supports_amp_scaling", False) and not objective.updates_after
        self._reset()
        self._run = torch.zeros((), device=accelerator.device)  # skipped steps in a row, across reads

    def _reset(self) -> None:
        device = self.accelerator.device
        self._loss_sum, self._finite_steps, self._skipped = (torch.zeros((), device=device) for _ in range(3))
        self._worst, self._steps = torch.zeros((), device=device), 0

    def __call__(
        self, batch: dict[str, torch.Tensor], read: bool = True, stop: bool = False, failed: bool = False
    ) -> StepOutcome | None:
        """Run the step on this process's rows ``batch``; return the agreed outcome when ``read``, else None.

        ``stop`` / ``failed``: this process's flags, shared with every process at the next read.
        """
        acc, cfg = self.accelerator, self.cfg
        with acc.autocast():
            if self.cache is not None:
                loss = self.cache.loss(self.model, batch)
            else:
                loss = compute_loss(self.model, batch, cfg, self.tokenizer, self.objective)
        local = loss.detach().float().reshape(1)
        # summed over processes on the device: every process skips the update together, no host sync
        bad = sum_over_processes((~torch.isfinite(local)).float())[0] > 0
        if self._skip_on_device:
            self._update(loss, skip=bad)
        elif not bad.item():  # the host decides: a momentum encoder / queue must not take this step's keys
            self._update(loss, skip=None)
            self.objective.after_step(self.model)  # EMA of the momentum encoder, enqueue this step's keys
        self.optimizer.zero_grad(set_to_none=True)
        self._loss_sum += torch.where(bad, 0.0, local[0])
        self._finite_steps += (~bad).float()
        self._skipped += bad.float()
        self._run = (self._run + 1) * bad.float()
        self._worst = torch.maximum(self._worst, self._run)
        self._steps += 1
        return self._read(stop, failed) if read else None

    def _update(self, loss: torch.Tensor, skip: torch.Tensor | None) -> None:
        """Backward, clip and the optimizer step; ``skip`` (a device flag) cancels the step on the device."""
        (self.cache.backward if self.cache is not None else self.accelerator.backward)(loss)
        if self.cfg.max_grad_norm > 0:
            self.accelerator.clip_grad_norm_(self.model.parameters(), self.cfg.max_grad_norm)
        if skip is not None:
            self._inner.found_inf = skip.float()  # read by fused AdamW: no update, no state change when 1
        try:
            self.optimizer.step()
        finally:
            if skip is not None and hasattr(self._inner, "found_inf"):  # fp16: the GradScaler removed its own
                del self._inner.found_inf

    def _read(self, stop: bool, failed: bool) -> StepOutcome:
        """The one host sync and sum over processes of a read step."""
        flags = torch.tensor([float(stop), float(failed)], device=self._loss_sum.device)
        summed = sum_over_processes(torch.cat([self._loss_sum.reshape(1), flags]))
        local = torch.stack([self._finite_steps, self._skipped, self._worst])  # the same on every process
        loss_sum, stops, failures, finite, skipped, worst = torch.cat([summed, local]).tolist()
        steps = self._steps
        self._reset()
        mean = loss_sum / rank_and_world()[1] / finite if finite else math.nan
        return StepOutcome(mean, steps, int(skipped), int(worst), stops > 0, failures > 0)
