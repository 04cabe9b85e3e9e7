"""Crash-safe file output: build next to the target, then rename into place.

A folder cannot replace a non-empty folder in one rename, so :func:`atomic_dir` moves the old one
aside first; a process killed between the two renames leaves ``.NAME.old-*`` beside a missing
``NAME``. :func:`recover` puts it back, and every :func:`atomic_dir` calls it first.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator

logger = logging.getLogger(__name__)

# A file or folder as every public function of the package takes it: a string or any os.PathLike
# (pathlib.Path, a model package's get_model_path()); normalised with os.fspath where it comes in.
StrPath = str | os.PathLike[str]


def optional_path(path: StrPath | None) -> str | None:
    """``os.fspath(path)``, or None for None."""
    return None if path is None else os.fspath(path)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def recover(path: StrPath) -> None:
    """Repair what an interrupted :func:`atomic_dir` or :func:`atomic_write_text` left beside ``path``.

    A missing ``path`` with a ``.NAME.old-*`` sibling gets the old version back; leftover temporary
    siblings (``.NAME.tmp-*``, and ``.NAME.old-*`` once ``path`` exists) are removed.
    """
    path = os.fspath(path)
    parent, name = os.path.split(os.path.abspath(path))
    olds = sorted(glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.old-*")), key=os.path.getmtime)
    if olds and not os.path.exists(path):
        logger.warning("%s: restoring the previous version from %s (a save was interrupted)", path, olds[-1])
        os.replace(olds.pop(), path)
    for stale in [*olds, *glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.tmp-*"))]:
        logger.warning("removing %s, left by an interrupted save", stale)
        if os.path.isdir(stale):
            shutil.rmtree(stale, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.remove(stale)


def fsync_tree(path: StrPath) -> None:
    """Flush every file under ``path`` (and the folders) to disk, so a rename after it is durable."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())
        with contextlib.suppress(OSError):  # folders cannot be opened on every platform
            fd = os.open(root, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def _share_files(folder: str) -> None:
    """Give every file under ``folder`` the umask's read/write bits: libraries that write through
    ``mkstemp`` (safetensors weights via transformers) leave them private (0600)."""
    shared = 0o666 & ~_umask()
    for root, _, files in os.walk(folder):
        for name in files:
            file = os.path.join(root, name)
            mode = os.stat(file).st_mode & 0o777
            if mode | shared != mode:
                os.chmod(file, mode | shared)


@contextlib.contextmanager
def atomic_dir(path: StrPath) -> Iterator[str]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` by rename.

    On error the temporary folder is removed and an existing ``path`` is left untouched.
    """
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    recover(path)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp's 0700 would make the result private
    try:
        yield tmp
        _share_files(tmp)
        fsync_tree(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = None
    if os.path.exists(path):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.old-", dir=parent)
        os.rmdir(old)
        os.replace(path, old)
    os.replace(tmp, path)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def atomic_write_text(path: StrPath, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and an atomic rename."""
    path = os.fspath(path)
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.tmp-", dir=parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would make the result private
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
