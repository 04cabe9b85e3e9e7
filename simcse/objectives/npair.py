"""The multi-class N-pair loss: softmax over dot products with in-batch negatives."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simcse.objectives.inputs import StepInputs


def n_pair_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    *,
    l2_weight: float = 0.002,
    label_offset: int = 0,
) -> torch.Tensor:
    """Multi-class N-pair loss (Sohn, 2016, "Improved Deep Metric Learning with Multi-class N-pair
    Loss Objective", Eq. 6; ``lambda = 0.002`` as in the paper).

    ``log(1 + sum_{j != i} exp(a_i . p_j - a_i . p_i))`` is the cross-entropy of anchor ``i`` picking
    its positive among all positives by *unnormalised* dot product. Since nothing bounds the norms,
    ``l2_weight * (mean ||a||^2 + mean ||p||^2) / 4`` is added, scaled as in the reference
    TensorFlow implementation (``tf.contrib.losses.metric_learning.npairs_loss``). Set it to 0 to
    disable.

    Args:
        anchors: ``(n, dim)``.
        positives: ``(m, dim)``; anchor ``i``'s positive is row ``label_offset + i``.
        l2_weight: Weight of the embedding-norm regulariser.
        label_offset: Where this process's anchors start among gathered positives (rank x n).

    Returns:
        Mean cross-entropy plus the regulariser (a scalar).

    Example:
        >>> n_pair_loss(torch.randn(4, 8), torch.randn(4, 8)).shape
        torch.Size([])
    """
    n = anchors.shape[0]
    logits = anchors @ positives.T  # (n, m)
    labels = torch.arange(n, device=anchors.device) + label_offset  # (n,)
    loss = F.cross_entropy(logits, labels)
    if l2_weight:
        norms = anchors.pow(2).sum(-1).mean() + positives.pow(2).sum(-1).mean()
        loss = loss + 0.25 * l2_weight * norms
    return loss


def n_pair_step(x: StepInputs) -> torch.Tensor:
    """Local anchors against every process's positives (dot products, no hard negatives)."""
    return x.loss(x.z[0], x.gather(x.z[1]), label_offset=x.offset)
