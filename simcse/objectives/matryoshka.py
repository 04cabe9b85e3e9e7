"""Matryoshka representation learning: the first ``d`` dimensions of every vector trained as an embedding.

Kusupati et al. (2022), "Matryoshka Representation Learning": the loss is applied to the embeddings
truncated to each of a list of sizes, weighted and summed, so that a vector cut to its first ``d``
dimensions (and re-normalised) is an embedding on its own. It wraps any objective whose loss reads the
embeddings alone: the cosine-based losses normalise the truncated vectors themselves, which is the
re-normalisation that search at a smaller size applies.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch

from simcse.objectives.inputs import StepInputs


def matryoshka_weights(dims: Sequence[int], weights: Sequence[float] | None = None) -> list[float]:
    """The weight of each size: as given, else 1 each (as sentence-transformers' ``MatryoshkaLoss``)."""
    return [1.0] * len(dims) if weights is None else [float(w) for w in weights]


def matryoshka_loss(
    loss: Callable[..., torch.Tensor],
    *embeddings: torch.Tensor,
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    **kwargs: object,
) -> torch.Tensor:
    """``sum_k weights[k] * loss(e[..., :dims[k]] for e in embeddings)``: a loss at several sizes at once.

    Args:
        loss: A loss of embedding tensors (``(n, dim)`` each, e.g. :func:`simcse.objectives.info_nce`).
        *embeddings: Its positional tensors, full size; None entries (an absent optional input) stay None.
        dims: The sizes, each at most ``dim``.
        weights: One per size (None: 1 each).
        **kwargs: The loss's keyword arguments (hyperparameters).

    Example:
        >>> from simcse.objectives import info_nce
        >>> z1, z2 = torch.randn(4, 32), torch.randn(4, 32)
        >>> matryoshka_loss(info_nce, z1, z2, dims=[32, 8]).shape
        torch.Size([])
    """
    total = None
    for d, w in zip(dims, matryoshka_weights(dims, weights)):
        part = w * loss(*(e if e is None else e[..., :d] for e in embeddings), **kwargs)  # (..., d) each
        total = part if total is None else total + part
    assert total is not None, "dims is empty"
    return total


def matryoshka_step(
    step: Callable[[StepInputs], torch.Tensor], dims: Sequence[int], weights: Sequence[float] | None = None
) -> Callable[[StepInputs], torch.Tensor]:
    """An objective's step function (:attr:`simcse.objectives.ObjectiveSpec.step`) applied at every size.

    Each size's step sees the views cut to that size, so what it gathers from the other processes (with
    gradient, for cross-process negatives) is cut too; hard negatives are views like the others.
    """
    sizes, scale = list(dims), matryoshka_weights(dims, weights)

    def run(x: StepInputs) -> torch.Tensor:
        total = None
        for d, w in zip(sizes, scale):
            part = w * step(dataclasses.replace(x, z=x.z[..., :d]))  # z: (views, n, d)
            total = part if total is None else total + part
        return total  # type: ignore[return-value]

    return run
