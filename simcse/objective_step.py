"""The configured objective in the training loop: its modules, its loss from the views, its post-step updates.

Every objective of :data:`simcse.objectives.OBJECTIVES` trains on the views ``z`` ``(views, n, dim)`` of
one forward (:func:`simcse.training.embed_views`): unsupervised, the same sentence twice, so that
dropout makes the views differ (SimCSE); supervised, the data's ``sent0, sent1[, hard_neg]``.

How each objective reads the views (``g`` = gathered from all processes with gradient):

* ``infonce``: anchors ``z0`` against ``g(z1)`` (and ``g(z2)``), label offset by rank (SimCSE).
* ``n_pair``: as ``infonce`` with dot products, without hard negatives.
* ``xbm``: ``infonce`` plus the memory of past positives; this step's ``z1`` is stored after the step.
* ``moco``: symmetrised (MoCo v3): queries ``z_v`` against the momentum encoder's keys of the other
  view, with the batch's keys and the queue as negatives (ESimCSE); this step's keys of view 1 are
  enqueued after the step.
* ``byol``: ``predictor(z)`` regresses the momentum encoder's output of the other view; ``simsiam``:
  the same forward's other view, stop-gradient. ``predictor_hidden: 0`` drops the predictor (an
  ablation that collapses).
* ``nt_xent``, ``barlow_twins``, ``lifted_structure``, ``swav``: ``g(z0), g(z1)`` (the global-batch loss
  on every process).
* ``triplet``: ``(z0, z1, z2)`` with ``mode: triplets``; otherwise batch-hard mining over ``g(z0), g(z1)``.
* ``contrastive``, ``logistic``, ``circle`` (labelled pairs): see :func:`labelled_pairs`.

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

import dataclasses
from typing import Any

import torch
from torch import nn

from simcse.config import TrainConfig
from simcse.distributed import gather_no_grad, gather_with_grad, rank_and_world
from simcse.objectives import (
    OBJECTIVES,
    CollapseMonitor,
    CrossBatchMemory,
    KeyQueue,
    MomentumEncoder,
    Predictor,
    Prototypes,
    build_objective,
)

# config field -> the objectives that read it; another objective with a non-default value is a mistake
_FIELD_USERS = {
    "hard_negative_weight": ("infonce",),
    "margin": ("triplet", "contrastive", "circle", "lifted_structure"),
    "barlow_lambda": ("barlow_twins",),
    "momentum": ("moco", "byol"),
    "queue_size": ("moco",),
    "memory_size": ("xbm",),
    "memory_warmup": ("xbm",),
    "predictor_hidden": ("byol", "simsiam"),
    "n_prototypes": ("swav",),
}
# objectives that use a third view (the hard negative); the others refuse mode: triplets
THREE_VIEW_OBJECTIVES = ("infonce", "triplet", "contrastive", "logistic", "circle")


def validate_objective_config(cfg: TrainConfig) -> None:
    """Check ``cfg.objective``, its hyperparameters and the data mode it trains on (ValueError)."""
    if cfg.objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {sorted(OBJECTIVES)}, got {cfg.objective!r}")
    checks = [
        (0.0 <= cfg.momentum <= 1.0, f"momentum must be in [0, 1], got {cfg.momentum}"),
        (cfg.queue_size >= 1 and cfg.memory_size >= 1, "queue_size and memory_size must be >= 1"),
        (cfg.memory_warmup >= 0, f"memory_warmup must be >= 0, got {cfg.memory_warmup}"),
        (cfg.margin is None or cfg.margin > 0, f"margin must be > 0, got {cfg.margin}"),
        (cfg.barlow_lambda >= 0, f"barlow_lambda must be >= 0, got {cfg.barlow_lambda}"),
        (cfg.predictor_hidden >= 0, f"predictor_hidden must be >= 0, got {cfg.predictor_hidden}"),
        (cfg.n_prototypes >= 2, f"n_prototypes must be >= 2, got {cfg.n_prototypes}"),
        (cfg.collapse_check_steps >= 0, f"collapse_check_steps must be >= 0, got {cfg.collapse_check_steps}"),
        (cfg.objective == "infonce" or cfg.batch_size >= 2, f"objective {cfg.objective} needs batch_size >= 2"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if cfg.mode == "triplets" and cfg.objective not in THREE_VIEW_OBJECTIVES:
        raise ValueError(
            f"objective {cfg.objective} takes two views, not a hard negative: use mode pairs (it reads sent0,sent1 "
            f"of a triplet CSV) or unsup; objectives using triplets: {', '.join(THREE_VIEW_OBJECTIVES)}"
        )
    defaults = {f.name: f.default for f in dataclasses.fields(cfg)}
    for name, users in _FIELD_USERS.items():
        if getattr(cfg, name) != defaults[name] and cfg.objective not in users:
            raise ValueError(f"{name} is read by objective(s) {', '.join(users)} only, not {cfg.objective}")


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


def labelled_pairs(
    anchors: torch.Tensor, positives: torch.Tensor, hard_negatives: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labelled pairs from a batch, for ``contrastive``, ``logistic`` and ``circle``.

    ``(anchor_i, positive_i)`` is labelled 1 and ``(anchor_i, negative_i)`` 0, where ``negative_i``
    is the hard negative when the data has one (``mode: triplets``), else the next example's
    positive ``positive_{i+1}`` (cyclically; in unsupervised mode another sentence).

    Args:
        anchors: ``(n, dim)``, ``n >= 2``.
        positives: ``(n, dim)``.
        hard_negatives: Optional ``(n, dim)``.

    Returns:
        ``(view_a, view_b, labels)``: ``(2n, dim)``, ``(2n, dim)``, ``(2n,)``; positives first.
    """
    n = anchors.shape[0]
    negatives = hard_negatives if hard_negatives is not None else positives.roll(-1, dims=0)  # (n, dim)
    labels = torch.cat([torch.ones(n), torch.zeros(n)]).to(anchors.device)  # (2n,)
    return torch.cat([anchors, anchors]), torch.cat([positives, negatives]), labels  # (2n, dim) x 2, (2n,)


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

    def __init__(self, cfg: TrainConfig, dim: int) -> None:
        self.cfg, self.spec = cfg, OBJECTIVES[cfg.objective]
        self.loss_fn = build_objective(cfg.objective, **loss_hyperparameters(cfg))
        self.state: nn.Module | None = None  # checkpointed by the trainer (register_for_checkpointing)
        if self.spec.needs_queue:
            self.state = KeyQueue(cfg.queue_size, dim)
        elif self.spec.needs_memory:
            self.state = CrossBatchMemory(cfg.memory_size, dim, cfg.memory_warmup)
        self.monitor = CollapseMonitor()
        self._pending: torch.Tensor | None = None  # keys to enqueue after the optimizer step
        self._last: torch.Tensor | None = None  # this step's anchors, detached, for the collapse watch

    def loss(self, model: nn.Module, z: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss of one batch from its views ``z`` ``(views, n, dim)`` (this process's rows).

        ``batch`` (view-major tokenized rows) is read only by objectives with a momentum encoder.
        """
        name, fn, g = self.cfg.objective, self.loss_fn, gather_with_grad
        offset = rank_and_world()[0] * z.shape[1]  # where this process's anchors start among gathered rows
        hard = z[2] if z.shape[0] > 2 else None  # (n, dim)
        self._last, self._pending = z[0].detach(), None
        if name == "infonce":
            return fn(z[0], g(z[1]), None if hard is None else g(hard), label_offset=offset)
        if name == "n_pair":
            return fn(z[0], g(z[1]), label_offset=offset)
        if name == "xbm":
            self._pending = z[1].detach()
            return fn(z[0], g(z[1]), self.state.negatives(), label_offset=offset)  # type: ignore[union-attr]
        if name == "moco":
            return self._moco(model, z, batch, offset)
        if name in ("byol", "simsiam"):
            return self._predictive(model, z, batch)
        if name == "triplet":
            return fn(z[0], z[1], hard) if hard is not None else fn(g(z[0]), g(z[1]), batch_hard=True)
        if self.spec.needs_labels:
            return fn(*labelled_pairs(g(z[0]), g(z[1]), None if hard is None else g(hard)))
        if name == "swav":
            return fn(g(z[0]), g(z[1]), objective_modules(model).prototypes)  # type: ignore[union-attr]
        return fn(g(z[0]), g(z[1]))  # nt_xent, barlow_twins, lifted_structure

    @staticmethod
    def _target_views(model: nn.Module, batch: dict[str, torch.Tensor], z: torch.Tensor) -> torch.Tensor:
        """The momentum encoder's embeddings of every view, shaped like ``z``: ``(views, n, dim)``, no graph."""
        target = objective_modules(model).target  # type: ignore[union-attr]
        return target(use_head=True, **batch).view(z.shape)  # (views * n, dim) -> (views, n, dim)

    def _moco(self, model: nn.Module, z: torch.Tensor, batch: dict[str, torch.Tensor], offset: int) -> torch.Tensor:
        keys = self._target_views(model, batch, z)  # (2, n, dim)
        queue = self.state.get()  # type: ignore[union-attr]  # (filled, dim)
        loss = 0.5 * (
            self.loss_fn(z[0], gather_no_grad(keys[1]), queue, in_batch_negatives=True, label_offset=offset)
            + self.loss_fn(z[1], gather_no_grad(keys[0]), queue, in_batch_negatives=True, label_offset=offset)
        )
        self._pending = keys[1]
        return loss

    def _predictive(self, model: nn.Module, z: torch.Tensor, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        online = z.transpose(0, 1)  # (n, 2, dim)
        modules = objective_modules(model)
        predictor = modules.predictor if modules is not None else None
        predictions = predictor(online) if predictor is not None else online  # (n, 2, dim)
        if self.cfg.objective == "simsiam":
            return self.loss_fn(predictions, online)  # the loss detaches the targets
        return self.loss_fn(predictions, self._target_views(model, batch, z).transpose(0, 1))

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
