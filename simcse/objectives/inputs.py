"""What the training step hands an objective: this process's views and the means to reach the others.

Each objective's file defines, beside its loss, a *step* function ``(StepInputs) -> loss`` that says
which views it reads and which of them it gathers from all processes; the registry names it
(:attr:`simcse.objectives.ObjectiveSpec.step`), so the trainer never switches on an objective's name.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class StepInputs:
    """One step's inputs to an objective.

    Attributes:
        z: This process's views ``(views, n, dim)``: anchors, positives[, hard negatives].
        loss: The objective's loss with the config's hyperparameters bound.
        gather: Concatenate a tensor over processes in rank order, with gradient (identity on one process).
        gather_no_grad: The same without gradient (keys of a momentum encoder, queue entries).
        offset: Where this process's anchors start among gathered rows (``rank * n``).
        modules: The model's objective modules (``predictor``, ``prototypes``, ``target``), or None.
        state: The objective's queue or memory, or None.
        batch: The step's tokenized rows, view-major (read by a momentum encoder).
        predictions: The predictor's output of every view ``(views, n, dim)``, computed in the model's
            forward (BYOL / SimSiam); None: the step function calls ``modules.predictor`` itself.
        targets: The momentum encoder's embeddings of every view ``(views, n, dim)`` when computed ahead
            (the trainer does, under the step's autocast); None: :meth:`target_views` computes them.
        enqueue: Set by the step function: keys to add to :attr:`state` after the optimizer step.
        false_negatives: Candidates a guide model marks as false negatives, laid out as the loss's logits
            (:func:`simcse.objectives.guided.guided_false_negatives`), or None.
    """

    z: torch.Tensor
    loss: Callable[..., torch.Tensor]
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    gather_no_grad: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    offset: int = 0
    modules: Any = None
    state: Any = None
    batch: dict[str, torch.Tensor] = field(default_factory=dict)
    predictions: torch.Tensor | None = None
    targets: torch.Tensor | None = None
    enqueue: torch.Tensor | None = None
    false_negatives: torch.Tensor | None = None

    @property
    def hard(self) -> torch.Tensor | None:
        """The hard negatives ``(n, dim)`` when the data has them (``mode: triplets``), else None."""
        return self.z[2] if self.z.shape[0] > 2 else None

    def target_views(self) -> torch.Tensor:
        """The momentum encoder's embeddings of every view, shaped like ``z``: ``(views, n, dim)``, no graph."""
        if self.targets is not None:
            return self.targets
        return self.modules.target(use_head=True, **self.batch).view(self.z.shape)  # (views * n, dim) -> z's shape


def global_pair_step(x: StepInputs) -> torch.Tensor:
    """The loss of the global batch's two views, on every process: ``loss(g(z0), g(z1))``."""
    return x.loss(x.gather(x.z[0]), x.gather(x.z[1]))
