"""InfoNCE, SimCSE's in-batch contrastive objective, as a pure function of embeddings."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simcse.objectives.inputs import StepInputs


def cosine_logits(anchors: torch.Tensor, candidates: torch.Tensor, temperature: float) -> torch.Tensor:
    """``cos(anchors_i, candidates_j) / temperature`` as one fused normalise + matmul: ``(n, m)``, float32 or wider.

    Computed in float32 even under bf16 / fp16 autocast: bfloat16 resolves cosines near 1 only to
    about 0.004, which the temperature (1/0.05) would turn into logit steps of 0.08.
    """
    dtype = torch.promote_types(torch.promote_types(anchors.dtype, candidates.dtype), torch.float32)  # float64 stays
    with torch.autocast(device_type=anchors.device.type, enabled=False):
        a = F.normalize(anchors.to(dtype), dim=-1)  # (n, dim)
        c = F.normalize(candidates.to(dtype), dim=-1)  # (m, dim)
        return a @ c.T / temperature  # (n, m)


def info_nce(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    hard_negatives: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    hard_negative_weight: float = 0.0,
    label_offset: int = 0,
    false_negatives: torch.Tensor | None = None,
) -> torch.Tensor:
    """SimCSE's InfoNCE loss with in-batch negatives (Gao et al., 2021, Eq. 1 and 5).

    Anchor ``i`` must pick its own positive among all ``positives`` (and all ``hard_negatives`` when
    given: logits ``(n, 2m)``). ``hard_negative_weight`` (log alpha) is added to the logit of each
    anchor's own hard negative only.

    Args:
        anchors: ``(n, dim)``.
        positives: ``(m, dim)`` candidates; anchor ``i``'s positive is row ``label_offset + i``.
        hard_negatives: Optional ``(m, dim)``; row ``label_offset + i`` belongs to anchor ``i``.
        temperature: Softmax temperature tau.
        hard_negative_weight: log(alpha) added to each anchor's own hard-negative logit.
        label_offset: Where this process's anchors start among gathered candidates (rank x n).
        false_negatives: Optional boolean ``(n, m)`` / ``(n, 2m)`` laid out as the logits: candidates left out
            of the softmax (:func:`simcse.objectives.guided.guided_false_negatives`, GISTEmbed).

    Returns:
        Mean cross-entropy over anchors (a scalar).

    Example:
        >>> z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
        >>> info_nce(z1, z2).shape
        torch.Size([])
    """
    n = anchors.shape[0]
    labels = torch.arange(n, device=anchors.device) + label_offset  # (n,)
    logits = cosine_logits(anchors, positives, temperature)  # (n, m)
    if hard_negatives is not None:
        neg = cosine_logits(anchors, hard_negatives, temperature)  # (n, m)
        if hard_negative_weight != 0.0:
            # add log(alpha) at (i, offset + i) only: a one-hot bump, no host sync, no in-place edit
            neg = neg + hard_negative_weight * F.one_hot(labels, neg.shape[1]).to(neg.dtype)
        logits = torch.cat([logits, neg], dim=1)  # (n, 2m)
    if false_negatives is not None:
        logits = logits.masked_fill(false_negatives, float("-inf"))  # (n, m[+m]); never the label (the mask's rule)
    return F.cross_entropy(logits, labels)


def infonce_step(x: StepInputs) -> torch.Tensor:
    """SimCSE: local anchors against the positives (and hard negatives) of every process, labels offset by rank."""
    hard = None if x.hard is None else x.gather(x.hard)  # (world * n, dim)
    masked = {} if x.false_negatives is None else {"false_negatives": x.false_negatives}
    return x.loss(x.z[0], x.gather(x.z[1]), hard, label_offset=x.offset, **masked)
