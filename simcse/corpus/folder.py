"""The output folder of a corpus encode: its settings, the shards' records, the wait for them, the manifest.

While a run is under way the folder holds::

    settings.json                 what every shard is made with (model and its revision, pooler, ...)
    shard-00000.parquet ...       finished shards (written to a temporary name, then renamed)
    progress/shard-00000.json     one record per finished shard: rows, file checksums, input hash;
                                  written after the shard's files, so a record means a complete shard
    progress/failed-rank-1.txt    the error of a process that failed (ends the others' wait at once)

When every shard is there, one process writes ``manifest.json`` (the settings, the shard list with row
counts and checksums, the input and the throughput) and removes ``progress/`` and ``settings.json``.
A folder with a manifest is finished: it is never written again without ``overwrite``.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import os
import shutil
import socket
import time
from typing import Any

from simcse.corpus.source import CorpusError
from simcse.io import atomic_write_text, recover

logger = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
MANIFEST_FILE = "manifest.json"
PROGRESS_DIR = "progress"
FORMAT_NAME = "simcse-corpus-embeddings"
UNCHECKED = ("int8_ranges", "model")  # not compared: computed once by the first run; the model is compared by revision


def read_json(path: str) -> dict[str, Any] | None:
    """A JSON object from ``path``; None when it is missing (records are written whole by rename)."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def write_json(path: str, obj: dict[str, Any]) -> None:
    """Write ``obj`` to ``path`` atomically (temporary file, then rename)."""
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def settings_digest(settings: dict[str, Any]) -> str:
    """SHA-256 of the settings (every key), so a record tells which settings made its shard."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def record_path(out: str, k: int) -> str:
    """Where shard ``k``'s record lives while the run is under way."""
    return os.path.join(out, PROGRESS_DIR, f"shard-{k:05d}.json")


def _differences(old: dict[str, Any], new: dict[str, Any]) -> str:
    keys = sorted((old.keys() | new.keys()) - set(UNCHECKED))
    return "; ".join(f"{k}: {old.get(k)!r} there, {new.get(k)!r} now" for k in keys if old.get(k) != new.get(k))


def prepare_folder(
    out: str, settings: dict[str, Any], resume: bool, overwrite: bool, calibrate: Any
) -> tuple[dict[str, Any], bool]:
    """Make ``out`` ready for this run (the main process only): the settings in force, and whether it is finished.

    A fresh folder gets ``settings`` plus ``int8_ranges=calibrate()``. On ``resume`` the folder's
    settings must equal ``settings`` (a different model, pooler, ... is refused); its int8 ranges are kept.

    Raises:
        CorpusError: the folder is finished or in progress and neither ``resume`` nor ``overwrite`` is set,
            its settings differ, or it is not an encode output folder.
    """
    manifest = read_json(os.path.join(out, MANIFEST_FILE)) if os.path.isdir(out) else None
    stored = manifest["settings"] if manifest else read_json(os.path.join(out, SETTINGS_FILE))
    if os.path.isdir(out) and os.listdir(out) and stored is None:
        raise CorpusError(f"{out}: exists and is not an encode output folder (no {SETTINGS_FILE} or {MANIFEST_FILE}); "
                          "give a new or empty folder")  # fmt: skip
    if stored is not None and overwrite:
        logger.info("%s: removing the earlier output (--overwrite)", out)
        aside = f"{out.rstrip(os.sep)}.old-{os.getpid()}"
        os.replace(out, aside)
        shutil.rmtree(aside)
        stored = manifest = None
    if stored is not None:
        state = "finished" if manifest else "holds an unfinished encode run"
        if not resume:
            hint = "--overwrite to redo it" if manifest else "continue it with --resume, or start over with --overwrite"
            raise CorpusError(f"{out}: {state}; {hint}")
        diff = _differences(stored, settings)
        if diff:
            raise CorpusError(f"{out}: made with other settings than this run ({diff}); "
                              "use the same model and options, --overwrite, or another output folder")  # fmt: skip
        if not manifest:
            os.makedirs(os.path.join(out, PROGRESS_DIR), exist_ok=True)
            # the other processes wait for this process's answer: no failure note of this run exists yet
            for note in glob.glob(os.path.join(glob.escape(out), PROGRESS_DIR, "failed-rank-*.txt")):
                os.remove(note)
        return stored, bool(manifest)
    os.makedirs(os.path.join(out, PROGRESS_DIR), exist_ok=True)
    settings = {**settings, "int8_ranges": calibrate()}
    write_json(os.path.join(out, SETTINGS_FILE), settings)
    return settings, False


