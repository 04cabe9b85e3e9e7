"""Retrieval evaluation: exact search of every query over the corpus, chunk by chunk, on any number of processes.

Queries are encoded with the ``query`` side's prompt and split between processes, then gathered. The corpus
is dealt out between processes (by length, so each gets about the same work); each process encodes its
share ``corpus_chunk_size`` documents at a time, scores each chunk against every query and keeps a running
top k, so neither the corpus' vectors nor its score matrix are ever held whole. The processes then gather
their top k (``k`` keys per query each) and merge them: the ranking, and so every metric, is the one a
single process computes. Metrics follow trec_eval (see :mod:`simcse.evaluation.ranking`).

Example:
    >>> data = load_beir("mydocs", split="dev")  # doctest: +SKIP
    >>> RetrievalEvaluator(data, name="mydocs")(encoder)["mydocs/ndcg@10"]  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F

from simcse.distributed import gather_rows, rank_and_world
from simcse.evaluation.base import align_uniform, encode_fn, encode_texts, prefixed, side_prompt
from simcse.evaluation.ranking import METRICS, TopK, decode, ranking_metrics, search
from simcse.evaluation.retrieval_data import RetrievalData
from simcse.evaluation.sharding import shares, together

logger = logging.getLogger(__name__)

DEFAULT_CUTOFFS: dict[str, tuple[int, ...]] = {"ndcg": (10,), "mrr": (10,), "map": (100,), "recall": (1, 10, 100)}


class RetrievalEvaluator:
    """nDCG, MRR, MAP, Recall (and Precision) at cut-offs, with alignment and uniformity of the relevant pairs.

    Args:
        data: Queries, corpus and judgements (see :func:`~simcse.evaluation.retrieval_data.load_beir`).
        name: Prefix of the metric names (``<name>/ndcg@10``).
        cutoffs: Cut-offs per metric (:data:`DEFAULT_CUTOFFS`; keys among ndcg, mrr, map, recall, precision).
        similarity: ``cosine`` (vectors normalised before the dot product) or ``dot``.
        query_prompt: Text put before every query (else ``query_prompt_name``, else the model's ``query`` prompt).
        query_prompt_name: A name among the model's prompts for queries.
        document_prompt: Text put before every document (else ``document_prompt_name``, else ``document``'s).
        document_prompt_name: A name among the model's prompts for documents.
        corpus_chunk_size: Documents encoded and scored at a time by each process.
    """

    def __init__(
        self, data: RetrievalData, name: str = "retrieval", *, cutoffs: Mapping[str, Sequence[int]] | None = None,
        similarity: Literal["cosine", "dot"] = "cosine", query_prompt: str | None = None,
        query_prompt_name: str | None = None, document_prompt: str | None = None,
        document_prompt_name: str | None = None, corpus_chunk_size: int = 50_000,
    ) -> None:  # fmt: skip
        self.cutoffs = {m: tuple(int(k) for k in ks) for m, ks in (cutoffs or DEFAULT_CUTOFFS).items()}
        bad = [m for m in self.cutoffs if m not in METRICS] + [
            str(k) for ks in self.cutoffs.values() for k in ks if k < 1
        ]
        if bad or not any(self.cutoffs.values()):
            raise ValueError(f"cutoffs: {', '.join(bad) or 'none given'}; metrics {', '.join(METRICS)} at k >= 1")
        if similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be cosine or dot, got {similarity!r}")
        if corpus_chunk_size < 1:
            raise ValueError(f"corpus_chunk_size must be >= 1, got {corpus_chunk_size}")
        self.name, self.similarity, self.chunk = name, similarity, corpus_chunk_size
        self.prompts = {"query": (query_prompt, query_prompt_name), "document": (document_prompt, document_prompt_name)}
        self.qrels = {q: d for q, d in data.qrels.items() if q in data.queries and any(r > 0 for r in d.values())}
        if not self.qrels:
            raise ValueError(f"{name}: no query has a relevant document")
        if len(self.qrels) < len(data.qrels):
            logger.warning(
                "%s: %d judged queries without a relevant document are left out",
                name,
                len(data.qrels) - len(self.qrels),
            )
        self.query_ids = list(self.qrels)
        self.queries = [data.queries[q] for q in self.query_ids]
        # position = rank in descending id order, so lower positions win ties: trec_eval's order
        self.doc_ids = sorted(data.corpus, reverse=True)
        self.docs = [data.corpus[d] for d in self.doc_ids]
        where = {d: i for i, d in enumerate(self.doc_ids)}
        self.pairs = np.array(
            [(qi, where[d]) for qi, q in enumerate(self.query_ids) for d, r in self.qrels[q].items() if r > 0]
        )
        self.depth = min(max(k for ks in self.cutoffs.values() for k in ks), len(self.docs))

    def metric_names(self) -> list[str]:
        """Every key the call returns."""
        keys = [f"{m}@{k}" for m, ks in self.cutoffs.items() for k in ks] + ["alignment", "uniformity"]
        return [f"{self.name}/{k}" for k in keys]

    def __call__(self, encoder: Any, batch_size: int = 128, **encode_kwargs: Any) -> dict[str, float]:
        """Encode, search and score (every process together); see the module's notes."""
        queries = encode_texts(
            encoder, self.queries, batch_size, encode_kwargs, **side_prompt(encoder, "query", *self.prompts["query"])
        )
        device = _device(encoder)
        q = torch.from_numpy(queries).to(device)  # (n_queries, dim)
        if self.similarity == "cosine":
            q = F.normalize(q, dim=-1)
        encode = encode_fn(
            encoder, batch_size, encode_kwargs, **side_prompt(encoder, "document", *self.prompts["document"])
        )
        rank, world = rank_and_world()
        mine = np.sort(shares(self.docs, world)[rank]) if world > 1 else np.arange(len(self.docs))
        kept: dict[int, np.ndarray] = {}  # the relevant documents' vectors, for alignment

        def local_search() -> TopK:
            return search(q, self._chunks(encode, mine, kept), self.depth)

        top = together(local_search)
        if world > 1:  # every process's top k, merged: the ranking one process would find
            keys = gather_rows(top.keys).view(world, len(self.queries), -1)  # (world, n_queries, depth)
            top = TopK(len(self.queries), self.depth, keys.device)
            top.merge(keys.transpose(0, 1).reshape(len(self.queries), -1))  # (n_queries, world * depth)
        positions = decode(top.keys)[1].cpu().numpy()  # (n_queries, depth), best first
        ranked = [[self.doc_ids[p] for p in row if p >= 0] for row in positions]
        metrics = ranking_metrics(ranked, [self.qrels[q] for q in self.query_ids], self.cutoffs)
        metrics.update(self._align_uniform(queries, kept))
        return prefixed(self.name, metrics)

    def _chunks(
        self, encode: Any, mine: np.ndarray, kept: dict[int, np.ndarray]
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        relevant = np.unique(self.pairs[:, 1])
        for start in range(0, len(mine), self.chunk):
            part = mine[start : start + self.chunk]
            vectors = np.asarray(encode([self.docs[i] for i in part]), dtype=np.float32)  # (chunk, dim)
            hit = np.isin(part, relevant)
            kept.update(zip(part[hit].tolist(), vectors[hit]))
            v = torch.from_numpy(vectors)
            yield (F.normalize(v, dim=-1) if self.similarity == "cosine" else v), torch.from_numpy(part)

    def _align_uniform(self, queries: np.ndarray, kept: dict[int, np.ndarray]) -> dict[str, float]:
        """Alignment of (query, relevant document) pairs; uniformity of those queries and documents."""
        ids = torch.tensor(sorted(kept), dtype=torch.int64)
        dim = queries.shape[1]
        rows = torch.from_numpy(np.stack([kept[i] for i in ids.tolist()])) if kept else torch.zeros((0, dim))
        ids, rows = gather_rows(ids), gather_rows(rows)  # every process's relevant documents
        docs = dict(zip(ids.tolist(), rows.numpy()))
        relevant = np.stack([docs[d] for d in sorted(docs)])
        return align_uniform(
            queries[self.pairs[:, 0]],
            np.stack([docs[d] for d in self.pairs[:, 1]]),
            np.concatenate([queries, relevant]),
        )


def _device(encoder: Any) -> torch.device:
    device = getattr(encoder, "device", None)
    return torch.device(device) if device is not None else torch.device("cpu")
