"""Resumable checkpoints and the trainer's state they keep: written to a temporary folder, renamed into place,
pruned after.

A checkpoint folder ``checkpoints/step-00000125`` holds Accelerate's state (model, optimizer,
scheduler, every process's RNG states) and ``trainer_state.json`` (:class:`TrainerState`, what the run
has done; ``train()`` returns it). The data position is the step itself
(:class:`simcse.data.sampler.BatchSchedule` and the stream are functions of it). A folder is complete
exactly when it has its final name: a run killed while writing leaves only a ``.tmp-*`` folder, which
resume ignores with a warning and the next save removes. Old checkpoints
are pruned only after the new one is in place, by a rename out of the way and then a delete, so a
``step-*`` folder is never half-deleted either.

The best model (``<output_dir>/model``) is written before the checkpoint of its step, so after a
crash it can be newer than the checkpoint resumed from: :func:`reconcile_best` then takes its
recorded score as the best so far, so the bookkeeping always describes the folder on disk.
:func:`start_run` makes the folder ready for a run, resumed or not.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Mapping
from typing import Any

from simcse.distributed import on_main
from simcse.io import StrPath, atomic_write_text, fsync_tree
from simcse.runs.folder import STATE_FILE, RunFolder, save_together

logger = logging.getLogger(__name__)

_NAME = re.compile(r"^step-(\d+)$")  # RunFolder.checkpoint's names
_OPTIONAL = ("fp16_overflow_skipped", "no_duplicates", "stream", "sources")  # recorded only by the runs that have them


@dataclasses.dataclass
class TrainerState:
    """What a run has done so far: written into each checkpoint (``trainer_state.json``) and restored from it.

    :meth:`as_dict` is the form ``train()`` returns and the checkpoint stores; a field of
    ``_OPTIONAL`` that is None (the run has no such thing) is left out of it.
    """

    step: int = 0  # optimizer steps taken
    best_metric: float = -math.inf  # metric_for_best of the saved model (the best so far; STS-B dev by default)
    best_step: int = -1  # its step; -1: no model saved yet
    nonfinite_skipped: int = 0  # updates skipped for a non-finite loss
    mixed_precision: str = "no"  # the precision the run trains in (the launcher's when the recipe leaves it)
    fp16_overflow_skipped: int | None = None  # fp16: updates skipped because the scaled gradients overflowed
    data: dict[str, int] = dataclasses.field(default_factory=dict)  # what reading skipped (ReadReport.counts)
    no_duplicates: dict[str, int] | None = None  # no_duplicates: global batches with a repeated text
    stream: dict[str, int] | None = None  # streaming: the position (examples each process has read, epoch)
    sources: dict[str, Any] | None = None  # datasets: per source, its batches so far and its own state

    def update(self, values: Mapping[str, Any]) -> None:
        """Take the fields named in ``values`` (a restored checkpoint's state, the data's position)."""
        for field in dataclasses.fields(self):
            if field.name in values:
                setattr(self, field.name, values[field.name])

    def as_dict(self) -> dict[str, Any]:
        """The state as a plain dict (what ``train()`` returns and ``trainer_state.json`` holds)."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if k not in _OPTIONAL or v is not None}


def _remove(path: str) -> None:
    """Rename ``path`` to a ``.tmp-*`` name (atomic), then delete it: it is never seen half-deleted."""
    trash = os.path.join(os.path.dirname(path), f".tmp-removing-{os.path.basename(path)}")
    os.replace(path, trash)  # (no such folder is left over: save_checkpoint cleared every .tmp-* first)
    shutil.rmtree(trash, ignore_errors=True)


