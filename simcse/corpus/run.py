"""Encode a corpus of any size into fixed-size shards: streamed, resumable, split over processes.

Shard ``k`` holds input rows ``[k * S, (k + 1) * S)``; process ``rank`` of ``world`` encodes the shards
with ``k % world == rank``. Which rows a shard holds depends on nothing else, so 1 or N processes, and
a resumed run, write the same shards. Every process reads the input stream whole (skipping, unencoded,
the rows of other processes' shards) and holds one shard's texts and vectors at a time, plus the one
being written in the background: memory is bounded by the shard size, whatever the corpus size.

Only one collective is used, at the start: the main process checks the output folder and broadcasts
its settings (or its error). After that, processes meet only through the folder: each shard's files
and record are renamed into place when complete, and the main process waits for the others' records
(polling, with a timeout that counts from the last new shard) before it checks ids and writes the
manifest. A process that fails notes its error in the folder and the waiting process stops with it.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import os
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcse.corpus.duplicates import check_unique_ids
from simcse.corpus.folder import (
    _differences,
    clear_own_leftovers,
    note_failure,
    prepare_folder,
    read_json,
    record_path,
    settings_digest,
    wait_for_shards,
    write_json,
    write_manifest,
)
from simcse.corpus.progress import RowProgress
from simcse.corpus.shards import DTYPES, FILE_FORMATS, files_intact, to_stored, write_shard
from simcse.corpus.source import CorpusError, CorpusSource
from simcse.distributed import broadcast_from_main, rank_and_world
from simcse.encoder.hub import resolve_model_name
from simcse.quantize import _unit, calibration_ranges

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EncodeOptions:
    """How a corpus is encoded and stored.

    Attributes:
        shard_size: Rows per shard (memory holds about two shards' vectors and one shard's texts).
        file_format: ``parquet`` (id + vector per row) or ``npy``.
        dtype: Stored values: ``float32``, ``int8`` (per-dimension buckets) or ``binary`` (sign bits).
        batch_size: Sentences per forward pass.
        normalize: L2-normalise vectors (None: the model's setting).
        truncate_dim: Keep the first N dimensions.
        prompt: Text put before every input (an instruction), or None.
        prompt_name: One of the model's saved prompts (e.g. ``document``), or None.
        calibration_rows: int8: the first N input rows give the per-dimension ranges.
        resume: Continue an unfinished output folder (its complete shards are kept).
        overwrite: Replace an earlier output in the folder.
        wait_timeout: Seconds the main process waits for a new shard of another process before failing
            (also the limit of the one collective at the start).
        show_progress: A progress bar (rows/s, ETA) on the main process.
    """

    shard_size: int = 100_000
    file_format: str = "parquet"
    dtype: str = "float32"
    batch_size: int = 64
    normalize: bool | None = None
    truncate_dim: int | None = None
    prompt: str | None = None
    prompt_name: str | None = None
    calibration_rows: int = 10_000
    resume: bool = False
    overwrite: bool = False
    wait_timeout: float = 1800.0
    show_progress: bool = True

    def __post_init__(self) -> None:
        if self.shard_size < 1 or self.batch_size < 1 or self.calibration_rows < 2:
            raise CorpusError("shard_size and batch_size must be >= 1 and calibration_rows >= 2")
        if self.file_format not in FILE_FORMATS or self.dtype not in DTYPES:
            raise CorpusError(f"file_format must be one of {FILE_FORMATS} and dtype one of {DTYPES}")
        if self.resume and self.overwrite:
            raise CorpusError("give --resume or --overwrite, not both")


def model_revision(encoder: Any, name: str) -> str:
    """The model's hub revision (commit), else ``sha256:`` of its local folder's files (names and bytes)."""
    commit = getattr(getattr(encoder.model, "config", None), "_commit_hash", None)
    if commit:
        return str(commit)
    path = resolve_model_name(name)
    if not os.path.isdir(path):
        return "unknown"
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for file in sorted(f for f in files if not f.startswith(".")):
            h.update(os.path.relpath(os.path.join(root, file), path).encode() + b"\0")
            with open(os.path.join(root, file), "rb") as f:
                for block in iter(lambda f=f: f.read(1 << 22), b""):
                    h.update(block)
    return "sha256:" + h.hexdigest()


def run_settings(encoder: Any, source: CorpusSource, options: EncodeOptions, model_name: str) -> dict[str, Any]:
    """Everything that decides the stored rows; a resumed run must have the same (model by revision)."""
    return {
        "model": model_name, "model_revision": model_revision(encoder, model_name), "pooler": encoder.pooler,
        "head": encoder.head is not None and encoder.pooler != "cls_before_pooler",
        "normalize": bool(encoder.normalize if options.normalize is None else options.normalize),
        "max_seq_length": encoder.max_seq_length, "truncate_dim": options.truncate_dim,
        "prompt": encoder.prompts.resolve(options.prompt, options.prompt_name),
        "include_prompt": encoder.prompts.include_prompt, "dim": options.truncate_dim or encoder.dim,
        "dtype": options.dtype, "compute": "fp32", "backend": type(encoder.model).__name__,
        "shard_size": options.shard_size, "file_format": options.file_format, "ids": source.id_kind(),
        "text_column": source.text_column, "id_column": source.id_column,
    }  # fmt: skip


def encode_corpus(
    encoder: Any,
    source: CorpusSource,
    output: str | os.PathLike,
    options: EncodeOptions = EncodeOptions(),
    model_name: str | None = None,
    share: Callable[[Any], Any] = broadcast_from_main,
) -> dict[str, Any] | None:
    """Encode every row of ``source`` into shards under ``output``, as this process's part of the job.

    Run it on every process of a launch (``torchrun``, ``accelerate launch``: a process group of the
    launcher's processes must be initialised, e.g. by :func:`simcse.distributed.init_cpu_group_from_env`)
    or on one. The output folder must be on storage every process sees.

    Args:
        encoder: The :class:`simcse.Encoder`.
        source: The input rows.
        output: The output folder.
        options: Shard size, format, dtype, resume...
        model_name: The model's name for the manifest (default: the name it was loaded from).
        share: Gives every process the main process's object (a broadcast; identity on one process).

    Returns:
        The manifest on the process that wrote it (the main one), else None.

    Raises:
        CorpusError: bad input (file and line named), an output folder in use or made with other settings,
            or another process's failure.
    """
    out = os.fspath(output)
    rank, world = rank_and_world()
    name = model_name or str(getattr(encoder.model.config, "name_or_path", "") or "unknown")
    settings = run_settings(encoder, source, options, name)
    answer: Any = None
    if rank == 0:
        try:
            answer = prepare_folder(out, settings, options.resume, options.overwrite,
                                    lambda: _calibrate(encoder, source, options))  # fmt: skip
        except Exception as err:  # every process must hear of it: they wait for this answer
            answer = str(err) if isinstance(err, (CorpusError, OSError)) else f"{type(err).__name__}: {err}"
    answer = share(answer)
    if isinstance(answer, str):
        raise CorpusError(answer)
    stored, finished = answer
    if finished:
        logger.info("%s: already complete (manifest.json); nothing to do", out)
        return read_json(os.path.join(out, "manifest.json")) if rank == 0 else None
    diff = _differences(stored, settings)
    if diff:  # e.g. another model file on this machine than on the main process's
        raise CorpusError(f"process {rank}: settings differ from the main process's ({diff})")
    digest = settings_digest(stored)
    try:
        clear_own_leftovers(out, rank, world)
        n_rows = _encode_own_shards(encoder, source, out, options, stored, digest, rank, world)
    except BaseException as err:
        note_failure(out, rank, f"{type(err).__name__}: {err}")
        raise
    if rank != 0:
        return None
    n_shards = -(-n_rows // options.shard_size)
    records = wait_for_shards(out, n_shards, world, digest, options.wait_timeout)
    check_unique_ids(out, records, source, stored["ids"])
    extra = {"input": source.describe(), "processes": world, "batch_size": options.batch_size}
    manifest = write_manifest(out, stored, records, extra)
    logger.info("%s: %d rows in %d shard(s), %s", out, n_rows, n_shards, manifest["throughput"])
    return manifest


def _calibrate(encoder: Any, source: CorpusSource, options: EncodeOptions) -> list[list[float]] | None:
    if options.dtype != "int8":
        return None
    texts = [text for text, _, _ in itertools.islice(source.rows(), options.calibration_rows)]
    if len(texts) < 2:
        raise CorpusError("int8 output needs at least 2 input rows to calibrate its ranges")
    emb = _encode(encoder, texts, options, None)
    return calibration_ranges(_unit(emb)).tolist()  # (2, dim): per-dimension min and max


def _encode(encoder: Any, texts: list[str], options: EncodeOptions, progress: Any) -> np.ndarray:
    return encoder.encode(
        texts, batch_size=options.batch_size, normalize=options.normalize, truncate_dim=options.truncate_dim,
        prompt=options.prompt, prompt_name=options.prompt_name, progress=progress,
    )  # fmt: skip


def _shards(rows: Iterator[tuple[str, Any, str]], size: int, owned: Callable[[int], bool]) -> Iterator[tuple]:
    """``(k, rows of shard k)`` for owned shards; other shards' rows are read (and checked) but not kept."""
    for k in itertools.count():
        if owned(k):
            chunk = list(itertools.islice(rows, size))
            if not chunk:
                return
            yield k, chunk
        elif sum(1 for _ in itertools.islice(rows, size)) == 0:
            return


def _input_sha256(texts: list[str], ids: list[Any]) -> str:
    h = hashlib.sha256("\0".join(texts).encode("utf-8", "surrogatepass"))
    h.update(repr(ids).encode())
    return h.hexdigest()


def _encode_own_shards(
    encoder: Any, source: CorpusSource, out: str, options: EncodeOptions, settings: dict[str, Any], digest: str,
    rank: int, world: int,
) -> int:  # fmt: skip
    """Encode (or keep, when its record and files check out) each shard this process owns; returns the row count."""
    size, ranges = options.shard_size, settings["int8_ranges"]
    ranges = None if ranges is None else np.asarray(ranges, dtype=np.float32)
    bar = RowProgress(source, world, enabled=options.show_progress and rank == 0)
    rows = _Counted(source.rows())  # every row of the stream, owned or not
    pending: Future | None = None
    with ThreadPoolExecutor(max_workers=1) as writer:
        for k, chunk in _shards(rows, size, lambda k: k % world == rank):
            texts, ids = [r[0] for r in chunk], [r[1] for r in chunk]
            input_hash = _input_sha256(texts, ids)
            old = read_json(record_path(out, k))
            if old and (old["settings_sha256"], old["input_sha256"], old["rows"]) == (digest, input_hash, len(texts)) \
                    and files_intact(out, old["files"]):  # fmt: skip
                bar.kept(len(texts), rows.n)
                continue
            start = time.perf_counter()
            stored = to_stored(_encode(encoder, texts, options, bar.update), settings["dtype"], ranges)
            record = {"index": k, "first_row": k * size, "rows": len(texts), "input_sha256": input_hash,
                      "settings_sha256": digest, "rank": rank, "host": socket.gethostname(),
                      "seconds": time.perf_counter() - start}  # fmt: skip
            if pending is not None:
                pending.result()  # one shard in flight at most: memory stays bounded
            ids_array = _ids_array(ids, k * size, settings)
            pending = writer.submit(_write, out, k, ids_array, stored, record, settings["file_format"])
            bar.shard_done(rows.n)
        if pending is not None:
            pending.result()
    bar.close()
    if rows.n == 0:
        raise CorpusError(f"{', '.join(source.paths) or source.dataset}: no rows (the input is empty)")
    return rows.n


class _Counted:
    """An iterator that counts what it yields."""

    def __init__(self, rows: Iterator[Any]) -> None:
        self.rows, self.n = rows, 0

    def __iter__(self) -> _Counted:
        return self

    def __next__(self) -> Any:
        row = next(self.rows)
        self.n += 1
        return row


def _ids_array(ids: list[Any], first: int, settings: dict[str, Any]) -> np.ndarray | None:
    if settings["ids"] == "index":
        return np.arange(first, first + len(ids), dtype=np.int64) if settings["file_format"] == "parquet" else None
    return np.asarray(ids, dtype=np.int64 if settings["ids"] == "int" else str)


def _write(out: str, k: int, ids: np.ndarray | None, stored: np.ndarray, record: dict, file_format: str) -> None:
    """The shard's files, then its record (the record's rename is what makes the shard count as done)."""
    start = time.perf_counter()
    files = write_shard(out, k, ids, stored, file_format)
    seconds = round(record["seconds"] + time.perf_counter() - start, 3)
    write_json(record_path(out, k), {**record, "files": files, "seconds": seconds})
