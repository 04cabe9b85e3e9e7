"""Encode a corpus on a Ray cluster: the encoder as a callable class for ``Dataset.map_batches``.

Ray Data reads the input in blocks, spreads them over an actor pool (one actor per GPU: each loads the
model once) and writes Parquet files with the schema of :mod:`simcse.corpus.shards` (``id`` and
``embedding``, a fixed-size list). Needs the optional extra: ``pip install "simcse-toolkit[ray]"``.

Ray Data has no row index, so the input must name an id column (convert a text file to Parquet or
JSON lines with ids first). Ids follow ``simcse encode``'s rule: text, except an integer Parquet column.

When Ray has written its files, the driver (one process) writes ``manifest.json`` beside them, as
``simcse encode`` does: the same settings record (model and its revision, pooler, normalisation, ...;
built by the same function, from the model loaded once on the driver's CPU), each file with its row
count and SHA-256, and the throughput. The folder is then read by ``simcse search --corpus-embeddings``
and :class:`simcse.corpus.ShardedEmbeddings`. The files come in Ray's order, not the input's: the
manifest says so (``input.rows_in_input_order``), and ids identify the rows. The manifest is written to
local (or mounted shared) folders only: an object-store URI (``s3://...``) as ``output`` is refused
unless ``manifest=False``, which writes Ray's Parquet files alone (no manifest, no overwrite check).

Example (any machine of the cluster, after ``ray start --head`` and ``ray start --address=HEAD:6379``)::

    from simcse.corpus.ray import encode_with_ray
    encode_with_ray("/shared/models/m", ["s3://bucket/corpus/"], "/shared/vectors", id_column="doc_id",
                    num_actors=16, num_gpus=1)
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcse.corpus.duplicates import find_duplicate
from simcse.corpus.folder import MANIFEST_FILE, SETTINGS_FILE, prepare_folder, write_manifest
from simcse.corpus.run import EncodeOptions, run_settings
from simcse.corpus.shards import file_sha256, to_stored
from simcse.corpus.source import CorpusError
from simcse.io import StrPath

ENCODER_OPTIONS = ("pooler", "batch_size", "normalize", "truncate_dim", "prompt", "dtype", "device")


def _check_dtype(dtype: str) -> None:
    if dtype not in ("float32", "binary"):
        raise ValueError(f"dtype must be float32 or binary on Ray, got {dtype!r}")


class RayEncoder:
    """Embeds one batch of rows; Ray builds one instance per actor (the model is loaded once per actor).

    Args:
        model: Model folder, hub name or ``pkg:<module>``.
        text_column: Column holding the text.
        id_column: Column holding the ids (passed through).
        pooler: Pooling mode (None: the folder's).
        batch_size: Sentences per forward pass.
        normalize: L2-normalise (None: the model's setting).
        truncate_dim: Keep the first N dimensions.
        prompt: Text put before every input.
        dtype: ``float32`` or ``binary`` (int8 needs ranges fixed for the whole corpus: use ``simcse encode``).
        device: Torch device (None: the GPU Ray gave the actor, else the CPU).
        text_ids: Store integer ids as text (``simcse encode`` keeps integers only from Parquet columns).
    """

    def __init__(
        self, model: str, text_column: str = "text", id_column: str = "id", pooler: str | None = None,
        batch_size: int = 64, normalize: bool | None = None, truncate_dim: int | None = None,
        prompt: str | None = None, dtype: str = "float32", device: str | None = None, text_ids: bool = False,
    ) -> None:  # fmt: skip
        from simcse.encoder.encoder import Encoder

        _check_dtype(dtype)
        self.encoder = Encoder.from_pretrained(model, pooler=pooler, device=device).eval()  # type: ignore[arg-type]
        self.text_column, self.id_column, self.dtype, self.text_ids = text_column, id_column, dtype, text_ids
        self.kwargs = {"batch_size": batch_size, "normalize": normalize, "truncate_dim": truncate_dim, "prompt": prompt}

    def __call__(self, batch: dict[str, np.ndarray]) -> Any:
        """``{text_column: (n,), id_column: (n,)}`` -> a pyarrow table ``id``, ``embedding`` (fixed-size list)."""
        import pyarrow as pa

        texts = [str(t) for t in batch[self.text_column]]
        for i, text in enumerate(texts):
            if not text.strip():
                raise ValueError(f"row with id {batch[self.id_column][i]!r}: empty text")
        stored = to_stored(self.encoder.encode(texts, **self.kwargs), self.dtype, None)  # (n, width)
        return pa.table({
            "id": self._ids(batch[self.id_column]),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(stored.reshape(-1)), stored.shape[1]),
        })  # fmt: skip

    def _ids(self, ids: np.ndarray) -> Any:
        import pyarrow as pa

        if ids.dtype.kind in "iu":
            return pa.array(ids.astype(str)) if self.text_ids else pa.array(ids, type=pa.int64())
        for value in ids:
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"id column {self.id_column!r} holds {value!r}: expected non-empty text or an integer")
        return pa.array(ids.tolist(), type=pa.string())


@dataclass(frozen=True)
class _Columns:
    """What :func:`simcse.corpus.run.run_settings` reads of the input (Ray reads the input itself)."""

    text_column: str
    id_column: str
    ids: str

    def id_kind(self) -> str:
        return self.ids


def ray_settings(model: str, text_column: str, id_column: str, ids: str, **encoder_kwargs: Any) -> dict[str, Any]:
    """The settings record ``simcse encode`` writes for the same options (the model loaded once, on the CPU).

    Ray has no shard size (its files hold what its blocks hold): ``shard_size`` is None.
    """
    from simcse.encoder.encoder import Encoder

    unknown = sorted(set(encoder_kwargs) - set(ENCODER_OPTIONS))
    if unknown:
        raise TypeError(f"unknown encoder option(s) {', '.join(unknown)}; expected some of {ENCODER_OPTIONS}")
    options = EncodeOptions(**{k: v for k, v in encoder_kwargs.items() if k not in ("pooler", "device")})
    encoder = Encoder.from_pretrained(model, pooler=encoder_kwargs.get("pooler"), device="cpu")
    settings = run_settings(encoder, _Columns(text_column, id_column, ids), options, model)  # type: ignore[arg-type]
    return {**settings, "shard_size": None, "int8_ranges": None}


def _check_output(out: str, overwrite: bool) -> None:
    """Refuse an object store URI, and an earlier encode's folder unless ``overwrite`` (Ray runs do not resume)."""
    if "://" in out:
        raise CorpusError(
            f"{out}: the manifest is written to local or mounted shared folders only; give one, or "
            "manifest=False to write Ray's Parquet files alone (simcse search cannot read them)"
        )
    finished = os.path.isfile(os.path.join(out, MANIFEST_FILE))
    if not overwrite and (finished or os.path.isfile(os.path.join(out, SETTINGS_FILE))):
        state = "finished (manifest.json)" if finished else "holds an unfinished encode run (Ray runs do not resume)"
        raise CorpusError(f"{out}: {state}; pass overwrite=True to redo it, or give another output folder")


def _file_records(out: str, seconds: float, actors: int) -> tuple[list[dict[str, Any]], str]:
    """One record per Parquet file Ray wrote (in name order; empty files removed), and the id kind."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    records: list[dict[str, Any]] = []
    kinds, first = set(), 0
    for name in sorted(n for n in os.listdir(out) if n.endswith(".parquet") and not n.startswith(".")):
        path = os.path.join(out, name)
        file = pq.ParquetFile(path)
        if file.metadata.num_rows == 0:
            os.remove(path)
            continue
        kinds.add("int" if pa.types.is_integer(file.schema_arrow.field("id").type) else "str")
        records.append({"index": len(records), "first_row": first, "rows": file.metadata.num_rows,
                        "files": {name: file_sha256(path)}, "input_sha256": None})  # fmt: skip
        first += file.metadata.num_rows  # ends as the total
    if not records:
        raise CorpusError(f"{out}: Ray wrote no rows (the input is empty)")
    if len(kinds) > 1:
        raise CorpusError(f"{out}: Ray wrote integer ids in some files and text ids in others")
    for r in records:  # Ray reports no per-actor time: the pool's wall time, shared by rows
        r["seconds"] = seconds * actors * r["rows"] / first
    return records, kinds.pop()


def _check_unique(out: str, records: list[dict[str, Any]]) -> None:
    found = find_duplicate(out, records)
    if found is not None:
        value, a, b = found
        where = [next(r for r in reversed(records) if r["first_row"] <= row) for row in (a, b)]
        names = [f"{next(iter(r['files']))} row {row - r['first_row'] + 1}" for r, row in zip(where, (a, b))]
        raise CorpusError(f"{out}: duplicate id {value!r} ({names[1]}, first at {names[0]}); ids must be unique")


def encode_with_ray(
    model: StrPath, paths: Sequence[StrPath], output: StrPath, *, id_column: str, text_column: str = "text",
    input_format: str = "parquet", num_actors: int = 1, num_gpus: float = 0, num_cpus: float = 1,
    rows_per_call: int = 4096, overwrite: bool = False, manifest: bool = True, **encoder_kwargs: Any,
) -> dict[str, Any] | None:  # fmt: skip
    """Encode ``paths`` with a pool of ``num_actors`` :class:`RayEncoder` actors into Parquet files under ``output``.

    Runs on the Ray cluster ``ray.init()`` connects to (a local one when none is running). Then writes the
    manifest (see the module's docstring), so ``simcse search --corpus-embeddings OUTPUT`` reads the folder.

    Args:
        model: Model folder (on storage every node sees), hub name or ``pkg:<module>``.
        paths: Input files or folders (local, or any filesystem Ray reads: ``s3://``, ``gs://``...).
        output: Output folder, on storage every node sees (a shared file system); an object store URI
            only with ``manifest=False``.
        id_column: Column holding unique ids (checked at the end: a repeat is refused).
        text_column: Column holding the text.
        input_format: ``parquet``, ``jsonl`` or ``csv``.
        num_actors: Size of the actor pool (one per GPU).
        num_gpus: GPUs per actor (1 on GPU clusters, 0 on CPUs).
        num_cpus: CPUs per actor (leave the cluster CPUs for Ray's read and write tasks, or the pool starves them).
        rows_per_call: Rows handed to an actor at a time (its encode sorts them by length).
        overwrite: Replace an earlier encode's output in ``output`` (without it, such a folder is refused).
        manifest: Write ``manifest.json`` (False: Ray's Parquet files alone, e.g. to an object store).
        **encoder_kwargs: Passed to :class:`RayEncoder` (``pooler``, ``batch_size``, ``normalize``...).

    Returns:
        The manifest (None with ``manifest=False``); its ``throughput`` has ``rows_per_second`` over the
        pool's wall time (``process_seconds`` is that time x ``num_actors``: Ray reports no per-actor time).

    Raises:
        CorpusError: an earlier output without ``overwrite``, an object store URI with a manifest, repeated ids.
    """
    model, out = os.fspath(model), os.fspath(output)
    inputs = [os.fspath(p) for p in paths]
    _check_dtype(encoder_kwargs.get("dtype", "float32"))
    text_ids = input_format != "parquet"  # as simcse encode reads CSV and JSON lines: ids are text
    if manifest:  # checked before Ray starts any work; the folder is marked in use (settings.json) until the end
        _check_output(out, overwrite)
        settings = ray_settings(model, text_column, id_column, "str" if text_ids else "unknown", **encoder_kwargs)
        prepare_folder(out, settings, resume=False, overwrite=overwrite, calibrate=lambda: None)
    start = time.perf_counter()
    ds = _read(inputs, input_format).select_columns([id_column, text_column])
    ds = ds.map_batches(
        RayEncoder, fn_constructor_kwargs={"model": model, "text_column": text_column, "id_column": id_column,
                                           "text_ids": text_ids, **encoder_kwargs},
        batch_size=rows_per_call, batch_format="numpy", concurrency=num_actors, num_gpus=num_gpus,
        num_cpus=num_cpus,
    )  # fmt: skip
    ds.write_parquet(out)
    if not manifest:
        return None
    seconds = time.perf_counter() - start
    records, ids = _file_records(out, seconds, num_actors)
    _check_unique(out, records)
    rows = sum(r["rows"] for r in records)
    extra = {
        "engine": "ray", "processes": num_actors, "batch_size": encoder_kwargs.get("batch_size", 64),
        "input": {"paths": [p if "://" in p else os.path.abspath(p) for p in inputs], "format": input_format,
                  "text_column": text_column, "id_column": id_column, "rows_in_input_order": False},
        "throughput": {"wall_seconds": round(seconds, 3), "rows_per_second": round(rows / max(seconds, 1e-9), 1)},
    }  # fmt: skip
    return write_manifest(out, {**settings, "ids": ids}, records, extra)


def _read(paths: Sequence[str], input_format: str) -> Any:
    import ray.data

    if input_format == "parquet":
        return ray.data.read_parquet(list(paths))
    if input_format == "jsonl":
        return ray.data.read_json(list(paths), lines=True)
    if input_format == "csv":
        return ray.data.read_csv(list(paths))
    raise ValueError(f"input_format must be parquet, jsonl or csv on Ray (text has no ids), got {input_format!r}")
