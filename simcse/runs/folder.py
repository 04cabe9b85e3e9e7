"""The run folder: every path of a run named in one place, its own files written and read, save failures in one line.

:class:`RunFolder` names every file a run writes: ``config.yaml``, ``metrics.jsonl``, ``model/`` (the best
model, with ``best_metric.json``, ``README.md`` and ``training_curves.png``), ``checkpoints/step-*``
(each with ``trainer_state.json``), the lock, ``training_curves.png``, ``sts_test.json``, the seeds'
summaries and an experiment's cached result. It writes the run's config and appends to and reads back
``metrics.jsonl``; the other files are written by the modules of :mod:`simcse.runs`, through these names.

:func:`saving` turns any I/O error while writing a model or checkpoint (disk full, permission,
a folder removed under the run) into a :class:`SaveError`: one line saying what could not be
written, that what was saved before is untouched (every save writes to a temporary name and renames,
see :mod:`simcse.io`), and how to continue. :func:`save_together` makes every process agree on a save.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Iterator
from typing import Any

from simcse.distributed import PeerFailed, share_outcome
from simcse.io import StrPath, atomic_write_text, recover

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
MODEL_DIR = "model"  # the best model by STS-B dev, a folder every reader loads
BEST_FILE = "best_metric.json"  # in model/, beside the weights: the step and score it was saved at
CARD_FILE = "README.md"  # in model/: the model card
CURVES_FILE = "training_curves.png"  # in the run folder, and copied into model/ at the end of the run
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"  # in each checkpoint: simcse.runs.checkpoints.TrainerState
LOCK_FILE = ".simcse.lock"
TEST_RESULTS_FILE = "sts_test.json"  # the best model's STS test suite (simcse.runs.report)
SUMMARY_FILES = ("seeds.md", "seeds.json")  # a --seeds run's summary, beside its seed-<N> runs
RESULT_FILE = "experiment.json"  # simcse.experiments.run_experiment's cached result


class RunFolder:
    """Every path of a run folder, and the writes and reads of the run's own files (config, metrics).

    Args:
        root: The run folder (``output_dir``), ``str`` or ``os.PathLike``.
    """

    def __init__(self, root: StrPath) -> None:
        self.root = os.fspath(root)
        self.config = os.path.join(self.root, CONFIG_FILE)
        self.metrics = os.path.join(self.root, METRICS_FILE)
        self.model = os.path.join(self.root, MODEL_DIR)
        self.best = os.path.join(self.model, BEST_FILE)
        self.card = os.path.join(self.model, CARD_FILE)
        self.model_curves = os.path.join(self.model, CURVES_FILE)
        self.curves = os.path.join(self.root, CURVES_FILE)
        self.checkpoints = os.path.join(self.root, CHECKPOINTS_DIR)
        self.lock = os.path.join(self.root, LOCK_FILE)
        self.test_results = os.path.join(self.root, TEST_RESULTS_FILE)
        self.summaries = tuple(os.path.join(self.root, name) for name in SUMMARY_FILES)
        self.experiment = os.path.join(self.root, RESULT_FILE)

    def checkpoint(self, step: int) -> str:
        """The folder of the checkpoint of ``step`` (``checkpoints/step-00000125``)."""
        return os.path.join(self.checkpoints, f"step-{step:08d}")

    def seed_run(self, seed: int) -> str:
        """The run folder of one seed of a ``--seeds`` run (``seed-<seed>``)."""
        return os.path.join(self.root, f"seed-{seed}")

    def prepare(self, config_yaml: str) -> None:
        """Repair what a kill during a save left behind, then write the resolved config (main process)."""
        for path in (self.model, self.metrics, self.config):
            recover(path)
        atomic_write_text(self.config, config_yaml)

    def read_metrics(self) -> list[dict[str, Any]]:
        """The records of ``metrics.jsonl``, in order (none when there is no file yet)."""
        return read_metrics(self.metrics) if os.path.isfile(self.metrics) else []

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


def read_metrics(path: StrPath) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` file, in order; a line cut short by a kill is skipped."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


class SaveError(OSError):
    """A model or checkpoint could not be written; what was saved before is intact."""


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
