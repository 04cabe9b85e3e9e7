"""Matryoshka representation learning: the first ``d`` dimensions of every vector trained as an embedding.

Kusupati et al. (2022), "Matryoshka Representation Learning": the loss is applied to the embeddings
truncated to each of a list of sizes, weighted and summed, so that a vector cut to its first ``d``
dimensions (and re-normalised) is an embedding on its own. It wraps any objective whose loss reads the
embeddings alone: the cosine-based losses normalise the truncated vectors themselves, which is the
re-normalisation that search at a smaller size applies.

Optionally (``distill``), each smaller size also learns the full size's ranking of the batch: the KL
divergence from the full vectors' in-batch softmax (the teacher, no gradient) to the cut vectors' one, at
the objective's temperature. Search at a smaller size is then asked to find what full-size search finds,
which the loss at each size alone does not ask (each size only has to rank the positive first).

Optionally (``energy``, a weight per size), each vector's squared length is pulled into its first
dimensions: at size ``d``, the mean share of a vector's squared length beyond its first ``d`` dimensions.
Search at size ``d`` finds what full-size search finds exactly when the dimensions after ``d`` add nothing
to the cosines; the contrastive loss at full size spreads the vectors over every dimension (uniformity),
and this term trades some of that spread for agreement between the sizes (measured in the README; put the
weight on the size you will store).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F

from simcse.objectives.infonce import cosine_logits
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


def ranking_distillation(
    anchors: torch.Tensor, candidates: torch.Tensor, dims: Sequence[int], temperature: float
) -> torch.Tensor:
    """``sum_d mean_i KL(p_full(i) || p_d(i))``: each size ``d`` below the full one taught the full size's ranking.

    ``p_d(i)`` is the softmax over candidates of anchor ``i``'s cosine similarities at the first ``d``
    dimensions, divided by ``temperature``; the full size's distribution is the teacher (no gradient).

    Args:
        anchors: ``(n, dim)`` this process's anchors.
        candidates: ``(m, dim)`` the rows they rank (on several processes, every process's positives).
        dims: The sizes; those at or above ``dim`` are the teacher's own and add nothing.
        temperature: Softmax temperature.
    """
    full = anchors.shape[-1]

    def log_probs(d: int) -> torch.Tensor:  # (n, m), float32 or wider even under autocast
        return F.log_softmax(cosine_logits(anchors[:, :d], candidates[:, :d], temperature), dim=-1)

    teacher = log_probs(full).detach()
    total = teacher.new_zeros(())
    for d in dims:
        if d < full:
            total = total + F.kl_div(log_probs(d), teacher, log_target=True, reduction="batchmean")
    return total


def tail_energy(z: torch.Tensor, dims: Sequence[int], weights: Sequence[float] | None = None) -> torch.Tensor:
    """``sum_d w_d mean_i |z_i[d:]|^2 / |z_i|^2`` over the sizes ``d`` below the full one (float32 or wider).

    Args:
        z: ``(..., n, dim)`` vectors (any leading view axis).
        dims: The sizes; those at or above ``dim`` have no tail and add nothing.
        weights: One per size (None: 1 each).
    """
    full = z.shape[-1]
    squares = z.to(torch.promote_types(z.dtype, torch.float32)).square()  # (..., n, dim), as cosine_logits
    total = squares.sum(-1).clamp_min(torch.finfo(squares.dtype).tiny)  # (..., n)
    out = squares.new_zeros(())
    for d, w in zip(dims, matryoshka_weights(dims, weights)):
        if d < full and w:
            out = out + w * (squares[..., d:].sum(-1) / total).mean()
    return out


def matryoshka_step(
    step: Callable[[StepInputs], torch.Tensor],
    dims: Sequence[int],
    weights: Sequence[float] | None = None,
    distill: float = 0.0,
    temperature: float = 0.05,
    energy: Sequence[float] | None = None,
) -> Callable[[StepInputs], torch.Tensor]:
    """An objective's step function (:attr:`simcse.objectives.ObjectiveSpec.step`) applied at every size.

    Each size's step sees the views cut to that size, so what it gathers from the other processes (with
    gradient, for cross-process negatives) is cut too; hard negatives are views like the others. With
    ``distill > 0``, ``distill *`` :func:`ranking_distillation` of the anchors over every process's
    positives is added (at ``temperature``); with ``energy`` (a weight per size), :func:`tail_energy` of this
    process's vectors (every view).
    """
    sizes, scale = list(dims), matryoshka_weights(dims, weights)
    tail = list(energy) if energy is not None and any(energy) else None  # decided once, not every step

    def run(x: StepInputs) -> torch.Tensor:
        total = None
        for d, w in zip(sizes, scale):
            part = w * step(dataclasses.replace(x, z=x.z[..., :d]))  # z: (views, n, d)
            total = part if total is None else total + part
        if distill > 0:
            total = total + distill * ranking_distillation(x.z[0], x.gather(x.z[1]), sizes, temperature)
        if tail is not None:
            total = total + tail_energy(x.z, sizes, tail)
        return total  # type: ignore[return-value]

    return run
