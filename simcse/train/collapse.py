"""Watch for representation collapse: per-dimension spread and uniformity of the embeddings."""

from __future__ import annotations

import logging
import math

import torch
import torch.nn.functional as F

from simcse.evaluation.metrics import uniformity

logger = logging.getLogger(__name__)


@torch.no_grad()
def embedding_std(z: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension std (over the batch) of L2-normalised embeddings.

    SimSiam's collapse indicator (Chen & He, 2021, Sec. 4.1): 0 when all embeddings coincide, about
    ``1 / sqrt(dim)`` when they spread like an isotropic Gaussian.

    Args:
        z: ``(n, dim)`` embeddings, ``n >= 2``.

    Example:
        >>> round(embedding_std(torch.randn(4096, 64)) * 8, 1)  # 1/sqrt(64) = 1/8
        1.0
    """
    return float(F.normalize(z.double(), dim=-1).std(dim=0).mean())  # std over the batch: (dim,) -> scalar


class CollapseMonitor:
    """Flags collapsed embeddings from their spread and uniformity; warns once.

    Each :meth:`update` computes ``embedding_std`` (see :func:`embedding_std`) and the uniformity
    ``log mean exp(-2 ||x - y||^2)`` over distinct pairs of normalised embeddings (Wang & Isola,
    2020). The batch counts as collapsed when ``std < std_factor / sqrt(dim)`` (default: a tenth of
    the isotropic value) or ``uniformity > max_uniformity`` (default -0.1: the mean squared distance
    is below ~0.05, i.e. cosines above ~0.975; isotropic embeddings give about -4 and trained
    SimCSE about -2.5, anisotropic pre-trained BERT about -0.5 to -1.5). The first time, a
    warning is logged naming the metric and its value; :attr:`collapsed` always reflects the
    latest update, for the trainer to record.

    Args:
        std_factor: Collapse when ``std < std_factor / sqrt(dim)``.
        max_uniformity: Collapse when uniformity exceeds this (uniformity is at most 0).

    Example:
        >>> monitor = CollapseMonitor()
        >>> monitor.update(torch.randn(32, 16))["collapsed"]
        0.0
    """

    def __init__(self, std_factor: float = 0.1, max_uniformity: float = -0.1) -> None:
        self.std_factor = std_factor
        self.max_uniformity = max_uniformity
        self.collapsed = False
        self.warned = False

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor) -> dict[str, float]:
        """Measure ``embeddings`` ``(n, dim)``, ``n >= 2``, and return the metrics.

        Returns:
            ``{"embedding_std", "uniformity", "collapsed"}`` as floats (``collapsed`` is 0 or 1).
        """
        if embeddings.ndim != 2 or embeddings.shape[0] < 2:
            raise ValueError(f"expected (n >= 2, dim) embeddings, got {tuple(embeddings.shape)}")
        z = embeddings.detach()
        std, unif = embedding_std(z), uniformity(z)
        min_std = self.std_factor / math.sqrt(z.shape[1])
        reasons = []
        if std < min_std:
            reasons.append(f"embedding_std={std:.3g} < {min_std:.3g} ({self.std_factor} / sqrt(dim))")
        if unif > self.max_uniformity:
            reasons.append(f"uniformity={unif:.3g} > {self.max_uniformity:.3g}")
        self.collapsed = bool(reasons)
        if self.collapsed and not self.warned:
            self.warned = True
            logger.warning(
                "Embeddings look collapsed: %s. All inputs map to nearly the same vector; check the "
                "learning rate, temperature, predictor / momentum settings. (Warned once.)",
                "; ".join(reasons),
            )
        return {"embedding_std": std, "uniformity": unif, "collapsed": float(self.collapsed)}
