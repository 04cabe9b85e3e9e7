"""The contrastive-learning family: objectives as pure functions of embeddings, plus small state modules.

Interface (the same for every objective)
----------------------------------------
* A loss is a pure function: embedding tensors (and, where needed, labels / a memory tensor / the
  prototypes module) **positionally**, hyperparameters **keyword-only** with the paper's defaults,
  and a **scalar** tensor out (mean over the batch unless the paper sums). Rows ``i`` of the
  positional tensors belong to the same example. It never touches tokenizers or models.
* Shapes: two-view losses take ``(n, dim)`` views; BYOL / SimSiam take the encoder's stacked layout
  ``(n, 2, dim)``; pair labels are ``(n,)`` 0/1 with 1 = similar.
* Across processes: losses with ``label_offset`` (``infonce``, ``moco``, ``xbm``, ``n_pair``) take
  local anchors and candidates gathered *with gradient*, as :func:`simcse.objectives.info_nce`; the
  others take gathered views and compute the global-batch loss on every process. State modules
  take a ``gather`` (concatenate in rank order, no gradient needed) so that queues stay identical on
  all processes; :func:`sinkhorn_knopp` / :func:`swav_loss` take an ``all_reduce`` (sum).
* State is explicit and lives in ``nn.Module``s the trainer owns (moved with ``.to``, saved in
  ``state_dict``): :class:`MomentumEncoder` (EMA copy; call ``.update(online)`` after each optimizer
  step), :class:`KeyQueue` (``.enqueue(keys, gather)`` after the loss; ``.get()`` for the loss),
  :class:`CrossBatchMemory` (``.negatives()`` before, ``.enqueue(...)`` after), :class:`Predictor`,
  :class:`Prototypes` (trainable: add their parameters to the optimizer; never those of a
  ``MomentumEncoder``).
* :data:`OBJECTIVES` maps a config string to an :class:`ObjectiveSpec` saying which inputs the loss
  takes (``spec.inputs``, ``?`` = optional), how many views per example, which helper modules it
  needs and its hyperparameter defaults (``spec.defaults``); ``build_objective(name, **hparams)``
  returns the loss with hyperparameters bound, rejecting unknown names.

Example (MoCo / ESimCSE step):
    >>> import torch
    >>> queue, target = KeyQueue(size=256, dim=8), MomentumEncoder(torch.nn.Linear(8, 8))
    >>> x = torch.randn(4, 8)
    >>> loss = moco_loss(x, target(x), queue.get(), in_batch_negatives=True)
    >>> queue.enqueue(target(x))

The training loop's collapse watch lives in :mod:`simcse.train.collapse`.
"""

from simcse.objectives.barlow import barlow_twins
from simcse.objectives.byol import Predictor, byol_loss, simsiam_loss
from simcse.objectives.distances import DISTANCES, distance_matrix, paired_distance
from simcse.objectives.guided import guided_false_negatives
from simcse.objectives.infonce import info_nce
from simcse.objectives.inputs import StepInputs
from simcse.objectives.matryoshka import matryoshka_loss, matryoshka_step
from simcse.objectives.moco import moco_loss
from simcse.objectives.momentum import MomentumEncoder, cosine_momentum, ema_update
from simcse.objectives.npair import n_pair_loss
from simcse.objectives.pairs import circle_loss, logistic_loss, pair_contrastive_loss
from simcse.objectives.queue import KeyQueue
from simcse.objectives.registry import OBJECTIVES, ObjectiveSpec, build_objective
from simcse.objectives.simclr import nt_xent
from simcse.objectives.swav import Prototypes, sinkhorn_knopp, swapped_prediction, swav_loss
from simcse.objectives.triplet import lifted_structure_loss, triplet_loss
from simcse.objectives.xbm import CrossBatchMemory, xbm_loss

__all__ = [
    "DISTANCES",
    "OBJECTIVES",
    "CrossBatchMemory",
    "KeyQueue",
    "MomentumEncoder",
    "ObjectiveSpec",
    "Predictor",
    "Prototypes",
    "StepInputs",
    "barlow_twins",
    "build_objective",
    "byol_loss",
    "circle_loss",
    "cosine_momentum",
    "distance_matrix",
    "ema_update",
    "guided_false_negatives",
    "info_nce",
    "lifted_structure_loss",
    "logistic_loss",
    "matryoshka_loss",
    "matryoshka_step",
    "moco_loss",
    "n_pair_loss",
    "nt_xent",
    "pair_contrastive_loss",
    "paired_distance",
    "simsiam_loss",
    "sinkhorn_knopp",
    "swapped_prediction",
    "swav_loss",
    "triplet_loss",
    "xbm_loss",
]
