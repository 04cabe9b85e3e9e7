"""Exact top-k cosine search (FAISS when installed, chunked matrix products otherwise)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def top_k_cosine(
    queries: np.ndarray, corpus: np.ndarray, top_k: int = 10, chunk_size: int = 4096
) -> list[list[tuple[int, float]]]:
    """For each query row, the ``top_k`` corpus rows by cosine similarity, best first.

    Args:
        queries: ``(n_queries, dim)`` embeddings.
        corpus: ``(n_corpus, dim)`` embeddings.
        top_k: Hits per query (capped at the corpus size).
        chunk_size: Queries scored per matrix product in the exact fallback.

    Returns:
        One list per query of ``(corpus_index, score)``.
    """
    if queries.ndim != 2 or corpus.ndim != 2 or queries.shape[1] != corpus.shape[1]:
        raise ValueError(f"shape mismatch: queries {queries.shape}, corpus {corpus.shape}")
    if top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    k = min(top_k, corpus.shape[0])
    if k == 0:
        return [[] for _ in range(queries.shape[0])]
    q = F.normalize(torch.as_tensor(queries, dtype=torch.float32), dim=-1)
    c = F.normalize(torch.as_tensor(corpus, dtype=torch.float32), dim=-1)
    try:
        import faiss  # type: ignore[import-not-found]
    except ImportError:
        faiss = None
    if faiss is not None:
        index = faiss.IndexFlatIP(c.shape[1])
        index.add(c.numpy())
        scores, ids = index.search(q.numpy(), k)
    else:
        parts_s, parts_i = [], []
        for start in range(0, q.shape[0], chunk_size):
            sims = q[start : start + chunk_size] @ c.T  # (chunk, n_corpus)
            s, i = sims.topk(k, dim=1)
            parts_s.append(s)
            parts_i.append(i)
        scores, ids = torch.cat(parts_s).numpy(), torch.cat(parts_i).numpy()
    return [[(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(ids, scores)]
