"""SwAV: online clustering with equal-partition codes and swapped prediction."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from simcse.objectives.inputs import StepInputs

AllReduce = Callable[[torch.Tensor], torch.Tensor]


@torch.no_grad()
def sinkhorn_knopp(
    scores: torch.Tensor, epsilon: float = 0.05, n_iters: int = 3, all_reduce: AllReduce | None = None
) -> torch.Tensor:
    """Soft codes with an equal partition of the batch over prototypes (Caron et al., 2020,
    "Unsupervised Learning of Visual Features by Contrasting Cluster Assignments", Sec. 3.1, Alg. 1).

    Starts from ``Q = exp(scores / epsilon)`` and alternately rescales prototype totals to ``1/K``
    and sample totals to ``1/B``; finally scaled by ``B`` so that each row (sample) sums to 1
    while each column (prototype) sums to about ``B / K`` (exactly in the limit of iterations).

    Args:
        scores: ``(B, K)`` prototype scores (cosines) of this process's samples; not differentiated.
        epsilon: Entropy regularisation; smaller gives harder codes.
        n_iters: Sinkhorn iterations (3 in the paper).
        all_reduce: Optional function summing a tensor over processes; the partition is then over
            the global batch, as in the paper's distributed code. ``B`` is the global batch size.

    Returns:
        Codes ``Q`` of shape ``(B_local, K)``, rows summing to 1, in the scores' dtype (float32 for
        half precision). Computed in float64: finite while ``(max - min score) / epsilon < ~700``.

    Example:
        >>> q = sinkhorn_knopp(torch.randn(8, 3))
        >>> torch.allclose(q.sum(1), torch.ones(8))  # each sample's assignment is a distribution
        True
    """
    reduce = all_reduce or (lambda t: t)
    out_dtype = torch.float32 if scores.dtype in (torch.float16, torch.bfloat16) else scores.dtype
    # the (B, K) plan is tiny: float64 keeps exp from underflowing down to epsilon ~ score range / 700
    scores = scores.double()
    # any shift common to all processes cancels in the normalisation; it only keeps exp from overflowing
    shift = scores.max()
    if all_reduce is not None:  # only sums travel between processes: shift by the mean of the maxima
        shift = all_reduce(shift.reshape(1)) / all_reduce(torch.ones(1, dtype=scores.dtype, device=scores.device))
    q = torch.exp((scores - shift) / epsilon).T  # (K, B_local)
    k = q.shape[0]
    b = reduce(torch.tensor([q.shape[1]], dtype=q.dtype, device=q.device))  # (1,) global batch size
    q = q / reduce(q.sum().reshape(1))
    for _ in range(n_iters):
        q = q / reduce(q.sum(dim=1, keepdim=True)) / k  # (K, B): each prototype gets 1/K
        q = q / q.sum(dim=0, keepdim=True) / b  # (K, B): each sample gets 1/B
    return (q * b).T.to(out_dtype)  # (B_local, K)


class Prototypes(nn.Module):
    """``K`` trainable prototype vectors, scored by cosine (SwAV, Sec. 3.1).

    A linear map without bias whose weight rows are L2-normalised on every call (functionally, so
    the gradient flows through the normalisation); inputs are normalised too.

    Args:
        dim: Embedding dimension.
        n_prototypes: Number of prototypes ``K`` (3000 for ImageNet in the paper).
    """

    def __init__(self, dim: int, n_prototypes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_prototypes, dim))
        nn.init.normal_(self.weight)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, dim) -> (n, K)`` cosine scores."""
        return F.normalize(z, dim=-1) @ F.normalize(self.weight, dim=-1).T  # (n, K)


def swapped_prediction(scores: torch.Tensor, codes: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """``-mean_i sum_k codes_ik log softmax(scores_i / temperature)_k``: cross-entropy against fixed codes.

    Args:
        scores: ``(n, K)`` prototype scores of one view.
        codes: ``(n, K)`` codes computed from the *other* view (treated as constants).
        temperature: Softmax temperature.
    """
    log_p = F.log_softmax(scores / temperature, dim=1)  # (n, K)
    return -(codes.detach() * log_p).sum(dim=1).mean()


def swav_loss(
    view_a: torch.Tensor,
    view_b: torch.Tensor,
    prototypes: Prototypes,
    *,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    n_iters: int = 3,
    all_reduce: AllReduce | None = None,
) -> torch.Tensor:
    """SwAV's swapped prediction over two views (Caron et al., 2020, Eq. 1-3; defaults from the paper).

    Codes come from each view's prototype scores by :func:`sinkhorn_knopp` (no gradient); each view's
    softmax over prototype scores predicts the *other* view's codes; the two terms are averaged.
    The paper's queue of past scores and freezing of the prototypes in the first epoch are left to
    the caller.

    Args:
        view_a: ``(n, dim)`` embeddings of the first view.
        view_b: ``(n, dim)`` embeddings of the second view.
        prototypes: The :class:`Prototypes` module (trained with the encoder).
        temperature: Softmax temperature of the prediction.
        epsilon: Sinkhorn entropy regularisation.
        n_iters: Sinkhorn iterations.
        all_reduce: See :func:`sinkhorn_knopp`.

    Returns:
        The mean swapped-prediction cross-entropy (a scalar).

    Example:
        >>> protos = Prototypes(dim=8, n_prototypes=5)
        >>> swav_loss(torch.randn(4, 8), torch.randn(4, 8), protos).shape
        torch.Size([])
    """
    scores_a, scores_b = prototypes(view_a), prototypes(view_b)  # (n, K) each
    codes_a = sinkhorn_knopp(scores_a, epsilon, n_iters, all_reduce)  # (n, K)
    codes_b = sinkhorn_knopp(scores_b, epsilon, n_iters, all_reduce)  # (n, K)
    loss_a = swapped_prediction(scores_a, codes_b, temperature)  # view a predicts b's codes
    loss_b = swapped_prediction(scores_b, codes_a, temperature)
    return 0.5 * (loss_a + loss_b)


def swav_step(x: StepInputs) -> torch.Tensor:
    """Swapped prediction over the global batch's two views with the model's prototypes."""
    return x.loss(x.gather(x.z[0]), x.gather(x.z[1]), x.modules.prototypes)
