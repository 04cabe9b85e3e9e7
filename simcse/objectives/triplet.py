"""Triplet-based metric learning: the triplet loss (with batch-hard mining) and lifted structure."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simcse.objectives.distances import Distance, distance_matrix, paired_distance
from simcse.objectives.inputs import StepInputs


def triplet_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    *,
    margin: float = 0.2,
    distance: Distance = "cosine",
    batch_hard: bool = False,
) -> torch.Tensor:
    """Triplet margin loss ``max(0, d(a, p) - d(a, n) + margin)`` (Schroff et al., 2015, FaceNet,
    Eq. 1, whose margin 0.2 is the default; batch-hard mining from Hermans et al., 2017, "In Defense
    of the Triplet Loss").

    Without mining, ``negatives[i]`` is anchor ``i``'s negative. With ``batch_hard=True`` anchor
    ``i``'s hardest positive is its own positive (the only one it has) and its negative is the
    closest non-matching candidate: any ``positives[j]`` with ``j != i`` or any row of ``negatives``.

    Args:
        anchors: ``(n, dim)``.
        positives: ``(n, dim)``; row ``i`` matches anchor ``i``.
        negatives: ``(n, dim)``; required unless ``batch_hard``.
        margin: Hinge margin, in units of ``distance``.
        distance: ``"cosine"`` (``1 - cos``) or ``"euclidean"``.
        batch_hard: Mine the hardest in-batch negative per anchor.

    Returns:
        Mean hinge over anchors (a scalar).

    Example:
        >>> a, p, n = torch.randn(4, 8), torch.randn(4, 8), torch.randn(4, 8)
        >>> triplet_loss(a, p, n).shape
        torch.Size([])
    """
    d_pos = paired_distance(anchors, positives, distance)  # (n,)
    if not batch_hard:
        if negatives is None:
            raise ValueError("triplet_loss needs negatives unless batch_hard=True")
        d_neg = paired_distance(anchors, negatives, distance)  # (n,)
    else:
        n = anchors.shape[0]
        d = distance_matrix(anchors, positives, distance)  # (n, n)
        d = d.masked_fill(torch.eye(n, dtype=torch.bool, device=d.device), float("inf"))  # own positive excluded
        if negatives is not None:
            d = torch.cat([d, distance_matrix(anchors, negatives, distance)], dim=1)  # (n, 2n)
        d_neg = d.min(dim=1).values  # (n,)
    return F.relu(d_pos - d_neg + margin).mean()


def lifted_structure_loss(anchors: torch.Tensor, positives: torch.Tensor, *, margin: float = 1.0) -> torch.Tensor:
    """Smooth lifted structured loss (Song et al., 2016, "Deep Metric Learning via Lifted Structured
    Feature Embedding", Eq. 4; margin ``alpha = 1`` as in the paper).

    The batch holds ``n`` positive pairs ``(a_k, p_k)``; every other embedding of the batch (``2n - 2``
    of them) is a negative of both ``a_k`` and ``p_k``. With Euclidean distances ``D``:
    ``J_k = log(sum_{x in N(a_k)} exp(alpha - D(a_k, x)) + sum_{y in N(p_k)} exp(alpha - D(p_k, y))) + D(a_k, p_k)``
    and the loss is ``sum_k max(0, J_k)^2 / (2n)``.

    Args:
        anchors: ``(n, dim)``, ``n >= 2``.
        positives: ``(n, dim)``; row ``k`` forms a positive pair with ``anchors[k]``.
        margin: ``alpha``.

    Returns:
        The loss (a scalar).

    Example:
        >>> lifted_structure_loss(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """
    n = anchors.shape[0]
    z = torch.cat([anchors, positives], dim=0)  # (2n, dim)
    d = distance_matrix(z, z, "euclidean")  # (2n, 2n)
    pair = torch.arange(2 * n, device=z.device) % n  # (2n,): the pair each row belongs to
    same_pair = pair[:, None] == pair[None, :]  # (2n, 2n)
    neg = (margin - d).masked_fill(same_pair, float("-inf"))  # (2n, 2n): only negatives count
    lse = torch.logsumexp(neg, dim=1)  # (2n,)
    j = torch.logaddexp(lse[:n], lse[n:]) + paired_distance(anchors, positives, "euclidean")  # (n,)
    return F.relu(j).pow(2).sum() / (2 * n)


def triplet_step(x: StepInputs) -> torch.Tensor:
    """``(z0, z1, z2)`` with hard negatives; without them, batch-hard mining over the global batch."""
    if x.hard is not None:
        return x.loss(x.z[0], x.z[1], x.hard)
    return x.loss(x.gather(x.z[0]), x.gather(x.z[1]), batch_hard=True)
