"""Duplicate ids across all shards, found in bounded memory after every process has written its shards.

Processes write their shards apart, so ids are compared once, at the end, by the process that writes
the manifest: a pass over the shards' id columns puts ``(64-bit hash of the id, row)`` pairs into
up to 512 bucket files by hash, then each bucket is sorted on its own. Memory holds one shard's ids
and one bucket (16 bytes per row / number of buckets). Equal hashes are confirmed on the ids themselves.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

from simcse.corpus.shards import read_ids
from simcse.corpus.source import CorpusError, CorpusSource

MAX_BUCKETS = 512


def _hash64(ids: np.ndarray) -> np.ndarray:
    from pandas.util import hash_array

    return hash_array(ids if ids.dtype.kind in "iu" else ids.astype(object)).view(np.int64)  # (n,)


def find_duplicate(out: str, records: list[dict[str, Any]]) -> tuple[Any, int, int] | None:
    """The first repeated id (by its second row) as ``(id, first row, second row)``, or None."""
    total = sum(r["rows"] for r in records)
    n_buckets = int(np.clip(-(-total // max(r["rows"] for r in records)), 1, MAX_BUCKETS))
    candidates: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory(prefix=".id-check-", dir=out) as tmp:
        files = [open(os.path.join(tmp, str(b)), "wb") for b in range(n_buckets)]  # noqa: SIM115
        try:
            for rec in records:
                ids = read_ids(out, list(rec["files"]))
                pairs = np.stack([_hash64(ids), rec["first_row"] + np.arange(len(ids), dtype=np.int64)], 1)  # (n, 2)
                bucket = pairs[:, 0].view(np.uint64) % n_buckets
                order = np.argsort(bucket, kind="stable")
                bounds = np.searchsorted(bucket[order], np.arange(n_buckets + 1))
                for b in range(n_buckets):
                    pairs[order[bounds[b] : bounds[b + 1]]].tofile(files[b])
        finally:
            for f in files:
                f.close()
        for b in range(n_buckets):
            pairs = np.fromfile(os.path.join(tmp, str(b)), dtype=np.int64).reshape(-1, 2)  # (rows in bucket, 2)
            pairs = pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]  # by hash, then row
            same = np.flatnonzero(pairs[1:, 0] == pairs[:-1, 0])
            candidates += [(int(pairs[i, 1]), int(pairs[i + 1, 1])) for i in same]
    lookup = _IdLookup(out, records)
    for first, second in sorted(candidates, key=lambda p: p[1]):
        if lookup[first] == lookup[second]:  # not a hash collision
            return lookup[first], first, second
    return None


class _IdLookup:
    """The id of a row, reading (and keeping) one shard's ids at a time (shards of any sizes, e.g. Ray's files)."""

    def __init__(self, out: str, records: list[dict[str, Any]]) -> None:
        self.out, self.records = out, records
        self.firsts = np.array([r["first_row"] for r in records], dtype=np.int64)  # (n_shards,)
        self.cached: tuple[int, np.ndarray] | None = None

    def __getitem__(self, row: int) -> Any:
        k = int(np.searchsorted(self.firsts, row, side="right")) - 1
        if self.cached is None or self.cached[0] != k:
            self.cached = (k, read_ids(self.out, list(self.records[k]["files"])))
        value = self.cached[1][row - self.firsts[k]]
        return value.item() if hasattr(value, "item") else value


def check_unique_ids(out: str, records: list[dict[str, Any]], source: CorpusSource, kind: str) -> None:
    """Raise :class:`CorpusError` naming the file and line of the first repeated id (row indices never repeat)."""
    if kind == "index":
        return
    found = find_duplicate(out, records)
    if found is not None:
        value, first, second = found
        where = {i: row[2] for i, row in source.find_rows({first, second}).items()}
        raise CorpusError(f"{where.get(second, f'row {second}')}: duplicate id {value!r} "
                          f"(first at {where.get(first, f'row {first}')}); ids must be unique")  # fmt: skip
