"""The configured objective in the training loop: its modules, its loss from the views, its post-step updates.

Every objective of :data:`simcse.objectives.OBJECTIVES` trains on the views ``z`` ``(views, n, dim)`` of
one forward (:func:`simcse.train.step.embed_views`): unsupervised, the same sentence twice, so that
dropout makes the views differ (SimCSE); supervised, the data's ``sent0, sent1[, hard_neg]``.

How each objective reads the views (which it gathers from all processes, with or without gradient)
is its own step function, named by its registry entry (:attr:`simcse.objectives.ObjectiveSpec.step`).

Hyperparameters come from the config: ``temperature`` for every objective that has one (SimCSE's 0.05
suits sentences; the image papers' defaults are 0.1-0.2), ``margin`` (None keeps each paper's),
``barlow_lambda``, ``hard_negative_weight`` (infonce), ``momentum``, ``queue_size``, ``memory_size``,
``memory_warmup``, ``predictor_hidden``, ``n_prototypes``.

State: the predictor and prototypes are submodules of the model (trained and checkpointed with it);
the momentum encoder is one too, frozen (``requires_grad`` False, kept out of the optimizer) and
updated by :meth:`ObjectiveStep.after_step`. The queue / memory is :attr:`ObjectiveStep.state`, which
the trainer registers with ``accelerator.register_for_checkpointing`` (its pointer is not a tensor,
so it cannot go into the model's safetensors file).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from simcse.config import TrainConfig
from simcse.distributed import gather_no_grad, gather_with_grad, rank_and_world
from simcse.objectives import (
    OBJECTIVES,
    CrossBatchMemory,
    KeyQueue,
    MomentumEncoder,
    Predictor,
    Prototypes,
    StepInputs,
    build_objective,
    matryoshka_step,
)
from simcse.train.collapse import CollapseMonitor


class ObjectiveModules(nn.Module):
    """The objective's modules inside the model (each may be None).

    Attributes:
        predictor: BYOL / SimSiam prediction head, trained.
        prototypes: SwAV prototypes, trained.
        target: Momentum (EMA) copy of the encoder for MoCo / BYOL: frozen, out of the optimizer.
    """

    def __init__(
        self,
        predictor: nn.Module | None = None,
        prototypes: nn.Module | None = None,
        target: MomentumEncoder | None = None,
    ) -> None:
        super().__init__()
        self.predictor, self.prototypes, self.target = predictor, prototypes, target


def build_objective_modules(cfg: TrainConfig, encoder: nn.Module) -> ObjectiveModules | None:
    """The modules ``cfg.objective`` needs beside ``encoder`` (whose ``dim`` they take), or None."""
    spec, dim = OBJECTIVES[cfg.objective], int(encoder.dim)
    predictor = Predictor(dim, cfg.predictor_hidden) if spec.needs_predictor and cfg.predictor_hidden else None
    prototypes = Prototypes(dim, cfg.n_prototypes) if spec.needs_prototypes else None
    target = MomentumEncoder(encoder, cfg.momentum) if spec.needs_momentum_encoder else None
    if predictor is None and prototypes is None and target is None:
        return None
    return ObjectiveModules(predictor, prototypes, target)


def loss_hyperparameters(cfg: TrainConfig) -> dict[str, Any]:
    """The config's values for the keyword hyperparameters that ``cfg.objective``'s loss takes."""
    known = OBJECTIVES[cfg.objective].defaults
    values = {
        "temperature": cfg.temperature,
        "margin": cfg.margin,
        "off_diagonal_weight": cfg.barlow_lambda,
        "hard_negative_weight": cfg.hard_negative_weight,
    }
    return {k: v for k, v in values.items() if k in known and v is not None}


def _wide(x: torch.Tensor | None) -> torch.Tensor | None:
    """``x`` in float32 when it is half precision (float32 and float64 stay as they are)."""
    return x.float() if x is not None and x.dtype in (torch.float16, torch.bfloat16) else x


def objective_modules(model: nn.Module) -> ObjectiveModules | None:
    """The :class:`ObjectiveModules` of a (possibly DDP-wrapped) training model."""
    return getattr(getattr(model, "module", model), "objective", None)


class ObjectiveStep:
    """The configured objective on the loop's side: loss from the views, post-step updates, collapse watch.

    Args:
        cfg: The run's config (``objective`` and its hyperparameters).
        dim: Embedding size (for the queue / memory).

    Example:
        >>> step = ObjectiveStep(cfg, dim=model.encoder.dim)  # doctest: +SKIP
        >>> loss = step.loss(model, embed_views(model, batch, cfg), batch)  # doctest: +SKIP
        >>> loss.backward(); optimizer.step(); step.after_step(model)  # doctest: +SKIP
    """

    def __init__(self, cfg: TrainConfig, dim: int, tokenizer: Any = None) -> None:
        self.cfg, self.spec = cfg, OBJECTIVES[cfg.objective]
        self.loss_fn = build_objective(cfg.objective, **loss_hyperparameters(cfg))
        self.step_fn = self.spec.step
        if cfg.matryoshka_dims:  # the objective at every size, weighted, summed
            if dim and max(cfg.matryoshka_dims) > dim:
                raise ValueError(f"matryoshka_dims {list(cfg.matryoshka_dims)}: the encoder's vectors have {dim}")
            self.step_fn = matryoshka_step(self.spec.step, cfg.matryoshka_dims, cfg.matryoshka_weights,
                                           cfg.matryoshka_distill, cfg.temperature, cfg.matryoshka_energy)  # fmt: skip
        self.guide = None  # GISTEmbed's frozen guide: its similarities mask in-batch false negatives
        if cfg.guide_model is not None:
            from simcse.train.guide import Guide

            self.guide = Guide(cfg.guide_model, tokenizer, cfg.guide_margin)
        self._false_negatives: torch.Tensor | None = None  # the guide's mask of this step
        self.state: nn.Module | None = None  # checkpointed by the trainer (register_for_checkpointing)
        if self.spec.needs_queue:
            self.state = KeyQueue(cfg.queue_size, dim)
        elif self.spec.needs_memory:
            self.state = CrossBatchMemory(cfg.memory_size, dim, cfg.memory_warmup)
        self.monitor = CollapseMonitor()
        self._pending: torch.Tensor | None = None  # keys to enqueue after the optimizer step
        self._last: torch.Tensor | None = None  # this step's anchors, detached, for the collapse watch

    @property
    def updates_after(self) -> bool:
        """Whether :meth:`after_step` changes state (a momentum encoder, a queue, a memory)."""
        return self.spec.needs_momentum_encoder or self.spec.needs_queue or self.spec.needs_memory

    def loss(
        self,
        model: nn.Module | None,
        z: torch.Tensor,
        batch: dict[str, torch.Tensor],
        predictions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The loss of one batch from its views ``z`` ``(views, n, dim)`` (this process's rows).

        ``model`` (for the objective's modules) and ``batch`` (view-major tokenized rows) are read only by
        objectives with modules; the gradient cache passes neither. ``predictions``: the predictor's output
        of every view ``(views, n, dim)`` from the model's forward (BYOL / SimSiam).
        """
        modules = objective_modules(model) if model is not None else None
        if self.guide is not None and batch:  # the gradient cache calls guide_step itself, once per step
            self.guide_step(batch, z.shape[0])
        inputs = StepInputs(
            _wide(z), self.loss_fn, gather_with_grad, gather_no_grad, offset=rank_and_world()[0] * z.shape[1],
            modules=modules, state=self.state, batch=batch, predictions=_wide(predictions),
            false_negatives=self._false_negatives,
        )  # fmt: skip
        if self.spec.needs_momentum_encoder and modules is not None:
            inputs.targets = _wide(StepInputs(z, self.loss_fn, modules=modules, batch=batch).target_views())
        # the loss in float32 even under bf16 / fp16 autocast: at temperature 0.05, bf16's resolution of a
        # cosine near 1 (about 0.004) moves a logit by 0.08; the similarity matrices are small next to the encoder
        with torch.autocast(device_type=z.device.type, enabled=False):
            loss = self.step_fn(inputs)
        self._last, self._pending = inputs.z[0].detach(), inputs.enqueue
        return loss

    def guide_step(self, batch: dict[str, torch.Tensor], views: int) -> None:
        """The guide's false negatives of this step's rows (view-major), used by the next :meth:`loss`."""
        assert self.guide is not None
        self._false_negatives = self.guide.false_negatives(batch, views)

    def read_metrics(self) -> dict[str, float]:
        """The objective's per-step counts since the last read (``masked_negatives`` with a guide); every
        process calls it at the same steps."""
        return self.guide.read() if self.guide is not None else {}

    @torch.no_grad()
    def after_step(self, model: nn.Module) -> None:
        """After ``optimizer.step()``: EMA update of the momentum encoder, then enqueue this step's keys."""
        modules = objective_modules(model)
        if modules is not None and modules.target is not None:
            modules.target.update(getattr(model, "module", model).encoder)
        if self._pending is not None:
            self.state.enqueue(self._pending, gather_no_grad)  # type: ignore[union-attr]
            self._pending = None

    def collapse_metrics(self) -> dict[str, float]:
        """``embedding_std``, ``batch_uniformity`` and ``collapsed`` (0/1) of the last batch's anchors (warns once).

        Every process must call it at the same steps (it gathers the anchors of all processes).
        """
        if self._last is None or self._last.shape[0] < 2:
            return {}
        # the global batch's anchors, so the record does not depend on the number of processes
        metrics = self.monitor.update(gather_no_grad(self._last).float())
        # "uniformity" in a step's record is the dev set's (evaluation); this one is the batch's
        return {
            "embedding_std": metrics["embedding_std"],
            "batch_uniformity": metrics["uniformity"],
            "collapsed": metrics["collapsed"],
        }
