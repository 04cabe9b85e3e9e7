"""Evaluation math: correlations, SentEval aggregation, alignment and uniformity. Pure functions."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def cosine_pairs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``(n, dim)`` arrays -> ``(n,)`` (float64)."""
    a64, b64 = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    norms = np.linalg.norm(a64, axis=1) * np.linalg.norm(b64, axis=1)
    return (a64 * b64).sum(axis=1) / np.maximum(norms, 1e-12)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """1-based ranks of ``values``, ties sharing the mean of their ranks (``scipy.stats.rankdata``'s default)."""
    x = np.asarray(values, dtype=np.float64).ravel()
    order = np.argsort(x, kind="stable")
    sorted_x = x[order]
    starts = np.flatnonzero(np.r_[True, sorted_x[1:] != sorted_x[:-1]])  # first index of each run of equal values
    ends = np.r_[starts[1:], x.size]  # one past its last
    mean_rank = (starts + ends + 1) / 2.0  # the mean of the 1-based ranks starts+1 .. ends
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def pearson(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Pearson correlation (NaN when either side is constant)."""
    a, b = np.asarray(gold, dtype=np.float64).ravel(), np.asarray(pred, dtype=np.float64).ravel()
    if a.size != b.size or a.size < 2:
        raise ValueError(f"pearson needs two sequences of the same length >= 2, got {a.size} and {b.size}")
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def spearman(gold: Sequence[float], pred: Sequence[float]) -> float:
    """Spearman rank correlation: Pearson of the average ranks (ties share their mean rank), as scipy defines it.

    In numpy: scipy.stats, which computed it before, cost every process a second of import time.
    """
    return pearson(average_ranks(gold), average_ranks(pred))


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


def uniformity(
    x: torch.Tensor, t: float = 2.0, device: str | torch.device | None = None, block: int | None = None
) -> float:
    """Wang & Isola (2020) uniformity: ``log mean exp(-t ||f(x) - f(y)||^2)`` over distinct pairs.

    Input is ``(n, dim)``, L2-normalised here; all ``n (n - 1) / 2`` pairs ``i < j`` are used. Computed
    on ``device`` (default: ``x``'s, or the first GPU when there is one) in blocks of ``block`` rows
    (default: tiles of about 32M pairs), never the ``n^2 / 2`` distances at once.
    For unit vectors ``||a - b||^2 = 2 - 2 a.b``: each tile is a matrix product, float64 on the CPU
    (exact to the last digit the report shows) and float32 on a GPU (1e-6 on the result).
    """
    if device is None:
        device = x.device if x.device.type != "cpu" or not torch.cuda.is_available() else torch.device("cuda")
    dtype = torch.float64 if torch.device(device).type == "cpu" else torch.float32
    x = F.normalize(x.to(device, dtype), dim=-1)
    n = x.shape[0]
    block = block or max(1, 2**25 // n)
    parts = []
    for start in range(0, n - 1, block):
        rows = x[start : start + block]  # (b, dim)
        sq = (2 - 2 * rows @ x[start + 1 :].T).clamp(min=0)  # (b, n - start - 1): pairs with later rows
        col, row = torch.arange(start + 1, n, device=device), torch.arange(start, start + len(rows), device=device)
        later = col[None, :] > row[:, None]  # (b, n - start - 1): each pair i < j once
        parts.append(torch.logsumexp((-t * sq).masked_fill(~later, -torch.inf).flatten(), dim=0))
    return float(torch.logsumexp(torch.stack(parts).double(), dim=0) - np.log(n * (n - 1) / 2))