def clear_own_leftovers(out: str, rank: int, world: int) -> None:
    """Remove temporary shard files a killed run left for shards this process owns."""
    for path in glob.glob(os.path.join(glob.escape(out), ".shard-*.tmp-*")):
        k = int(os.path.basename(path)[len(".shard-") :].split(".")[0])
        if k % world == rank:
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)


def note_failure(out: str, rank: int, message: str) -> None:
    """Leave this process's error in the folder, so the process waiting for its shards stops at once."""
    with contextlib.suppress(OSError):  # the folder itself may be the problem; the error is raised anyway
        path = os.path.join(out, PROGRESS_DIR, f"failed-rank-{rank}.txt")
        atomic_write_text(path, f"{socket.gethostname()}: {message}")


def wait_for_shards(out: str, n_shards: int, world: int, digest: str, timeout: float) -> list[dict[str, Any]]:
    """Records of shards ``0 .. n_shards - 1``, waiting (polling the folder) for those other processes write.

    No collective is used, so processes that finish early hold nothing open. The wait ends with an error
    when another process notes a failure, or when no new shard has appeared for ``timeout`` seconds.
    """
    records: dict[int, dict[str, Any]] = {}
    last_new, last_log, delay = time.monotonic(), time.monotonic(), 0.05
    while True:
        for k in range(n_shards):
            if k not in records and (rec := read_json(record_path(out, k))) is not None:
                if rec.get("settings_sha256") != digest:
                    raise CorpusError(f"{record_path(out, k)}: written with other settings than this run's")
                records[k], last_new = rec, time.monotonic()
        if len(records) == n_shards:
            return [records[k] for k in range(n_shards)]
        for note in sorted(glob.glob(os.path.join(glob.escape(out), PROGRESS_DIR, "failed-rank-*.txt"))):
            with open(note, encoding="utf-8") as f:
                who = os.path.basename(note)[len("failed-") : -len(".txt")].replace("-", " ")
                raise CorpusError(f"{who} failed: {f.read().strip()}")
        missing = [k for k in range(n_shards) if k not in records]
        ranks = sorted({k % world for k in missing})
        if time.monotonic() - last_new > timeout:
            raise CorpusError(
                f"{out}: no new shard for {timeout:.0f} s; missing shards {_span(missing)} of process(es) "
                f"{', '.join(map(str, ranks))}. If the processes run on several machines, the output folder must be "
                "on storage they all share (this process cannot see the others' shards)"
            )
        if time.monotonic() - last_log > 60:
            logger.info("waiting for %d shard(s) of process(es) %s", len(missing), ", ".join(map(str, ranks)))
            last_log = time.monotonic()
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


def _span(ks: list[int]) -> str:
    return ", ".join(map(str, ks[:5])) + (f", ... ({len(ks)} in all)" if len(ks) > 5 else "")


def write_manifest(out: str, settings: dict[str, Any], records: list[dict[str, Any]], extra: dict[str, Any]) -> dict:
    """Write ``manifest.json`` from the shards' records, then remove the run's working files.

    ``extra`` goes into the manifest as it is, except ``extra["throughput"]``, which adds to the throughput
    computed from the records' ``seconds`` (e.g. a wall-clock rate where the engine reports no per-process time).
    """
    for path in glob.glob(os.path.join(glob.escape(out), ".shard-*.tmp-*")):
        os.remove(path)  # left by killed runs of processes that no longer own that shard
    for name in (MANIFEST_FILE, SETTINGS_FILE):
        recover(os.path.join(out, name))  # a temporary file of a write that a kill interrupted
    seconds = sum(r["seconds"] for r in records)
    rows = sum(r["rows"] for r in records)
    shards = [{k: r[k] for k in ("index", "rows", "files", "input_sha256")} for r in records]
    manifest = {
        "format": FORMAT_NAME, "version": 1, "rows": rows, "settings": settings, "shards": shards, **extra,
        "throughput": {
            "process_seconds": round(seconds, 3), "rows_per_process_second": round(rows / max(seconds, 1e-9), 1),
            "processes": extra.get("processes", 1), **extra.get("throughput", {}),
        },
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }  # fmt: skip
    write_json(os.path.join(out, MANIFEST_FILE), manifest)
    shutil.rmtree(os.path.join(out, PROGRESS_DIR), ignore_errors=True)
    if os.path.exists(os.path.join(out, SETTINGS_FILE)):
        os.remove(os.path.join(out, SETTINGS_FILE))
    return manifest
