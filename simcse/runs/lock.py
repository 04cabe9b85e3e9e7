"""One run at a time in a run folder: :class:`RunLock`, and :func:`hold_run_folder`, what ``train()`` holds.

:class:`RunLock` holds ``<output_dir>/.simcse.lock`` for the whole run (the main process only). The
lock is an ``flock`` on that file, which the kernel drops when its holder dies, so a lock left by a
killed run is taken over (with a warning naming the old holder), while a second run started into a
live run's folder is refused with a message naming the holder's pid, host and start time. The file
records the holder in plain text for people and for that message; a clean end removes it.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
from collections.abc import Iterator
from typing import Any

from simcse.distributed import share_outcome
from simcse.io import StrPath
from simcse.runs.checkpoints import list_checkpoints
from simcse.runs.folder import RunFolder

logger = logging.getLogger(__name__)


@contextlib.contextmanager
def hold_run_folder(accelerator: Any, output_dir: StrPath, resume: bool) -> Iterator[None]:
    """Hold the run folder for the life of a run, on every process of it (a ``with`` block).

    The main process takes the lock; a folder held by a live run, or one holding an earlier run's
    checkpoints when not resuming (a fresh start would mix with and prune them), stops every process
    with that one message before anything is built. The lock is released when the block ends, however.

    Raises:
        RunFolderBusy: another live run holds ``output_dir``.
        FileExistsError: ``output_dir`` holds checkpoints and ``resume`` is False.
    """
    output_dir = os.fspath(output_dir)
    lock = RunLock(output_dir) if accelerator.is_main_process else None
    refusal: BaseException | None = None
    if lock is not None:
        try:
            lock.acquire()
        except RunFolderBusy as err:
            refusal, lock = err, None
        else:
            if not resume and list_checkpoints(output_dir):
                refusal = FileExistsError(
                    f"{output_dir}: holds an earlier run's checkpoints; resume it or pick another folder"
                )
    try:
        share_outcome(refusal, f"taking the run folder {output_dir}")  # every process stops; none waits
        yield
    finally:
        if lock is not None:
            lock.release()


class RunFolderBusy(OSError):
    """Another live run holds the run folder."""


def _holder_text(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (started {info.get('started', '?')})"


class RunLock:
    """An exclusive lock on a run folder for the life of a run (``with RunLock(path): ...``).

    Args:
        output_dir: The run folder (created if missing).

    Raises:
        RunFolderBusy: when a live process holds the folder.
    """

    def __init__(self, output_dir: StrPath) -> None:
        self.path = RunFolder(output_dir).lock
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise :class:`RunFolderBusy` naming the holder."""
        try:
            import fcntl
        except ImportError:  # Windows: no flock; the run goes on unguarded rather than not at all
            logger.warning("%s: no file locking on this platform; do not start two runs into this folder", self.path)
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = self._read(fd)
                os.close(fd)
                raise RunFolderBusy(
                    f"{os.path.dirname(self.path)}: another run is using this folder: {_holder_text(holder)}; "
                    "wait for it to finish, or give another output_dir"
                ) from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # a finishing run removed the file between our open and our lock: lock the new one
        left = self._read(fd)
        if left:  # the kernel released a lock whose holder never cleaned up: it was killed
            logger.warning(
                "%s: taking over the lock of %s, which ended without releasing it", self.path, _holder_text(left)
            )
        info = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now().isoformat(timespec="seconds"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Remove the file (a clean end leaves nothing behind) and drop the lock."""
        if self._fd is None:
            return
        import fcntl

        with contextlib.suppress(OSError):
            os.remove(self.path)  # before unlocking: whoever locks next sees a new file (see acquire)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None

    @staticmethod
    def _read(fd: int) -> dict[str, Any]:
        try:
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            return json.loads(text) if text else {}
        except ValueError:
            return {"pid": "?", "host": "?", "started": "?"}

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


