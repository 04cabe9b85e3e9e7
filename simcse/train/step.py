"""One training step, the one home of: views -> embeddings -> the objective's loss (+ MLM) -> update.

:class:`TrainStep` is what the loop calls once per step and what ``scripts/bench/bench_train.py`` times: one
forward over every view of the batch (dropout makes the views differ), the objective's loss through
its registry entry (the gradient cache calls the same loss), one agreement across processes, then
the update or, when any process's loss is not finite, no update on any process.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import torch

from simcse.config import TrainConfig
from simcse.distributed import rank_and_world, sum_over_processes
from simcse.train.device_state import LaggedFlags, LossScale
from simcse.train.grad_cache import GradCache
from simcse.train.model import length_group_rows, mask_tokens
from simcse.train.objective_step import ObjectiveStep


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
    views = cfg.views_in(batch["input_ids"].shape[0])
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
        special = torch.isin(batch["input_ids"], _on_device(tuple(tokenizer.all_special_ids), device))
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
    step = objective or ObjectiveStep(cfg, z.shape[-1], tokenizer)
    loss = step.loss(model, z, batch, predictions=extras.get("predictions"))
    if cfg.do_mlm:
        loss = loss + cfg.mlm_weight * extras["mlm_loss"]
    return loss


_DEVICE_CONSTANTS: dict[tuple[tuple[int, ...], str], torch.Tensor] = {}


def _on_device(values: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """``values`` as a tensor on ``device``, copied there once (a copy from host memory each step would block)."""
    key = (values, str(device))
    if key not in _DEVICE_CONSTANTS:
        _DEVICE_CONSTANTS[key] = torch.tensor(values, device=device)
    return _DEVICE_CONSTANTS[key]


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

    return GradCache(cfg.grad_cache_chunk_size, loss_fn, cfg.views_in, accelerator)


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
    overflows: int = 0  # fp16: steps skipped because the scaled gradients overflowed (the loss was finite)
    loss_scale: float | None = None  # fp16: the loss scale now

    @property
    def finite(self) -> bool:
        """No step since the last read was skipped."""
        return self.skipped == 0


class TrainStep:
    """One optimizer step: forward over the views, the objective's loss, agreement, backward, clip, update.

    The step needs no host sync: whether any process's loss is non-finite (and whether any was asked to
    stop) is summed over processes on the device, and the fused AdamW skips its update on the device
    when a loss was not finite (the protocol ``torch.amp.GradScaler`` uses with such optimizers), so every
    process takes the same path and the CPU runs ahead of the GPU. The loss, the skip counts and the
    failure flag are read (one host sync, one sum over processes) only at steps called with ``read=True``.
    The stop flag of each step is copied to the host without blocking and read one step later
    (:meth:`stop_agreed`): a pre-emption is seen within two steps, whatever ``logging_steps`` is, at the
    cost of waiting for the previous step only. Objectives that update a momentum encoder or a queue after
    the step, and optimizers without on-device skipping, read the flag at every step instead (one host sync).
    Under fp16 the loss scaling is :class:`simcse.train.device_state.LossScale`: an overflow of the scaled
    gradients skips the step and halves the scale, a non-finite loss skips it and keeps the scale, and
    overflows are counted in :attr:`StepOutcome.overflows`.

    Args:
        accelerator: The run's ``accelerate.Accelerator`` (autocast, backward, clipping).
        model: The prepared (possibly DDP-wrapped) training model.
        optimizer: The prepared optimizer.
        cfg: The run's config.
        objective: The objective's loop-side state (queue, momentum encoder, collapse watch).
        loss_scale: fp16's loss scale; None: one when the accelerator runs fp16 autocast, else none.

    Example:
        >>> step = TrainStep(accelerator, model, optimizer, cfg, objective)  # doctest: +SKIP
        >>> step(batch, read=False)  # None: nothing read, no host sync  # doctest: +SKIP
        >>> outcome = step(batch)  # the agreed mean loss, skips, stop flag  # doctest: +SKIP
    """

    def __init__(
        self,
        accelerator: Any,
        model: Any,
        optimizer: Any,
        cfg: TrainConfig,
        objective: ObjectiveStep,
        loss_scale: LossScale | None = None,
    ) -> None:
        self.accelerator, self.model, self.optimizer, self.cfg, self.objective = (
            accelerator, model, optimizer, cfg, objective,
        )  # fmt: skip
        self.tokenizer = accelerator.unwrap_model(model).encoder.tokenizer
        self.cache = make_grad_cache(cfg, accelerator, objective)  # None: one forward with graph over the batch
        self._inner = getattr(optimizer, "optimizer", optimizer)  # under Accelerate's wrapper
        self._skip_on_device = getattr(self._inner, "_step_supports_amp_scaling", False) and not objective.updates_after
        fp16 = accelerator.mixed_precision == "fp16" and getattr(accelerator, "native_amp", False)
        self.loss_scale = loss_scale or (LossScale(accelerator.device) if fp16 else None)
        self._stop_flags = LaggedFlags(accelerator.device)
        self._reset()
        self._run = torch.zeros((), device=accelerator.device)  # skipped steps in a row, across reads

    def _reset(self) -> None:
        device = self.accelerator.device
        self._loss_sum, self._finite_steps, self._skipped = (torch.zeros((), device=device) for _ in range(3))
        self._worst, self._overflows, self._steps = torch.zeros((), device=device), torch.zeros((), device=device), 0
        self._stops = torch.zeros((), device=device)  # processes asked to stop, as of the last step

    def __call__(
        self, batch: dict[str, torch.Tensor], read: bool = True, stop: bool = False, failed: bool = False
    ) -> StepOutcome | None:
        """Run the step on this process's rows ``batch``; return the agreed outcome when ``read``, else None.

        ``stop``: this process was asked to stop (summed over processes with this step's flags; seen by
        every process at the next :meth:`stop_agreed`, or at once when ``read``). ``failed``: this
        process's failure flag, shared with every process at the next read.
        """
        acc, cfg, device = self.accelerator, self.cfg, self.accelerator.device
        with acc.autocast():
            if self.cache is not None:
                if self.objective.guide is not None:  # the guide's similarities, once per step (the cache's
                    self.objective.guide_step(batch, cfg.views_in(batch["input_ids"].shape[0]))  # loss reads no batch)
                loss = self.cache.loss(self.model, batch)
            else:
                loss = compute_loss(self.model, batch, cfg, self.tokenizer, self.objective)
        local = loss.detach().float().reshape(1)
        # summed over processes on the device (a fill kernel brings the host's flag in: no copy, no sync)
        asked = torch.full((1,), float(stop), device=device)
        flags = sum_over_processes(torch.cat([(~torch.isfinite(local)).float(), asked]))  # (2,): non-finite, stop
        bad = flags[0] > 0
        self._stop_flags.push(flags[1])
        if self._skip_on_device:
            self._update(loss, bad)
        # otherwise the host decides: a momentum encoder / queue must not take this step's keys
        elif not bad.item() and self._update(loss, bad, host=True):
            self.objective.after_step(self.model)  # EMA of the momentum encoder, enqueue this step's keys
        self.optimizer.zero_grad(set_to_none=True)
        self._loss_sum += torch.where(bad, 0.0, local[0])
        self._finite_steps += (~bad).float()
        self._skipped += bad.float()
        self._run = (self._run + 1) * bad.float()
        self._worst = torch.maximum(self._worst, self._run)
        self._steps += 1
        self._stops = flags[1]
        return self.read(failed) if read else None

    def stop_agreed(self) -> bool:
        """Whether any process was asked to stop as of the previous step (every process calls it at the same step).

        Waits for the previous step's flags to reach the host (copied without blocking), not for this one.
        """
        return self._stop_flags.previous() > 0

    def _update(self, loss: torch.Tensor, bad: torch.Tensor, host: bool = False) -> bool:
        """Backward, clip and the optimizer step, skipped on the device when ``bad`` or the fp16 gradients overflow.

        ``host``: the caller has decided on the host that the loss is finite; an fp16 overflow is then read
        on the host too (one sync). Returns whether the optimizer stepped (True unless decided on the device).
        """
        scale = self.loss_scale
        (self.cache.backward if self.cache is not None else self.accelerator.backward)(
            scale.scale(loss) if scale is not None else loss
        )
        params = [p for p in self.model.parameters() if p.grad is not None]
        if scale is not None:
            scale.unscale_(params)
        norm = None
        if self.cfg.max_grad_norm > 0:
            norm = self.accelerator.clip_grad_norm_(params, self.cfg.max_grad_norm)
        elif scale is not None:  # the total norm tells an overflow (inf clips nothing)
            norm = torch.nn.utils.clip_grad_norm_(params, float("inf"))
        skip = bad
        if scale is not None:
            overflow = scale.update(torch.as_tensor(norm, device=bad.device), bad)
            self._overflows += overflow.float()
            skip = bad | overflow
        if host:
            if scale is not None and skip.item():
                return False
            self.optimizer.step()
            return True
        self._inner.found_inf = skip.float()  # read by fused AdamW: no update, no state change when 1
        try:
            self.optimizer.step()
        finally:
            if hasattr(self._inner, "found_inf"):
                del self._inner.found_inf
        return True

    def read(self, failed: bool = False) -> StepOutcome:
        """The agreed outcome of the steps since the last read (one host sync, one sum over processes).

        Called by :meth:`__call__` when ``read``, or by the loop right after a step (every process at the
        same step), e.g. when :meth:`stop_agreed` says a process was asked to stop.
        """
        device = self._loss_sum.device
        summed = sum_over_processes(torch.stack([self._loss_sum, torch.full((), float(failed), device=device)]))
        scale = self.loss_scale.value if self.loss_scale is not None else torch.zeros((), device=device)
        local = torch.stack([self._finite_steps, self._skipped, self._worst, self._overflows, self._stops, scale])
        loss_sum, failures, finite, skipped, worst, overflows, stop, scale_now = torch.cat([summed, local]).tolist()
        steps = self._steps
        self._reset()
        mean = loss_sum / rank_and_world()[1] / finite if finite else math.nan
        return StepOutcome(
            mean, steps, int(skipped), int(worst), stop > 0, failures > 0, int(overflows),
            scale_now if self.loss_scale is not None else None,
        )  # fmt: skip