def save_checkpoint(accelerator: Any, output_dir: StrPath, step: int, state: TrainerState, keep_last_n: int) -> str:
    """Save a checkpoint for ``step`` on every process; the main process renames and prunes.

    An I/O error on any process (a full disk...) raises :class:`simcse.runs.folder.SaveError` on every
    process, after the partial folder is removed: the checkpoints already there stay as they were.
    """
    run = RunFolder(output_dir)
    root, final = run.checkpoints, run.checkpoint(step)
    tmp = os.path.join(root, f".tmp-{os.path.basename(final)}")
    what = f"checkpoint of step {step}"

    def clear() -> None:
        os.makedirs(root, exist_ok=True)
        for name in os.listdir(root):
            if name.startswith(".tmp-"):  # left by a run killed mid-write
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)

    def finalize() -> None:
        atomic_write_text(os.path.join(tmp, STATE_FILE), json.dumps({**state.as_dict(), "step": step}, indent=2))
        fsync_tree(tmp)  # durable before it gets its final name (a power cut, not only a kill)
        if os.path.exists(final):  # a step run again after resuming from an older checkpoint
            _remove(final)
        os.replace(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep_last_n]:
            _remove(old)

    def drop_tmp() -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    main = accelerator.is_main_process
    save_together(accelerator, clear if main else None, what, root, run.root)
    save_together(accelerator, lambda: accelerator.save_state(tmp), what, tmp, run.root, cleanup=drop_tmp)
    save_together(accelerator, finalize if main else None, what, final, run.root, cleanup=drop_tmp)
    return final


def list_checkpoints(output_dir: StrPath) -> list[str]:
    """Complete checkpoints, oldest first; warns about partial folders left by a crash."""
    root = RunFolder(output_dir).checkpoints
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        match = _NAME.match(name)
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
        elif name.startswith(".tmp-"):
            logger.warning("ignoring %s, left by a run stopped while writing or pruning checkpoints", path)
    return [p for _, p in sorted(found)]


def load_latest(accelerator: Any, output_dir: StrPath) -> dict[str, Any] | None:
    """Restore the newest checkpoint that loads into the prepared objects; return its trainer state.

    A checkpoint that fails to load (a file damaged after it was written) is skipped with a
    warning in favour of the one before; if none loads, the error says so rather than starting over.
    """
    checkpoints, root = list_checkpoints(output_dir), RunFolder(output_dir).checkpoints
    for path in reversed(checkpoints):
        try:
            with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
                state = json.load(f)
            accelerator.load_state(path)
        except Exception as err:  # whatever the damage (truncated pickle, bad header), try the next one
            logger.warning("cannot load checkpoint %s (%s: %s); trying the one before", path, type(err).__name__, err)
            continue
        logger.info("resumed from %s (step %d)", path, state["step"])
        return state
    if checkpoints:
        raise RuntimeError(f"{root}: none of the {len(checkpoints)} checkpoints could be loaded")
    return None


def read_best(output_dir: StrPath) -> dict[str, Any] | None:
    """The ``{"step", "metric", "value"}`` record saved with the best model, or None."""
    path = RunFolder(output_dir).best
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def reconcile_best(output_dir: StrPath, state: TrainerState) -> None:
    """After resuming, make ``state``'s best metric and step describe ``<output_dir>/model``."""
    best, model = read_best(output_dir), RunFolder(output_dir).model
    if best is not None and best["step"] > state.step:
        logger.warning(
            "%s was saved at step %d, after the checkpoint (step %d); it stays the best so far (%s %.4f)",
            model, best["step"], state.step, best["metric"], best["value"],
        )  # fmt: skip
        state.best_metric, state.best_step = best["value"], best["step"]
    elif best is None and state.best_step >= 0:
        logger.warning("%s is missing; the next evaluation will write it", model)
        state.best_metric, state.best_step = -math.inf, -1


def start_run(accelerator: Any, output_dir: StrPath, config_yaml: str, state: TrainerState, resume: bool) -> None:
    """Make the run folder ready for a run, on every process (each part ends in an agreement).

    The main process repairs what a kill during a save left behind and writes the resolved config;
    when resuming, the newest checkpoint that loads is restored into the prepared objects and ``state``
    (:func:`load_latest`) and the best model's bookkeeping reconciled (:func:`reconcile_best`); then the
    main process drops the ``metrics.jsonl`` lines written after ``state``'s step.
    """
    run = RunFolder(output_dir)
    on_main(lambda: run.prepare(config_yaml), "preparing the run folder")
    if resume:
        restored = load_latest(accelerator, run.root)
        if restored is not None:
            state.update(restored)
        reconcile_best(run.root, state)
    # from no checkpoint (step 0) nothing is kept, not even an evaluation at step 0 (eval_on_start writes it again)
    on_main(lambda: run.truncate_metrics(state.step if state.step > 0 else -1), "trimming metrics.jsonl")
