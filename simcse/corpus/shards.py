"""One shard file of an encoded corpus: write it crash-safe, read it back, check it.

A shard holds rows ``[k * S, (k + 1) * S)`` of the input (``S``: the shard size). Formats:

- ``parquet``: columns ``id`` (int64 or string) and ``embedding``, a fixed-size list of the vector's
  values (float32; int8 codes; or uint8 bytes of packed sign bits for ``binary``).
- ``npy``: ``shard-NNNNN.npy`` holding the ``(rows, width)`` array, plus ``shard-NNNNN.ids.npy`` when the
  input names an id column (without one, row ``j`` of shard ``k`` is input row ``k * S + j``).

Every file is written under a temporary name, flushed to disk and renamed into place, and its SHA-256
is kept in the shard's record, so a resumed run can tell a complete shard from a damaged one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from typing import Any

import numpy as np

from simcse.quantize import _unit, quantize_binary, quantize_int8

FILE_FORMATS = ("parquet", "npy")
DTYPES = ("float32", "int8", "binary")


def shard_files(k: int, file_format: str, with_ids: bool) -> list[str]:
    """The file names of shard ``k`` (vectors first)."""
    if file_format == "parquet":
        return [f"shard-{k:05d}.parquet"]
    return [f"shard-{k:05d}.npy"] + ([f"shard-{k:05d}.ids.npy"] if with_ids else [])


def to_stored(emb: np.ndarray, dtype: str, ranges: np.ndarray | None) -> np.ndarray:
    """Float vectors ``(rows, dim)`` as stored: float32, int8 codes (with ``ranges``) or packed sign bits."""
    if dtype == "float32":
        return np.ascontiguousarray(emb, dtype=np.float32)
    if dtype == "int8":
        if ranges is None:
            raise ValueError("int8 output needs calibration ranges")
        return quantize_int8(_unit(emb), ranges)  # (rows, dim) int8
    return quantize_binary(emb)  # (rows, ceil(dim / 8)) uint8


def file_sha256(path: str) -> str:
    """SHA-256 of a file's bytes (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def _atomic(path: str, write: Any) -> None:
    """``write(tmp)``, flush to disk, rename to ``path``; the temporary file never outlives an error."""
    tmp = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp-{os.getpid()}")
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_shard(folder: str, k: int, ids: np.ndarray | None, vectors: np.ndarray, file_format: str) -> dict[str, str]:
    """Write shard ``k`` into ``folder``; returns ``{file name: sha256}``.

    Args:
        folder: The output folder.
        k: Shard index.
        ids: ``(rows,)`` int64 or str ids; None for row-index ids (``npy`` then writes no ids file).
        vectors: ``(rows, width)`` as stored (see :func:`to_stored`).
        file_format: ``parquet`` or ``npy``.
    """
    names = shard_files(k, file_format, ids is not None)
    paths = [os.path.join(folder, n) for n in names]
    if file_format == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        values = pa.array(vectors.reshape(-1))  # (rows * width,) zero-copy for numeric arrays
        table = pa.table({
            "id": pa.array(ids, type=pa.int64() if ids.dtype.kind in "iu" else pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(values, vectors.shape[1]),
        })  # fmt: skip
        _atomic(paths[0], lambda tmp: pq.write_table(table, tmp, compression={"id": "snappy", "embedding": "none"}))
    else:
        if ids is not None:
            _atomic(paths[1], lambda tmp: _save_npy(tmp, ids))
        _atomic(paths[0], lambda tmp: _save_npy(tmp, vectors))
    return {n: file_sha256(p) for n, p in zip(names, paths)}


def _save_npy(path: str, array: np.ndarray) -> None:
    with open(path, "wb") as f:
        np.save(f, array, allow_pickle=False)


def _vectors_first(names: list[str]) -> list[str]:
    """A shard's file names, vectors first (records list them sorted by name: ``.ids.npy`` sorts first)."""
    return sorted(names, key=lambda n: n.endswith(".ids.npy"))


def read_shard(folder: str, names: list[str], mmap: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """``(ids or None, vectors)`` of one shard, ids as written; ``.npy`` vectors are memory-mapped."""
    names = _vectors_first(names)
    path = os.path.join(folder, names[0])
    if names[0].endswith(".parquet"):
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        column = table.column("embedding").combine_chunks()
        width = column.type.list_size
        vectors = column.values.to_numpy(zero_copy_only=False).reshape(-1, width)  # (rows, width)
        return table.column("id").to_numpy(), vectors
    vectors = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    ids = np.load(os.path.join(folder, names[1]), allow_pickle=False) if len(names) > 1 else None
    return ids, vectors


def read_ids(folder: str, names: list[str]) -> np.ndarray | None:
    """The ids column of a shard (None for ``npy`` shards without an ids file)."""
    names = _vectors_first(names)
    if names[0].endswith(".parquet"):
        import pyarrow.parquet as pq

        return pq.read_table(os.path.join(folder, names[0]), columns=["id"]).column("id").to_numpy()
    return np.load(os.path.join(folder, names[1]), allow_pickle=False) if len(names) > 1 else None


def files_intact(folder: str, checksums: dict[str, str]) -> bool:
    """Every file named in ``checksums`` exists with that SHA-256."""
    for name, digest in checksums.items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path) or file_sha256(path) != digest:
            return False
    return True
