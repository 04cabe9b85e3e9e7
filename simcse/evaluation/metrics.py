"""Evaluation math: correlations, SentEval aggregation, alignment and uniformity. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import pearsonr, spearmanr


def cosine_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, dim)`` arrays -> ``(n,)`` (float64)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)


def spearman(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Spearman rank correlation (ties get average ranks), scipy's definition."""
    return float(spearmanr(gold, pred)[0])


def pearson(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Pearson correlation."""
    return float(pearsonr(gold, pred)[0])


def aggregate(subsets: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    """SentEval's STS aggregation over subsets of ``(gold, predicted)`` arrays.

    Returns Spearman x 100 for each subset, ``all`` (one correlation over every pair pooled, as the
    SimCSE paper reports STS12-16), ``mean`` and ``wmean`` (weighted by subset size).
    """
    out = {name: 100 * spearman(g, p) for name, (g, p) in subsets.items()}
    sizes = np.array([len(g) for g, _ in subsets.values()], dtype=np.float64)
    values = np.array(list(out.values()))
    gold_all = np.concatenate([g for g, _ in subsets.values()])
    pred_all = np.concatenate([p for _, p in subsets.values()])
    out["all"] = 100 * spearman(gold_all, pred_all)
    out["mean"] = float(values.mean())
    out["wmean"] = float((values * sizes).sum() / sizes.sum())
    return out


def alignment(x: torch.Tensor, y: torch.Tensor, alpha: float = 2.0) -> float:
    """Wang & Isola (2020) alignment: mean ``||f(x) - f(y)||^alpha`` over positive pairs.

    Inputs are ``(n, dim)``; they are L2-normalised here.
    """
    x, y = F.normalize(x.double(), dim=-1), F.normalize(y.double(), dim=-1)
    return float((x - y).norm(dim=1).pow(alpha).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """Wang & Isola (2020) uniformity: ``log mean exp(-t ||f(x) - f(y)||^2)`` over distinct pairs.

    Input is ``(n, dim)``, L2-normalised here; all ``n (n - 1) / 2`` pairs ``i < j`` are used.
    """
    x = F.normalize(x.double(), dim=-1)
    sq = torch.pdist(x, p=2).pow(2)  # (n (n-1) / 2,)
    return float(torch.logsumexp(-t * sq, dim=0) - np.log(sq.numel()))
