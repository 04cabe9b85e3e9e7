"""Guided in-batch false-negative filtering (GISTEmbed): a frozen guide says which negatives to leave out.

Solatorio (2024), "GISTEmbed: Guided In-sample Selection of Training Negatives". With small or noisy data,
an in-batch "negative" is often a paraphrase of the anchor; a guide model that scores a candidate as more
similar to the anchor than the anchor's own positive (minus a margin) marks it a false negative, and it is
left out of the softmax. The anchor's own positive is never left out.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def guided_false_negatives(
    guide_anchors: torch.Tensor,
    guide_positives: torch.Tensor,
    guide_hard_negatives: torch.Tensor | None = None,
    *,
    margin: float = 0.0,
    label_offset: int = 0,
) -> torch.Tensor:
    """Which candidates of each anchor are false negatives by the guide: a boolean ``(n, m)`` or ``(n, 2m)``.

    Laid out as :func:`simcse.objectives.info_nce`'s logits (positives, then hard negatives), so that
    ``info_nce(..., false_negatives=mask)`` leaves them out. Candidate ``j`` of anchor ``i`` is masked when
    ``cos_guide(i, j) > cos_guide(i, own positive) - margin``; the own positive is never masked.

    Args:
        guide_anchors: The guide's embeddings of this process's anchors ``(n, dim)``.
        guide_positives: The guide's embeddings of the (gathered) positives ``(m, dim)``.
        guide_hard_negatives: The same of the hard negatives ``(m, dim)``, or None.
        margin: Masks negatives scored above the positive minus this (sentence-transformers' "absolute").
        label_offset: Where this process's anchors start among the gathered rows.

    Example:
        >>> positives = torch.tensor([[0.6, 0.8, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
        >>> guided_false_negatives(torch.eye(3), positives).tolist()
        [[False, True, False], [True, False, False], [False, False, False]]
    """
    a = F.normalize(guide_anchors.float(), dim=-1)  # (n, dim)
    candidates = guide_positives if guide_hard_negatives is None else torch.cat([guide_positives, guide_hard_negatives])
    sims = a @ F.normalize(candidates.float(), dim=-1).T  # (n, m) or (n, 2m)
    rows = torch.arange(a.shape[0], device=a.device)  # (n,)
    own = sims[rows, rows + label_offset]  # (n,): the guide's anchor-positive similarity
    mask = sims > (own - margin)[:, None]  # (n, m[+m])
    return mask & ~F.one_hot(rows + label_offset, sims.shape[1]).bool()  # never the own positive
