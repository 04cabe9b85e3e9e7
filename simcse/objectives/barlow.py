"""Barlow Twins: redundancy reduction on the cross-correlation of two views."""

from __future__ import annotations

import torch


def _standardise(z: torch.Tensor, eps: float) -> torch.Tensor:
    """Per-dimension standardisation along the batch, as ``BatchNorm1d(affine=False)`` in training."""
    mean = z.mean(dim=0, keepdim=True)  # (1, dim)
    var = z.var(dim=0, unbiased=False, keepdim=True)  # (1, dim)
    return (z - mean) / torch.sqrt(var + eps)  # (n, dim)


def barlow_twins(
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    *,
    off_diagonal_weight: float = 5e-3,
    eps: float = 1e-5,
) -> torch.Tensor:
    """Barlow Twins loss (Zbontar et al., 2021, "Barlow Twins: Self-Supervised Learning via
    Redundancy Reduction", Eq. 1-2; ``lambda = 5e-3`` as in the paper).

    Each view is standardised along the batch dimension; ``C = z_a^T z_b / n`` is their
    cross-correlation ``(dim, dim)``. The loss ``sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2``
    makes each dimension invariant across views and decorrelates different dimensions.

    Needs a batch of at least 2. Across processes the paper all-reduces ``C``; here, pass views
    gathered with gradient instead.

    Args:
        view_a: ``(n, dim)`` embeddings of the first view.
        view_b: ``(n, dim)`` embeddings of the second view.
        off_diagonal_weight: ``lambda``, the weight of the redundancy-reduction term.
        eps: Added to the variance, as in batch norm.

    Returns:
        The loss (a scalar, summed over the ``dim x dim`` entries, not averaged).

    Example:
        >>> z1, z2 = torch.randn(16, 8), torch.randn(16, 8)
        >>> barlow_twins(z1, z2).shape
        torch.Size([])
    """
    n = view_a.shape[0]
    c = _standardise(view_a, eps).T @ _standardise(view_b, eps) / n  # (dim, dim)
    diagonal = torch.diagonal(c)  # (dim,)
    on_diag = (1.0 - diagonal).pow(2).sum()
    off_diag = c.pow(2).sum() - diagonal.pow(2).sum()
    return on_diag + off_diagonal_weight * off_diag
