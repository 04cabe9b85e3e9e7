"""ONE registry of objectives by name: the loss, how a training step feeds it, and everything it needs.

Adding an objective: write its loss and its step function (``StepInputs -> loss``) in its own file,
then add one :class:`ObjectiveSpec` to :data:`OBJECTIVES` (see ``tests/objectives/test_objective_registry.py``).
The trainer and the config read everything else from the spec: the views it takes, the config fields
it reads, its modules and state.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from simcse.objectives.barlow import barlow_twins
from simcse.objectives.byol import byol_loss, byol_step, simsiam_loss, simsiam_step
from simcse.objectives.infonce import info_nce, infonce_step
from simcse.objectives.inputs import StepInputs, global_pair_step
from simcse.objectives.moco import moco_loss, moco_step
from simcse.objectives.npair import n_pair_loss, n_pair_step
from simcse.objectives.pairs import circle_loss, labelled_pairs_step, logistic_loss, pair_contrastive_loss
from simcse.objectives.simclr import nt_xent
from simcse.objectives.swav import swav_loss, swav_step
from simcse.objectives.triplet import lifted_structure_loss, triplet_loss, triplet_step
from simcse.objectives.xbm import xbm_loss, xbm_step


@dataclass(frozen=True)
class ObjectiveSpec:
    """What an objective is and what the trainer must provide to call it.

    Attributes:
        name: Registry key (the config string).
        loss: The loss function: tensors positionally (``inputs``), hyperparameters keyword-only.
        inputs: Names of the positional arguments in order; a trailing ``?`` marks an optional one.
        step: How a training step calls the loss: which views, gathered from which processes
            (:class:`~simcse.objectives.inputs.StepInputs` -> scalar loss).
        views: The most views per example it reads: 3 takes a hard negative (``mode: triplets``), 2 does not.
        config_fields: The training config's fields it reads beyond ``temperature``; another objective
            given a non-default value of one of them is refused.
        needs_labels: Needs 0/1 pair labels (``labels`` input).
        needs_momentum_encoder: Keys/targets come from a :class:`MomentumEncoder` of the online model.
        needs_predictor: Needs a :class:`Predictor` on the online branch.
        needs_prototypes: Needs a :class:`Prototypes` module (trained with the encoder).
        needs_queue: Needs a :class:`KeyQueue` (``queue`` input = ``KeyQueue.get()``).
        needs_memory: Needs a :class:`CrossBatchMemory` (``memory`` input = ``.negatives()``).
        reference: The paper.
    """

    name: str
    loss: Callable[..., torch.Tensor]
    inputs: tuple[str, ...]
    step: Callable[[StepInputs], torch.Tensor] = global_pair_step
    views: int = 2
    config_fields: tuple[str, ...] = ()
    needs_labels: bool = False
    needs_momentum_encoder: bool = False
    needs_predictor: bool = False
    needs_prototypes: bool = False
    needs_queue: bool = False
    needs_memory: bool = False
    reference: str = ""

    @property
    def defaults(self) -> dict[str, Any]:
        """The loss's keyword-only hyperparameters and their (paper) defaults."""
        params = inspect.signature(self.loss).parameters.values()
        return {p.name: p.default for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY}

    def build(self, **hyperparameters: Any) -> Callable[..., torch.Tensor]:
        """The loss with ``hyperparameters`` bound; unknown names are rejected."""
        unknown = sorted(set(hyperparameters) - set(self.defaults))
        if unknown:
            known = sorted(self.defaults)
            raise ValueError(f"objective {self.name!r} has no hyperparameter(s) {unknown}; known: {known}")
        return functools.partial(self.loss, **hyperparameters)


_PAIR = ("view_a", "view_b")
_LABELLED = (*_PAIR, "labels")
_MARGIN = ("margin",)
_SPECS = [
    ObjectiveSpec(
        "infonce", info_nce, ("anchors", "positives", "hard_negatives?"), infonce_step, views=3,
        config_fields=("hard_negative_weight",), reference="Gao et al., 2021 (SimCSE)",
    ),
    ObjectiveSpec("nt_xent", nt_xent, _PAIR, reference="Chen et al., 2020 (SimCLR)"),
    ObjectiveSpec(
        "moco", moco_loss, ("queries", "keys", "queue"), moco_step, config_fields=("momentum", "queue_size"),
        needs_momentum_encoder=True, needs_queue=True,
        reference="He et al., 2020 (MoCo); Chen et al., 2020 (MoCo v2); Wu et al., 2022 (ESimCSE)",
    ),
    ObjectiveSpec(
        "xbm", xbm_loss, ("anchors", "positives", "memory"), xbm_step, config_fields=("memory_size", "memory_warmup"),
        needs_memory=True, reference="Wang et al., 2020 (Cross-Batch Memory)",
    ),
    ObjectiveSpec(
        "byol", byol_loss, ("online_predictions", "target_projections"), byol_step,
        config_fields=("momentum", "predictor_hidden"), needs_momentum_encoder=True, needs_predictor=True,
        reference="Grill et al., 2020 (BYOL)",
    ),
    ObjectiveSpec(
        "simsiam", simsiam_loss, ("predictions", "projections"), simsiam_step, config_fields=("predictor_hidden",),
        needs_predictor=True, reference="Chen & He, 2021 (SimSiam)",
    ),
    ObjectiveSpec(
        "barlow_twins", barlow_twins, _PAIR, config_fields=("barlow_lambda",),
        reference="Zbontar et al., 2021 (Barlow Twins)",
    ),
    ObjectiveSpec(
        "swav", swav_loss, (*_PAIR, "prototypes"), swav_step, config_fields=("n_prototypes",),
        needs_prototypes=True, reference="Caron et al., 2020 (SwAV)",
    ),
    ObjectiveSpec(
        "triplet", triplet_loss, ("anchors", "positives", "negatives?"), triplet_step, views=3,
        config_fields=_MARGIN, reference="Schroff et al., 2015 (FaceNet); Hermans et al., 2017 (batch-hard)",
    ),
    ObjectiveSpec(
        "contrastive", pair_contrastive_loss, _LABELLED, labelled_pairs_step, views=3, config_fields=_MARGIN,
        needs_labels=True, reference="Hadsell et al., 2006",
    ),
    ObjectiveSpec("n_pair", n_pair_loss, ("anchors", "positives"), n_pair_step, reference="Sohn, 2016 (N-pair)"),
    ObjectiveSpec(
        "logistic", logistic_loss, _LABELLED, labelled_pairs_step, views=3, needs_labels=True,
        reference="binary pair classification",
    ),
    ObjectiveSpec(
        "circle", circle_loss, _LABELLED, labelled_pairs_step, views=3, config_fields=_MARGIN, needs_labels=True,
        reference="Sun et al., 2020 (Circle loss)",
    ),
    ObjectiveSpec(
        "lifted_structure", lifted_structure_loss, ("anchors", "positives"), config_fields=_MARGIN,
        reference="Song et al., 2016 (Lifted Structure)",
    ),
]  # fmt: skip
OBJECTIVES: dict[str, ObjectiveSpec] = {spec.name: spec for spec in _SPECS}


def build_objective(name: str, **hyperparameters: Any) -> Callable[..., torch.Tensor]:
    """The loss registered as ``name`` with ``hyperparameters`` bound (e.g. from a config).

    Example:
        >>> loss_fn = build_objective("nt_xent", temperature=0.5)
        >>> loss_fn(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """
    if name not in OBJECTIVES:
        raise KeyError(f"unknown objective {name!r}; choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name].build(**hyperparameters)
