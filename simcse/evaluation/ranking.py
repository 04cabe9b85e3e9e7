"""Exact top-k search over a corpus in chunks, and the ranking metrics (trec_eval's definitions).

**Search.** The corpus arrives in chunks; each chunk is scored against the queries in blocks of at most
``max_scores`` entries, and a running top-k per query is kept, so memory is bounded by the chunk, never
by the corpus (a million passages need no million-column matrix). Scores are float64 products rounded to
float32, so a score does not depend on the chunk or block it was computed in. Candidates are ranked by
score, then by corpus position (lower first), encoded as one int64 key each (the float's order-preserving
bits, then the position), so the result is exact and the same for any chunk size or number of processes.

**Ties and metrics, as trec_eval** (``pytrec_eval``, which MTEB and BEIR use): documents with equal scores
rank by id, greater id first (callers order the corpus by descending id, see
:class:`~simcse.evaluation.retrieval.RetrievalEvaluator`); nDCG@k uses the judged relevance as the gain
and the ideal ranking of every judged document; MAP@k divides by all relevant documents of the query;
Recall@k likewise; Precision@k by k; MRR@k is the reciprocal rank of the first relevant document within
k. sentence-transformers' InformationRetrievalEvaluator differs in three places: it breaks ties by
ascending id, treats every judged document as gain 1, and divides MAP@k by ``min(k, relevant)``. On
binary judgements without ties and with at most k relevant documents per query all agree.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch

EMPTY = torch.iinfo(torch.int64).min  # a slot no document filled (the corpus has fewer than k documents)
_LOW = (1 << 32) - 1
METRICS = ("ndcg", "mrr", "map", "recall", "precision")


def _keys(scores: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """int64 keys ordering (score descending, index ascending) as plain integers, largest first."""
    bits = (scores.float() + 0.0).view(torch.int32).to(torch.int64)  # + 0.0: -0.0 and 0.0 tie
    ordered = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits)  # sign-magnitude -> two's complement order
    return ordered * (1 << 32) + (_LOW - index)


def decode(keys: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(scores float32, indices int64)`` of keys (index -1 and score -inf where a slot is :data:`EMPTY`)."""
    ordered = keys >> 32
    bits = torch.where(ordered < 0, ordered ^ 0x7FFFFFFF, ordered).to(torch.int32)
    empty = keys == EMPTY
    scores = bits.view(torch.float32).masked_fill(empty, -torch.inf)
    return scores, torch.where(empty, -1, _LOW - (keys & _LOW))


class TopK:
    """The best ``k`` documents for each query so far, as keys (see the module's notes).

    Args:
        n_queries: Number of queries.
        k: Documents kept per query.
        device: Where the keys live.
    """

    def __init__(self, n_queries: int, k: int, device: torch.device | str = "cpu") -> None:
        self.k = k
        self.keys = torch.full((n_queries, k), EMPTY, dtype=torch.int64, device=device)  # (n_queries, k)

    def add(self, start: int, scores: torch.Tensor, index: torch.Tensor) -> None:
        """Offer ``scores`` ``(rows, n_docs)`` of queries ``start...`` against documents at positions ``index``."""
        k = min(self.k, scores.shape[1])
        if k == 0:
            return
        values, cols = scores.topk(k, dim=1)  # (rows, k): which of equal scores topk keeps is arbitrary...
        keys = _keys(values, index[cols])
        # ...so rows with ties at the k-th score choose again by the full order
        tied = ((scores >= values[:, -1:]).sum(dim=1) > k).nonzero().flatten()
        if len(tied):
            keys[tied] = _keys(scores[tied], index.expand(len(tied), -1)).topk(k, dim=1).values
        self.merge(keys, start)

    def merge(self, keys: torch.Tensor, start: int = 0) -> None:
        """Fold candidate ``keys`` ``(rows, m)`` of queries ``start...`` into the running top k."""
        rows = slice(start, start + keys.shape[0])
        both = torch.cat([self.keys[rows], keys.to(self.keys.device)], dim=1)  # (rows, k + m)
        self.keys[rows] = both.topk(self.k, dim=1).values


