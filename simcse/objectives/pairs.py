"""Losses on labelled pairs ``(a_i, b_i, y_i)``, ``y_i = 1`` similar and ``0`` dissimilar."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simcse.objectives.distances import Distance, paired_distance
from simcse.objectives.inputs import StepInputs


def _labels(labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if labels.shape != like.shape[:1]:
        raise ValueError(f"expected one label per pair, shape ({like.shape[0]},), got {tuple(labels.shape)}")
    return labels.to(like.dtype)


def pair_contrastive_loss(
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.5,
    distance: Distance = "cosine",
) -> torch.Tensor:
    """The margin contrastive loss (Hadsell, Chopra & LeCun, 2006, "Dimensionality Reduction by
    Learning an Invariant Mapping", Eq. 4).

    ``(y d^2 + (1 - y) max(0, margin - d)^2) / 2`` averaged over pairs: similar pairs are pulled
    together, dissimilar ones pushed beyond ``margin``. Note the label convention: here ``y = 1``
    means *similar* (the paper uses ``Y = 0`` for similar pairs).

    Args:
        view_a: ``(n, dim)``.
        view_b: ``(n, dim)``; row ``i`` pairs with ``view_a[i]``.
        labels: ``(n,)`` 0/1 (float or int).
        margin: Distance beyond which dissimilar pairs cost nothing.
        distance: ``"cosine"`` (``1 - cos``) or ``"euclidean"``.

    Returns:
        Mean over pairs (a scalar).

    Example:
        >>> pair_contrastive_loss(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([1, 0, 1, 0])).shape
        torch.Size([])
    """
    d = paired_distance(view_a, view_b, distance)  # (n,)
    y = _labels(labels, d)  # (n,)
    return 0.5 * (y * d.pow(2) + (1.0 - y) * F.relu(margin - d).pow(2)).mean()


def logistic_loss(
    view_a: torch.Tensor, view_b: torch.Tensor, labels: torch.Tensor, *, temperature: float = 0.1
) -> torch.Tensor:
    """Binary cross-entropy on pair similarity: ``BCE(sigmoid(cos(a_i, b_i) / temperature), y_i)``.

    The pair-wise logistic loss used for verification (e.g. Sentence-BERT-style binary pair
    classification; SigLIP, Zhai et al., 2023, applies it to all in-batch pairs with a learned bias).

    Args:
        view_a: ``(n, dim)``.
        view_b: ``(n, dim)``; row ``i`` pairs with ``view_a[i]``.
        labels: ``(n,)`` 0/1, or soft targets in ``[0, 1]``.
        temperature: Divides the cosine before the sigmoid.

    Returns:
        Mean binary cross-entropy over pairs (a scalar).

    Example:
        >>> logistic_loss(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([1, 0, 1, 0])).shape
        torch.Size([])
    """
    logits = F.cosine_similarity(view_a, view_b, dim=-1, eps=1e-12) / temperature  # (n,)
    return F.binary_cross_entropy_with_logits(logits, _labels(labels, logits))


def circle_loss(
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    labels: torch.Tensor,
    *,
    margin: float = 0.25,
    gamma: float = 256.0,
) -> torch.Tensor:
    """Circle loss, pair-wise form (Sun et al., 2020, "Circle Loss: A Unified Perspective of Pair
    Similarity Optimization", Eq. 6-8; ``m = 0.25``, ``gamma = 256`` as in the paper).

    With ``s`` the cosine of each pair, positive pairs (``y = 1``) ``s_p`` and negative pairs
    ``s_n`` of the batch form one set:
    ``log(1 + sum_n exp(gamma a_n (s_n - D_n)) sum_p exp(-gamma a_p (s_p - D_p)))`` with
    ``a_p = max(0, O_p - s_p)``, ``a_n = max(0, s_n - O_n)``, ``O_p = 1 + m``, ``O_n = -m``,
    ``D_p = 1 - m``, ``D_n = m``. The weights ``a`` are constants for the gradient (detached),
    as in the paper. A batch without positive or without negative pairs gives 0.

    Args:
        view_a: ``(n, dim)``.
        view_b: ``(n, dim)``; row ``i`` pairs with ``view_a[i]``.
        labels: ``(n,)`` 0/1.
        margin: Relaxation ``m``.
        gamma: Scale factor.

    Returns:
        The loss of the batch (a scalar).

    Example:
        >>> circle_loss(torch.randn(4, 8), torch.randn(4, 8), torch.tensor([1, 0, 1, 0])).shape
        torch.Size([])
    """
    s = F.cosine_similarity(view_a, view_b, dim=-1, eps=1e-12)  # (n,)
    positive = _labels(labels, s) > 0.5  # (n,)
    alpha_p = F.relu(1.0 + margin - s.detach())  # (n,)
    alpha_n = F.relu(s.detach() + margin)  # (n,)
    logit_p = (-gamma * alpha_p * (s - (1.0 - margin))).masked_fill(~positive, float("-inf"))  # (n,)
    logit_n = (gamma * alpha_n * (s - margin)).masked_fill(positive, float("-inf"))  # (n,)
    return F.softplus(torch.logsumexp(logit_p, dim=0) + torch.logsumexp(logit_n, dim=0))


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
    labels = (torch.arange(2 * n, device=anchors.device) < n).to(anchors.dtype)  # (2n,): 1 then 0, made on the device
    return torch.cat([anchors, anchors]), torch.cat([positives, negatives]), labels  # (2n, dim) x 2, (2n,)


def labelled_pairs_step(x: StepInputs) -> torch.Tensor:
    """The pair loss over the global batch's labelled pairs (:func:`labelled_pairs`)."""
    hard = None if x.hard is None else x.gather(x.hard)
    return x.loss(*labelled_pairs(x.gather(x.z[0]), x.gather(x.z[1]), hard))
