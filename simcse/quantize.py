"""Embedding quantization for search: int8 and binary corpora, float rescoring, Matryoshka truncation.

A float32 corpus of ``n`` vectors of size ``d`` takes ``4 n d`` bytes; int8 codes take ``n d`` (4x
smaller) and sign bits ``n d / 8`` (32x smaller). Search then runs on the codes, and the top
``rescore_multiplier * k`` candidates can be rescored with the float vectors (which may stay on disk,
e.g. ``np.load(path, mmap_mode="r")``: only the candidates' rows are read), as in sentence-transformers'
embedding-quantization guide:

- **int8**: per-dimension ranges (min, max) from calibration vectors, 256 buckets per dimension,
  exactly sentence-transformers' ``quantize_embeddings(..., "int8")``. Queries stay float and are
  scored against the decoded codes (as FAISS's ``IndexScalarQuantizer`` does), which ranks by
  ``(query * step) @ codes.T``.
- **binary**: one sign bit per dimension packed 8 per byte (``np.packbits(x > 0)``, sentence-transformers'
  ``ubinary``); queries are binarised too and ranked by Hamming distance (XOR + popcount), reported as
  the bit agreement ``1 - 2 * hamming / d`` in ``[-1, 1]``.
- **truncate_dim**: keep the first ``d'`` dimensions (Matryoshka-style) and re-normalise.

Example:
    >>> index = QuantizedIndex.build(corpus_vectors, "binary")  # doctest: +SKIP
    >>> hits = index.search(queries, 10, rescore_multiplier=4, rescore_embeddings=corpus_vectors)  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Precision = Literal["int8", "binary"]
PRECISIONS: tuple[str, ...] = ("float32", "int8", "binary")
_POPCOUNT = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)  # set bits of each byte value


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def check_truncate_dim(truncate_dim: int | None, dim: int) -> None:
    """Raise ``ValueError`` unless ``truncate_dim`` is None or in ``[1, dim]``."""
    if truncate_dim is not None and not 1 <= truncate_dim <= dim:
        raise ValueError(f"truncate_dim must be between 1 and the embedding size {dim}, got {truncate_dim}")


def truncate_embeddings(embeddings: np.ndarray, truncate_dim: int, normalize: bool = False) -> np.ndarray:
    """The first ``truncate_dim`` dimensions of each row (Matryoshka-style), re-normalised if ``normalize``.

    Args:
        embeddings: ``(n, dim)`` or ``(dim,)`` float vectors.
        truncate_dim: Dimensions kept, ``1 <= truncate_dim <= dim``.
        normalize: Scale each truncated row to unit length.

    Returns:
        A float32 array ``(n, truncate_dim)`` (or ``(truncate_dim,)``).
    """
    check_truncate_dim(truncate_dim, embeddings.shape[-1])
    out = np.ascontiguousarray(embeddings[..., :truncate_dim], dtype=np.float32)  # (..., truncate_dim)
    return _unit(out) if normalize else out


def calibration_ranges(embeddings: np.ndarray) -> np.ndarray:
    """Per-dimension ``(min, max)`` of calibration vectors: a ``(2, dim)`` float32 array."""
    emb = np.asarray(embeddings, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise ValueError(f"calibration needs at least 2 vectors of shape (n, dim), got {emb.shape}")
    return np.stack([emb.min(axis=0), emb.max(axis=0)])  # (2, dim)


def _steps(ranges: np.ndarray) -> np.ndarray:
    steps = (ranges[1] - ranges[0]) / 255  # (dim,) bucket width
    return np.where(steps == 0, 1, steps).astype(np.float32)


def quantize_int8(embeddings: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """int8 codes: ``floor((x - min) / step)`` clipped to ``[0, 255]``, minus 128 (``step = (max - min) / 255``)."""
    emb = np.asarray(embeddings, dtype=np.float32)
    codes = np.clip(np.floor((emb - ranges[0]) / _steps(ranges)), 0, 255)
    return (codes - 128).astype(np.int8)


def dequantize_int8(codes: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """Bucket centres of int8 codes: ``min + (code + 128.5) * step`` (float32)."""
    return (ranges[0] + (codes.astype(np.float32) + 128.5) * _steps(ranges)).astype(np.float32)


def quantize_binary(embeddings: np.ndarray) -> np.ndarray:
    """Sign bits packed 8 per byte, first dimension in the high bit: ``(n, ceil(dim / 8))`` uint8."""
    return np.packbits(np.asarray(embeddings) > 0, axis=-1)


def hamming_distances(query_bits: np.ndarray, corpus_bits: np.ndarray) -> np.ndarray:
    """Hamming distance between every packed query and corpus row: ``(n_queries, n_corpus)`` int32."""
    xor = np.bitwise_xor(query_bits[:, None, :], corpus_bits[None, :, :])  # (n_queries, n_corpus, bytes)
    ones = np.bitwise_count(xor) if hasattr(np, "bitwise_count") else _POPCOUNT[xor]  # numpy < 2: a table
    return ones.sum(axis=-1, dtype=np.int32)  # (n_queries, n_corpus)


def _top_k(scores: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
    # stable: ties keep corpus order, so results do not depend on the chunking
    s, i = torch.sort(scores, dim=1, descending=True, stable=True)
    return s[:, :k].numpy(), i[:, :k].numpy()


@dataclass(frozen=True)
class QuantizedIndex:
    """A corpus stored as int8 codes or packed sign bits, searchable with optional float rescoring.

    Attributes:
        precision: ``int8`` or ``binary``.
        codes: ``(n, dim)`` int8, or ``(n, ceil(dim / 8))`` uint8 bits.
        dim: Size of the float vectors.
        ranges: ``(2, dim)`` calibration ranges (int8 only).
    """

    precision: Precision
    codes: np.ndarray
    dim: int
    ranges: np.ndarray | None = None

    @classmethod
    def build(
        cls, embeddings: np.ndarray, precision: Precision, calibration: np.ndarray | None = None
    ) -> QuantizedIndex:
        """Quantize L2-normalised ``embeddings``; int8 ranges come from ``calibration`` (default: the corpus)."""
        if precision not in ("int8", "binary"):
            raise ValueError(f"precision must be int8 or binary, got {precision!r}")
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise ValueError(f"expected a non-empty (n, dim) corpus, got shape {emb.shape}")
        unit = _unit(emb)
        if precision == "binary":
            return cls("binary", quantize_binary(unit), emb.shape[1])
        ranges = calibration_ranges(unit if calibration is None else _unit(calibration))
        return cls("int8", quantize_int8(unit, ranges), emb.shape[1], ranges)

    @property
    def nbytes(self) -> int:
        """Bytes held by the codes."""
        return int(self.codes.nbytes)

    def scores(self, queries: np.ndarray, block: int = 8192) -> torch.Tensor:
        """Approximate similarity of each query to every corpus row: ``(n_queries, n_corpus)`` float32.

        The corpus is decoded ``block`` rows at a time, so no float copy of it is ever made.
        """
        q = _unit(queries)
        parts = []
        if self.precision == "binary":
            bits = quantize_binary(q)
            for start in range(0, self.codes.shape[0], block):
                hamming = hamming_distances(bits, self.codes[start : start + block])  # (n_queries, block)
                parts.append(torch.from_numpy((1.0 - 2.0 * hamming / self.dim).astype(np.float32)))
            return torch.cat(parts, dim=1)
        assert self.ranges is not None
        # q . decode(c) = (q * step) . c + q . (min + 128.5 * step): one matmul on the codes, plus a constant
        steps = _steps(self.ranges)
        scaled = torch.from_numpy(q * steps)  # (n_queries, dim)
        offset = torch.from_numpy(q @ (self.ranges[0] + 128.5 * steps))[:, None]  # (n_queries, 1)
        for start in range(0, self.codes.shape[0], block):
            codes = torch.from_numpy(self.codes[start : start + block].astype(np.float32))  # (block, dim)
            parts.append(scaled @ codes.T + offset)  # (n_queries, block)
        return torch.cat(parts, dim=1)

    def search(
        self,
        queries: np.ndarray,
        top_k: int = 10,
        rescore_multiplier: int = 1,
        rescore_embeddings: np.ndarray | None = None,
        chunk_size: int = 256,
    ) -> list[list[tuple[int, float]]]:
        """Top-k corpus rows for each query, best first, as ``(index, score)``.

        Args:
            queries: ``(n_queries, dim)`` float vectors (normalised here).
            top_k: Hits per query (capped at the corpus size).
            rescore_multiplier: With ``rescore_embeddings``, take ``rescore_multiplier * top_k`` candidates
                from the codes and rank them by exact cosine of the float vectors.
            rescore_embeddings: ``(n_corpus, dim)`` float corpus vectors (may be memory-mapped), or None.
            chunk_size: Queries scored at a time (bounds memory: the binary XOR is ``chunk * n * dim / 8`` bytes).

        Returns:
            Per query, ``(corpus_index, score)`` pairs; the score is the cosine when rescored, else the
            approximate score of :meth:`scores`.
        """
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise ValueError(f"queries of shape {q.shape}, the index holds vectors of size {self.dim}")
        if top_k < 1 or rescore_multiplier < 1:
            raise ValueError(f"top_k and rescore_multiplier must be >= 1, got {top_k} and {rescore_multiplier}")
        n = self.codes.shape[0]
        if rescore_embeddings is not None and rescore_embeddings.shape != (n, self.dim):
            raise ValueError(f"rescore_embeddings of shape {rescore_embeddings.shape}, expected {(n, self.dim)}")
        k = min(top_k, n)
        rescore = rescore_embeddings is not None
        n_candidates = min(k * rescore_multiplier, n) if rescore else k
        hits: list[list[tuple[int, float]]] = []
        for start in range(0, q.shape[0], chunk_size):
            chunk = q[start : start + chunk_size]
            scores, ids = _top_k(self.scores(chunk), n_candidates)  # (chunk, n_candidates)
            if rescore:
                scores, ids = _rescore(_unit(chunk), ids, rescore_embeddings, k)
            hits += [[(int(i), float(s)) for i, s in zip(row_i, row_s)] for row_i, row_s in zip(ids, scores)]
        return hits


def _rescore(queries: np.ndarray, ids: np.ndarray, corpus: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Rank each query's candidate ``ids`` by exact cosine with the float ``corpus`` rows; keep ``k``."""
    flat = np.unique(ids)  # read each candidate row once (sorted indices suit a memory map)
    vectors = _unit(np.asarray(corpus[flat]))  # (n_unique, dim)
    where = np.searchsorted(flat, ids)  # (n_queries, n_candidates) rows into `vectors`
    cos = np.einsum("qd,qcd->qc", queries, vectors[where])  # (n_queries, n_candidates)
    order = np.argsort(-cos, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(cos, order, 1), np.take_along_axis(ids, order, 1)


def recall_at_k(found: list[list[tuple[int, float]]], exact: list[list[tuple[int, float]]]) -> float:
    """Mean fraction of each query's exact top-k indices that ``found`` returns (k = the exact lists' length)."""
    if len(found) != len(exact) or not exact:
        raise ValueError(f"recall_at_k needs the same non-zero number of queries, got {len(found)} and {len(exact)}")
    per_query = [len({i for i, _ in f} & {i for i, _ in e}) / len(e) for f, e in zip(found, exact)]
    return float(np.mean(per_query))


def search_vectors(
    queries: np.ndarray,
    corpus: np.ndarray,
    top_k: int = 10,
    precision: str = "float32",
    rescore_multiplier: int = 0,
) -> list[list[tuple[int, float]]]:
    """Top-k search of float ``corpus`` vectors at a precision: exact cosine, or int8 / binary codes.

    Args:
        queries: ``(n_queries, dim)`` float vectors.
        corpus: ``(n_corpus, dim)`` float vectors.
        top_k: Hits per query.
        precision: ``float32`` (exact, :func:`simcse.search.top_k_cosine`), ``int8`` or ``binary``.
        rescore_multiplier: For int8 / binary, rescore ``rescore_multiplier * top_k`` candidates with the
            float vectors (0: no rescoring, the codes' own ranking and scores).

    Returns:
        Per query, ``(corpus_index, score)`` pairs, best first.
    """
    from simcse.search import top_k_cosine

    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if rescore_multiplier < 0:
        raise ValueError(f"rescore_multiplier must be >= 0, got {rescore_multiplier}")
    if precision == "float32":
        return top_k_cosine(queries, corpus, top_k)
    index = QuantizedIndex.build(corpus, precision)  # type: ignore[arg-type]
    if rescore_multiplier == 0:
        return index.search(queries, top_k)
    return index.search(queries, top_k, rescore_multiplier, rescore_embeddings=corpus)
