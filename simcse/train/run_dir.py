"""The run folder: every file of a run in one place, one run at a time, save failures in one line.

:class:`RunFolder` names every path of a run (``config.yaml``, ``metrics.jsonl``, ``model/``,
``checkpoints/``, the lock) and writes the run's own files (config, metrics).

:class:`RunLock` holds ``<output_dir>/.simcse.lock`` for the whole run (the main process only). The
lock is an ``flock`` on that file, which the kernel drops when its holder dies, so a lock left by a
killed run is taken over (with a warning naming the old holder), while a second run started into a
live run's folder is refused with a message naming the holder's pid, host and start time. The file
records the holder in plain text for people and for that message; a clean end removes it.

:func:`saving` turns any I/O error while writing a model or checkpoint (disk full, permission,
a folder removed under the run) into a :class:`SaveError`: one line saying what could not be
written, that what was saved before is untouched (every save writes to a temporary name and renames,
see :mod:`simcse.io`), and how to continue.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

from simcse.distributed import PeerFailed, share_outcome
from simcse.io import atomic_write_text, recover

logger = logging.getLogger(__name__)

LOCK_FILE = ".simcse.lock"
CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
MODEL_DIR = "model"  # the best model by STS-B dev, a folder every reader loads
CHECKPOINTS_DIR = "checkpoints"


class RunFolder:
    """Every path of a run folder, and the writes of the run's own files.

    Args:
        root: The run folder (``output_dir``).
    """

    def __init__(self, root: str) -> None:
        self.root = root
        self.config = os.path.join(root, CONFIG_FILE)
        self.metrics = os.path.join(root, METRICS_FILE)
        self.model = os.path.join(root, MODEL_DIR)
        self.checkpoints = os.path.join(root, CHECKPOINTS_DIR)

    def prepare(self, config_yaml: str) -> None:
        """Repair what a kill during a save left behind, then write the resolved config (main process)."""
        for path in (self.model, self.metrics, self.config):
            recover(path)
        atomic_write_text(self.config, config_yaml)

    def truncate_metrics(self, step: int) -> None:
        """On resume, drop metric lines written after the checkpoint (they will be written again).

        A line cut short by a kill is dropped too (it can only be the last one).
        """
        if os.path.isfile(self.metrics):
            kept = []
            with open(self.metrics, encoding="utf-8", errors="replace") as f:
                for line in f:
                    with contextlib.suppress(ValueError):
                        if line.endswith("\n") and json.loads(line).get("step", 0) <= step:
                            kept.append(line)
            atomic_write_text(self.metrics, "".join(kept))

    def append_metrics(self, record: dict[str, Any]) -> None:
        """Append one step's record to ``metrics.jsonl`` (a :class:`SaveError` if it cannot be written)."""
        with saving("metrics", self.metrics, self.root), open(self.metrics, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


class RunFolderBusy(OSError):
    """Another live run holds the run folder."""


class SaveError(OSError):
    """A model or checkpoint could not be written; what was saved before is intact."""


def _holder_text(info: dict[str, Any]) -> str:
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} (started {info.get('started', '?')})"


class RunLock:
    """An exclusive lock on a run folder for the life of a run (``with RunLock(path): ...``).

    Args:
        output_dir: The run folder (created if missing).

    Raises:
        RunFolderBusy: when a live process holds the folder.
    """

    def __init__(self, output_dir: str) -> None:
        self.path = os.path.join(output_dir, LOCK_FILE)
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


def _reason(err: BaseException) -> str:
    """The OS's words for an I/O error, also when a library wrapped it (safetensors' ``IoError(Os {...})``)."""
    if isinstance(err, OSError) and err.strerror:
        return err.strerror
    text = str(err)
    if 'message: "' in text:  # SafetensorError: Error while serializing: IoError(Os { ..., message: "..." })
        return text.split('message: "', 1)[1].split('"', 1)[0]
    return " ".join(text.split()) or type(err).__name__


def _io_errors() -> tuple[type[BaseException], ...]:
    errors: tuple[type[BaseException], ...] = (OSError,)
    with contextlib.suppress(ImportError):
        from safetensors import SafetensorError

        errors += (SafetensorError,)
    return errors


@contextlib.contextmanager
def saving(what: str, path: str, output_dir: str) -> Iterator[None]:
    """Turn an I/O error inside the block into a one-line :class:`SaveError` about ``what`` at ``path``."""
    try:
        yield
    except _io_errors() as err:
        if isinstance(err, SaveError):
            raise
        raise SaveError(
            f"could not write the {what} to {path}: {_reason(err)}. Nothing saved before was changed; "
            f"fix the cause, then continue with --resume (output_dir {output_dir})"
        ) from err


def save_together(
    accelerator: Any,
    action: Callable[[], Any] | None,
    what: str,
    path: str,
    output_dir: str,
    cleanup: Callable[[], Any] | None = None,
) -> None:
    """Run ``action`` on this process (None: nothing here) and agree with every process on the outcome.

    Every process calls this at the same point. An I/O error on any process raises a one-line
    :class:`SaveError` on all of them (the failing one names the cause; the others name the failing
    process and repeat its message), after ``cleanup`` ran on the main process; no process is left
    waiting in a collective for one that failed. It is also where the other processes wait for a save
    made by the main process alone: on the long-wait group (``wait_timeout``), since writing a large
    model to network storage can outlast the training collectives' timeout.
    """
    error: SaveError | None = None
    try:
        with saving(what, path, output_dir):
            if action is not None:
                action()
    except SaveError as err:
        error = err
    try:
        share_outcome(error, f"writing the {what}")
    except (SaveError, PeerFailed) as failed:
        if cleanup is not None and accelerator.is_main_process:
            with contextlib.suppress(Exception):
                cleanup()
        if isinstance(failed, PeerFailed):
            raise SaveError(str(failed)) from None
        raise
