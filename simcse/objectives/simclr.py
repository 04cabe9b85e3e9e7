"""NT-Xent, SimCLR's symmetric contrastive loss over ``2n`` views."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(view_a: torch.Tensor, view_b: torch.Tensor, *, temperature: float = 0.1) -> torch.Tensor:
    """Normalised temperature-scaled cross-entropy (Chen et al., 2020, "A Simple Framework for
    Contrastive Learning of Visual Representations", Eq. 1; the default temperature is the paper's).

    The ``2n`` views are scored against each other with cosine / temperature. Each view's positive is
    its twin (row ``i`` of the other view); the other ``2n - 2`` views are its negatives. Unlike
    SimCSE's :func:`~simcse.objectives.info_nce`, the anchors' own view also supplies negatives and both
    directions are averaged, so the loss is symmetric in ``view_a`` and ``view_b``.

    Across processes, pass the views gathered with gradient; every process then computes the loss of
    the global batch.

    Args:
        view_a: ``(n, dim)`` first view of each example.
        view_b: ``(n, dim)`` second view; row ``i`` is the twin of ``view_a[i]``.
        temperature: Softmax temperature tau.

    Returns:
        Mean cross-entropy over all ``2n`` views (a scalar).

    Example:
        >>> z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
        >>> nt_xent(z1, z2).shape
        torch.Size([])
    """
    n = view_a.shape[0]
    z = F.normalize(torch.cat([view_a, view_b], dim=0), dim=-1)  # (2n, dim)
    logits = z @ z.T / temperature  # (2n, 2n)
    self_mask = torch.eye(2 * n, dtype=torch.bool, device=z.device)  # (2n, 2n)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a view is never its own candidate
    idx = torch.arange(n, device=z.device)  # (n,)
    labels = torch.cat([idx + n, idx])  # (2n,): view_a[i] <-> view_b[i]
    return F.cross_entropy(logits, labels)