def search(
    queries: torch.Tensor, chunks: Sequence[tuple[torch.Tensor, torch.Tensor]] | object, k: int,
    max_scores: int = 1 << 24,
) -> TopK:  # fmt: skip
    """The top ``k`` documents of each query by dot product, over corpus chunks.

    Args:
        queries: ``(n_queries, dim)``; normalise both sides first for cosine.
        chunks: An iterable of ``(vectors (n, dim), positions (n,) int64)``: the corpus, piece by piece.
        k: Documents per query.
        max_scores: Score-matrix entries computed at once (query rows per block = this // chunk rows).

    Returns:
        The :class:`TopK` (``decode(result.keys)`` gives scores and positions, best first).
    """
    top = TopK(queries.shape[0], k, queries.device)
    queries = queries.double()
    for vectors, positions in chunks:  # type: ignore[attr-defined]
        vectors, positions = vectors.to(queries.device, torch.float64), positions.to(queries.device)
        step = max(1, max_scores // max(1, vectors.shape[0]))
        for start in range(0, queries.shape[0], step):
            # float64, then float32: a score no longer depends on the block shape the product was cut into
            # (float32 products differ in the last bit between shapes), so equal vectors score equally
            top.add(start, (queries[start : start + step] @ vectors.T).float(), positions)  # (step, n)
    return top


def ranking_metrics(
    ranked: Sequence[Sequence[str]], qrels: Sequence[Mapping[str, int]], cutoffs: Mapping[str, Sequence[int]]
) -> dict[str, float]:
    """Mean ranking metrics over queries, trec_eval's definitions (see the module's notes).

    Args:
        ranked: For each query, document ids best first (at least ``max(cutoffs)`` where the corpus allows).
        qrels: For each query, ``{doc_id: relevance}``; relevance > 0 is relevant, and each query has one.
        cutoffs: ``{"ndcg": [10], "mrr": [10], "map": [100], "recall": [1, 10, 100], "precision": [...]}``.

    Returns:
        ``{"ndcg@10": ..., "recall@1": ..., ...}``, each in [0, 1].
    """
    depth = max((k for ks in cutoffs.values() for k in ks), default=1)
    gains = np.zeros((len(ranked), depth))  # (n_queries, depth): relevance of each retrieved document
    ideal = np.zeros((len(ranked), depth))  # (n_queries, depth): the best possible relevances, in order
    n_relevant = np.zeros(len(ranked))
    for i, (docs, judged) in enumerate(zip(ranked, qrels)):
        gains[i, : min(len(docs), depth)] = [max(judged.get(d, 0), 0) for d in docs[:depth]]
        best = sorted((r for r in judged.values() if r > 0), reverse=True)[:depth]
        ideal[i, : len(best)] = best
        n_relevant[i] = sum(r > 0 for r in judged.values())
    hits = gains > 0
    discount = 1.0 / np.log2(np.arange(2, depth + 2))  # (depth,)
    precision_at = np.cumsum(hits, axis=1) / np.arange(1, depth + 1)  # (n_queries, depth)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1), depth)  # rank - 1 of the first relevant
    out = {}
    for metric, ks in cutoffs.items():
        for k in ks:
            if metric == "ndcg":
                value = (gains[:, :k] @ discount[:k]) / (ideal[:, :k] @ discount[:k])
            elif metric == "mrr":
                value = np.where(first < k, 1.0 / (first + 1), 0.0)
            elif metric == "map":
                value = (precision_at[:, :k] * hits[:, :k]).sum(axis=1) / n_relevant
            elif metric == "recall":
                value = hits[:, :k].sum(axis=1) / n_relevant
            elif metric == "precision":
                value = hits[:, :k].sum(axis=1) / k
            else:
                raise ValueError(f"unknown ranking metric {metric!r}; known: {', '.join(METRICS)}")
            out[f"{metric}@{k}"] = float(value.mean())
    return out
