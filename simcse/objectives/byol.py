"""Non-contrastive objectives with a predictor: BYOL (EMA target) and SimSiam (stop-gradient)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from simcse.objectives.inputs import StepInputs


class Predictor(nn.Module):
    """BYOL / SimSiam prediction head: Linear -> BatchNorm -> ReLU -> Linear (Grill et al., 2020, Sec. 3.3).

    Args:
        dim: Input and output dimension (the projection size).
        hidden_dim: Hidden width (BYOL: 4096; SimSiam uses a bottleneck, e.g. ``dim // 4``).
    """

    def __init__(self, dim: int, hidden_dim: int = 4096) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(dim, hidden_dim),
            nn.BatchNorm1d(hidden_dim),
            nn.ReLU(inplace=True),
            nn.Linear(hidden_dim, dim),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``(n, dim) -> (n, dim)``, or ``(n, views, dim) -> (n, views, dim)``.

        Stacked views are predicted one view at a time, so batch norm uses each view's own batch
        statistics, as in the papers' separate forward passes per view.
        """
        if z.ndim == 2:
            return self.net(z)  # (n, dim)
        return torch.stack([self.net(z[:, v]) for v in range(z.shape[1])], dim=1)  # (n, views, dim)


def _check_two_views(*tensors: torch.Tensor) -> None:
    for t in tensors:
        if t.ndim != 3 or t.shape[1] != 2:
            raise ValueError(f"expected (batch, 2, dim) tensors (two views per example), got {tuple(t.shape)}")


def byol_loss(online_predictions: torch.Tensor, target_projections: torch.Tensor) -> torch.Tensor:
    """BYOL's normalised MSE ``2 - 2 cos(p, z')``, symmetrised (Grill et al., 2020, "Bootstrap Your
    Own Latent", Eq. 2 and the sum ``L + L~``).

    The online prediction of each view regresses the target projection of the *other* view; the
    targets are detached (stop-gradient; they normally come from a :class:`MomentumEncoder`).

    Args:
        online_predictions: ``(n, 2, dim)``: ``predictor(projector(encoder(view_v)))`` per view.
        target_projections: ``(n, 2, dim)``: the EMA target network's projections per view.

    Returns:
        ``mean_i [(2 - 2 cos(p_i1, z'_i2)) + (2 - 2 cos(p_i2, z'_i1))]``, in ``[0, 8]`` (a scalar).

    Example:
        >>> p, z = torch.randn(4, 2, 8), torch.randn(4, 2, 8)
        >>> byol_loss(p, z).shape
        torch.Size([])
    """
    _check_two_views(online_predictions, target_projections)
    p = F.normalize(online_predictions, dim=-1)  # (n, 2, dim)
    z = F.normalize(target_projections.detach(), dim=-1).flip(1)  # (n, 2, dim): the other view's target
    cos = (p * z).sum(-1)  # (n, 2)
    return (2.0 - 2.0 * cos).sum(1).mean()


def simsiam_loss(predictions: torch.Tensor, projections: torch.Tensor) -> torch.Tensor:
    """SimSiam's symmetrised negative cosine with stop-gradient (Chen & He, 2021, "Exploring Simple
    Siamese Representation Learning", Eq. 3-4).

    Both branches share one encoder (no EMA); collapse is avoided by the stop-gradient on the
    projection branch alone: ``L = D(p1, sg(z2)) / 2 + D(p2, sg(z1)) / 2`` with ``D = -cos``.

    Args:
        predictions: ``(n, 2, dim)``: ``predictor(projector(encoder(view_v)))`` per view.
        projections: ``(n, 2, dim)``: ``projector(encoder(view_v))`` of the same forward pass.

    Returns:
        The mean over examples, in ``[-1, 1]`` (a scalar).

    Example:
        >>> z = torch.randn(4, 2, 8)
        >>> simsiam_loss(z + 0.1, z).shape
        torch.Size([])
    """
    _check_two_views(predictions, projections)
    p = F.normalize(predictions, dim=-1)  # (n, 2, dim)
    z = F.normalize(projections.detach(), dim=-1).flip(1)  # (n, 2, dim): stop-gradient, the other view
    return -(p * z).sum(-1).mean()  # mean over (n, 2) = the two halves averaged


def _predictions(x: StepInputs) -> tuple[torch.Tensor, torch.Tensor]:
    online = x.z.transpose(0, 1)  # (n, 2, dim)
    if x.predictions is not None:  # computed in the model's forward (so DDP sees the predictor)
        return x.predictions.transpose(0, 1), online  # (n, 2, dim) x 2
    predictor = x.modules.predictor if x.modules is not None else None
    return (predictor(online) if predictor is not None else online), online  # (n, 2, dim) x 2


def byol_step(x: StepInputs) -> torch.Tensor:
    """The predictor's output of each view regresses the momentum encoder's output of the other view."""
    predictions, _ = _predictions(x)
    return x.loss(predictions, x.target_views().transpose(0, 1))  # targets (n, 2, dim)


def simsiam_step(x: StepInputs) -> torch.Tensor:
    """As BYOL with the same forward's other view as target (the loss stops its gradient)."""
    predictions, online = _predictions(x)
    return x.loss(predictions, online)
