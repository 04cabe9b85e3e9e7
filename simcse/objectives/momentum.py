"""Exponential moving average (momentum) targets, shared by MoCo, ESimCSE and BYOL."""

from __future__ import annotations

import copy
import math
from typing import Any

import torch
from torch import nn


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, momentum: float) -> None:
    """In place ``p_t = m * p_t + (1 - m) * p_o`` for every parameter; buffers are copied.

    Works on any pair of modules with the same structure (same parameter order and shapes). Buffers
    (e.g. batch-norm running statistics) are copied rather than averaged, as in BYOL's reference code.

    Args:
        target: The momentum (EMA) module, updated in place.
        online: The module trained by gradient descent.
        momentum: ``m`` in ``[0, 1]``; 0 copies ``online``, 1 freezes ``target``.
    """
    if not 0.0 <= momentum <= 1.0:
        raise ValueError(f"momentum must be in [0, 1], got {momentum}")
    for p_t, p_o in zip(target.parameters(), online.parameters(), strict=True):
        p_t.mul_(momentum).add_(p_o.detach(), alpha=1.0 - momentum)
    for b_t, b_o in zip(target.buffers(), online.buffers(), strict=True):
        b_t.copy_(b_o)


def cosine_momentum(step: int, total_steps: int, base: float = 0.996) -> float:
    """BYOL's schedule (Grill et al., 2020, Sec. 3.2): ``1 - (1 - base) (cos(pi k / K) + 1) / 2``.

    Rises from ``base`` at step 0 to 1 at ``total_steps``.
    """
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return 1.0 - (1.0 - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


class MomentumEncoder(nn.Module):
    """A frozen copy of a module, kept as the EMA of the online module (He et al., 2020, MoCo, Eq. 2).

    The copy never requires grad and runs under ``no_grad``; build the optimizer from the online
    module's parameters only. Its parameters live in this module's ``state_dict`` (checkpointed).
    Train/eval mode is the caller's choice (``.train()`` / ``.eval()`` propagate as usual).

    Args:
        online: The module to follow; deep-copied once at construction.
        momentum: ``m`` of :func:`ema_update` (MoCo: 0.999; BYOL: 0.996 with :func:`cosine_momentum`).

    Example:
        >>> online = nn.Linear(8, 4)
        >>> target = MomentumEncoder(online, momentum=0.99)
        >>> keys = target(torch.randn(2, 8))  # (2, 4), no graph
        >>> target.update(online)  # after optimizer.step()
    """

    def __init__(self, online: nn.Module, momentum: float = 0.999) -> None:
        super().__init__()
        self.momentum = momentum
        self.target = copy.deepcopy(online)
        self.target.requires_grad_(False)

    @torch.no_grad()
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        return self.target(*args, **kwargs)

    def update(self, online: nn.Module, momentum: float | None = None) -> None:
        """EMA step towards ``online``; ``momentum`` overrides ``self.momentum`` for this call."""
        ema_update(self.target, online, self.momentum if momentum is None else momentum)
