"""Read a finished corpus encode (its manifest and shards) and search it exactly, one shard at a time.

A corpus larger than memory is searched in chunks: each shard is read (``.npy`` memory-mapped,
Parquet read whole: one shard's size), scored against the queries, and only the best ``k`` rows per
query are kept across shards, so the result equals a search over the whole array at once. Quantized
search works the same way on int8 / binary shards (or on float shards quantized as they are read),
with optional rescoring of the candidates by the float vectors, read back by row.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from simcse.corpus.folder import FORMAT_NAME, MANIFEST_FILE, read_json
from simcse.corpus.shards import files_intact, read_ids, read_shard
from simcse.corpus.source import CorpusError
from simcse.quantize import QuantizedIndex, _rescore, _unit

Hits = list[list[tuple[int, float]]]


class ShardedEmbeddings:
    """The vectors of a folder written by :func:`simcse.corpus.encode_corpus` (``simcse encode ... -o FOLDER``) or Ray.

    Args:
        folder: The output folder (str or ``os.PathLike``); it must hold ``manifest.json``.

    Example:
        >>> corpus = ShardedEmbeddings("corpus_vectors")  # doctest: +SKIP
        >>> hits = corpus.search(encoder.encode(["a query"]), top_k=5)  # [[(row, cosine), ...]]  # doctest: +SKIP
        >>> corpus.ids([row for row, _ in hits[0]])  # doctest: +SKIP
    """

    def __init__(self, folder: str | os.PathLike) -> None:
        self.folder = os.fspath(folder)
        manifest = read_json(os.path.join(self.folder, MANIFEST_FILE)) if os.path.isdir(self.folder) else None
        if manifest is None or manifest.get("format") != FORMAT_NAME:
            hint = " (an unfinished run: finish it with simcse encode --resume)" if os.path.isdir(self.folder) else ""
            raise CorpusError(f"{self.folder}: not a finished corpus encode folder, no {MANIFEST_FILE}{hint}")
        self.manifest = manifest
        self.settings: dict[str, Any] = manifest["settings"]
        self.shards: list[dict[str, Any]] = manifest["shards"]
        self.starts = np.cumsum([0] + [s["rows"] for s in self.shards])  # (n_shards + 1,) first row of each shard

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, dim)`` of the float vectors (the stored width differs for binary)."""
        return int(self.starts[-1]), int(self.settings["dim"])

    @property
    def dtype(self) -> str:
        """How the vectors are stored: ``float32``, ``int8`` or ``binary``."""
        return str(self.settings["dtype"])

    def __len__(self) -> int:
        return int(self.starts[-1])

    def verify(self) -> None:
        """Check every shard file against the manifest's SHA-256; raises :class:`CorpusError` on a mismatch."""
        for shard in self.shards:
            if not files_intact(self.folder, shard["files"]):
                raise CorpusError(f"{self.folder}: shard {shard['index']} does not match its checksum in the manifest")

    def iter_shards(self) -> Iterator[tuple[int, np.ndarray]]:
        """``(first row, stored vectors)`` of each shard in order (``.npy`` memory-mapped)."""
        for shard, start in zip(self.shards, self.starts):
            yield int(start), read_shard(self.folder, list(shard["files"]))[1]

    def ids(self, rows: list[int] | np.ndarray) -> list[Any]:
        """The ids of the given rows (row indices when the input named no id column)."""
        out: list[Any] = [None] * len(rows)
        for k, positions, local in self._by_shard(np.asarray(rows, dtype=np.int64)):
            ids = read_ids(self.folder, list(self.shards[k]["files"]))
            for p, j in zip(positions, local):
                value = self.starts[k] + j if ids is None else ids[j]
                out[p] = value.item() if hasattr(value, "item") else value
        return out

    def __getitem__(self, rows: np.ndarray) -> np.ndarray:
        """Float vectors of the given rows ``(len(rows), dim)`` (float32 folders; rows read shard by shard)."""
        if self.dtype != "float32":
            raise CorpusError(f"{self.folder}: holds {self.dtype} codes, not float vectors")
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.shape[1]), dtype=np.float32)
        for k, positions, local in self._by_shard(rows):
            vectors = read_shard(self.folder, list(self.shards[k]["files"]))[1]
            out[positions] = vectors[local]
        return out

    def _by_shard(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        if rows.size and (rows.min() < 0 or rows.max() >= len(self)):
            raise IndexError(f"rows out of range [0, {len(self)})")
        shard_of = np.searchsorted(self.starts, rows, side="right") - 1
        for k in np.unique(shard_of):
            positions = np.flatnonzero(shard_of == k)
            yield int(k), positions, rows[positions] - self.starts[k]

    def search(
        self, queries: np.ndarray, top_k: int = 10, precision: str | None = None, rescore_multiplier: int = 0,
        query_chunk: int = 256,
    ) -> Hits:  # fmt: skip
        """Top-k rows for each query, best first, as ``(row, score)``; exact over all shards.

        Args:
            queries: ``(n_queries, dim)`` float vectors from the same model.
            top_k: Hits per query.
            precision: ``float32`` (cosine), ``int8`` or ``binary``; default: what the folder stores. A float
                folder searched at ``int8`` / ``binary`` is quantized shard by shard (int8 ranges from the
                first shard).
            rescore_multiplier: int8 / binary on a float folder: re-rank the top ``M * top_k`` candidates by
                cosine of the float vectors (0: no rescoring).
            query_chunk: Queries scored at a time (bounds memory: ``query_chunk x shard rows`` scores).
        """
        precision = precision or ("float32" if self.dtype == "float32" else self.dtype)
        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.shape[1]:
            raise ValueError(f"queries of shape {q.shape}, the folder holds vectors of size {self.shape[1]}")
        if top_k < 1 or rescore_multiplier < 0:
            raise ValueError(f"top_k must be >= 1 and rescore_multiplier >= 0, got {top_k}, {rescore_multiplier}")
        if self.dtype != "float32" and precision != self.dtype:
            raise CorpusError(f"{self.folder}: holds {self.dtype} codes; search it at precision {self.dtype}")
        if rescore_multiplier and (precision == "float32" or self.dtype != "float32"):
            raise CorpusError("rescoring needs int8 / binary search over a folder of float32 vectors")
        k = min(top_k, len(self))
        n_candidates = min(k * max(rescore_multiplier, 1), len(self))
        hits: Hits = []
        for start in range(0, q.shape[0], query_chunk):
            chunk = _unit(q[start : start + query_chunk])  # (chunk, dim)
            scores, rows = self._scan(chunk, n_candidates, precision)
            if rescore_multiplier:
                scores, rows = _rescore(chunk, rows, self, k)
            hits += [[(int(i), float(s)) for i, s in zip(r, sc)] for r, sc in zip(rows, scores)]
        return hits

    def _scan(self, queries: np.ndarray, n: int, precision: str) -> tuple[np.ndarray, np.ndarray]:
        """The best ``n`` rows per query over all shards: ``(scores, rows)``, each ``(n_queries, n)``."""
        best_s = torch.empty((queries.shape[0], 0))
        best_i = torch.empty((queries.shape[0], 0), dtype=torch.int64)
        q = torch.from_numpy(queries)
        calibration = None
        for first, stored in self.iter_shards():
            if precision == "float32":
                vectors = torch.from_numpy(np.array(stored, dtype=np.float32))  # a copy: shards may be read-only maps
                scores = q @ F.normalize(vectors, dim=-1).T  # (n_queries, shard rows)
            else:
                if self.dtype == "float32" and precision == "int8" and calibration is None:
                    calibration = np.asarray(stored, dtype=np.float32)  # the first shard calibrates int8
                scores = self._index(stored, precision, calibration).scores(queries)  # (n_queries, shard rows)
            m = min(n, scores.shape[1])
            if precision == "float32":
                s, i = torch.topk(scores, m, dim=1)
            else:  # code scores tie often: lower row first, as QuantizedIndex does in memory
                s, i = torch.sort(scores, dim=1, descending=True, stable=True)
            best_s = torch.cat([best_s, s[:, :m]], dim=1)
            best_i = torch.cat([best_i, i[:, :m] + first], dim=1)
            best_s, order = torch.sort(best_s, dim=1, descending=True, stable=True)
            best_s, best_i = best_s[:, :n], torch.gather(best_i, 1, order)[:, :n]
        return best_s.numpy(), best_i.numpy()

    def _index(self, stored: np.ndarray, precision: str, calibration: np.ndarray | None) -> QuantizedIndex:
        dim = self.shape[1]
        if self.dtype == "float32":
            return QuantizedIndex.build(np.asarray(stored, dtype=np.float32), precision, calibration)  # type: ignore[arg-type]
        ranges = self.settings.get("int8_ranges")
        ranges = None if ranges is None else np.asarray(ranges, dtype=np.float32)  # (2, dim)
        return QuantizedIndex(precision, np.asarray(stored), dim, ranges)  # type: ignore[arg-type]
