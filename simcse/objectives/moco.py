"""MoCo's loss against a queue of past keys (MoCo v2; ESimCSE's in-batch variant)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from simcse.objectives.infonce import cosine_logits, info_nce
from simcse.objectives.inputs import StepInputs


def moco_loss(
    queries: torch.Tensor,
    keys: torch.Tensor,
    queue: torch.Tensor,
    *,
    temperature: float = 0.2,
    in_batch_negatives: bool = False,
    label_offset: int = 0,
) -> torch.Tensor:
    """InfoNCE of queries against their keys and a queue of negatives (He et al., 2020, "Momentum
    Contrast", Eq. 1; Chen et al., 2020, MoCo v2, whose temperature 0.2 is the default).

    Standard form: query ``i`` scores its own key (logit 0) against every queued key:
    logits ``(n, 1 + K)``, label 0. With ``in_batch_negatives=True`` (ESimCSE, Wu et al., 2022):
    query ``i`` scores every key of the batch and every queued key: logits ``(n, m + K)``, label
    ``label_offset + i``, i.e. SimCSE's InfoNCE with the queue as extra candidates. Similarities are
    cosines; the queue must hold keys from the momentum encoder (see :class:`KeyQueue`), and this
    batch's keys are enqueued *after* the loss.

    Args:
        queries: ``(n, dim)`` from the online encoder.
        keys: ``(m, dim)`` (usually from :class:`MomentumEncoder`); query ``i``'s key is row
            ``label_offset + i``. ``m > n`` when keys are gathered from several processes.
        queue: ``(K, dim)`` negatives, e.g. ``KeyQueue.get()`` (``K`` may be 0).
        temperature: Softmax temperature tau.
        in_batch_negatives: Also use the other keys of the batch as negatives.
        label_offset: Where this process's queries start among ``keys`` (rank x n).

    Returns:
        Mean cross-entropy over queries (a scalar).

    Example:
        >>> q, k, queue = torch.randn(4, 8), torch.randn(4, 8), torch.randn(16, 8)
        >>> moco_loss(q, k, queue).shape
        torch.Size([])
    """
    if in_batch_negatives:
        candidates = torch.cat([keys, queue.to(keys.dtype)], dim=0)  # (m + K, dim)
        return info_nce(queries, candidates, temperature=temperature, label_offset=label_offset)
    n = queries.shape[0]
    own_keys = keys[label_offset : label_offset + n]  # (n, dim)
    pos = F.cosine_similarity(queries, own_keys, dim=-1, eps=1e-12).unsqueeze(1) / temperature  # (n, 1)
    neg = cosine_logits(queries, queue.to(queries.dtype), temperature)  # (n, K)
    logits = torch.cat([pos, neg], dim=1)  # (n, 1 + K)
    labels = torch.zeros(n, dtype=torch.long, device=queries.device)  # (n,)
    return F.cross_entropy(logits, labels)


def moco_step(x: StepInputs) -> torch.Tensor:
    """Symmetrised (MoCo v3): each view's queries against the momentum encoder's keys of the other view,
    with the batch's keys and the queue as negatives (ESimCSE); view 1's keys are enqueued after the step."""
    keys = x.target_views()  # (2, n, dim), no graph
    queue = x.state.get()  # (filled, dim)
    loss = 0.5 * (
        x.loss(x.z[0], x.gather_no_grad(keys[1]), queue, in_batch_negatives=True, label_offset=x.offset)
        + x.loss(x.z[1], x.gather_no_grad(keys[0]), queue, in_batch_negatives=True, label_offset=x.offset)
    )
    x.enqueue = keys[1]
    return loss
