"""The training loop (Accelerate): read it top to bottom.

:func:`train` holds the run folder (:mod:`simcse.runs.lock`) and builds what the loop runs on
(:func:`simcse.train.prepared.prepare`: model, data, optimizer, schedule, objective, step). Each step runs
:class:`simcse.train.step.TrainStep` (forward over the views, the objective's loss, one agreement across
processes, the update), steps the schedule, records the step, evaluates on the dev evaluators (STS-B dev by
default; every process encodes a share) saving the best model by ``metric_for_best`` (see
:mod:`simcse.train.selection`), and checkpoints. Every file of the run folder goes through :mod:`simcse.runs`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from typing import Any

from simcse.config import TrainConfig, to_yaml
from simcse.runs.checkpoints import TrainerState, save_checkpoint, start_run
from simcse.runs.folder import RunFolder, SaveError
from simcse.runs.lock import hold_run_folder
from simcse.runs.report import finish_run, log_summary
from simcse.train.prepared import Prepared, make_accelerator, prepare
from simcse.train.selection import build_dev_evaluators, evaluate
from simcse.train.step import StepOutcome

logger = logging.getLogger(__name__)


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Train per ``cfg``; the best model by ``cfg.metric_for_best`` (STS-B dev) is saved to ``<output_dir>/model``.

    Runs as one process or as every process of a launch (``torchrun``, ``accelerate launch``): the
    run is the same either way (the same global batches, loss, learning rate and weights).

    Args:
        cfg: The run's config.
        resume: Continue from the newest complete checkpoint in ``cfg.output_dir``.
        stop_after: Stop (with a checkpoint) after this global step, as a pre-emption would;
            the learning-rate schedule still spans the full run.

    Returns the final trainer state (best metric and step, last step, counters):
    :meth:`simcse.runs.checkpoints.TrainerState.as_dict`.

    Raises:
        RunFolderBusy: another live run holds ``cfg.output_dir``.
        SaveError: a model or checkpoint could not be written (disk full, permissions...).
    """
    accelerator = make_accelerator(cfg)
    with hold_run_folder(accelerator, cfg.output_dir, resume):
        return _train(accelerator, cfg, RunFolder(cfg.output_dir), resume, stop_after).as_dict()


def _train(accelerator: Any, cfg: TrainConfig, run: RunFolder, resume: bool, stop_after: int | None) -> TrainerState:
    main = accelerator.is_main_process
    # the dev sets are read (and metric_for_best checked) first: a bad one fails before the corpus is tokenized
    evaluators = build_dev_evaluators(cfg)
    prep = prepare(cfg, accelerator)
    state = _start(accelerator, cfg, run, prep, resume)
    log_error: SaveError | None = None  # the main process's, shared with all at the next read
    # closed however the loop ends (a failed step included): SIGTERM's previous handler, the bar, the batches
    with contextlib.ExitStack() as resources:
        stop = resources.enter_context(_Stop())
        progress = resources.enter_context(_progress(prep.total, state.step, main))
        # the step's rows are a function of the step (exact resume); collated ahead, off the training thread
        batches = prep.data.batches(state.step, prep.total, accelerator.device)
        resources.callback(batches.close)  # a stream's reading thread stops; the loader's workers go
        prep.model.train()
        if cfg.eval_on_start and state.step == 0:  # the starting point, on the curves and a candidate for best
            start = {"step": 0, **evaluate(accelerator, prep.model, evaluators, cfg, run, state, 0)}
            log_error = _publish(accelerator, cfg, run, progress, start, 0)
        for step in range(state.step, prep.total):
            done = step + 1
            batch = next(batches)  # a stream that meets a bad row sets data.error: every process stops at the next read
            scores = done % cfg.eval_steps == 0 or done == prep.total
            checkpoint = done % (cfg.checkpoint_steps or cfg.eval_steps) == 0 or done == prep.total
            watch = bool(cfg.collapse_check_steps) and done % cfg.collapse_check_steps == 0
            # reading the step's outcome is its one host sync: every `read_every` steps, and where a decision needs
            # it (a function of the step alone, so every process reads, and sums over processes, at the same steps)
            read = done % prep.read_every == 0 or scores or checkpoint or watch or done == stop_after
            failed = log_error is not None or prep.data.error is not None
            outcome = prep.step(batch, read=read, stop=stop.requested or done == stop_after, failed=failed)
            prep.scheduler.step()
            state.step = done
            # a stop asked of any process by the previous step (SIGTERM) is read now by all, whatever logging_steps is
            if outcome is None and prep.step.stop_agreed():
                outcome = prep.step.read(failed)
            if outcome is None:
                continue
            if outcome.failed:
                why = "the main process could not write the metrics, or a process met a bad training row"
                raise prep.data.error or log_error or SaveError(f"{run.metrics}: another process failed ({why})")
            record = _record(outcome, state, done, cfg, prep.scheduler.get_last_lr()[0])
            record.update(prep.objective.read_metrics())  # e.g. a guide's masked_negatives (a sum over processes)
            state.update(prep.data.state(done))  # the stream position, no_duplicates' counts
            if watch:
                record.update(prep.objective.collapse_metrics())  # the global batch's spread; warns once on collapse
            # not on a stop: an interrupted run must evaluate (and keep the best of) the same steps
            if scores:
                record.update(evaluate(accelerator, prep.model, evaluators, cfg, run, state, done))
            log_error = _publish(accelerator, cfg, run, progress, record, outcome.steps) or log_error
            if checkpoint or outcome.stop:
                save_checkpoint(accelerator, run.root, done, state, cfg.keep_last_n)
            if outcome.stop:
                break
    if log_error is not None:
        raise log_error
    for tracker in accelerator.trackers:  # not end_training(): it ends the process group, which --seeds reuses
        tracker.finish()
    if main:
        log_summary(state, run.model, cfg.metric_for_best)
        finish_run(cfg)  # training_curves.png in the run and model folders, the model card
    return state


def _start(accelerator: Any, cfg: TrainConfig, run: RunFolder, prep: Prepared, resume: bool) -> TrainerState:
    """The state the loop starts from: the run folder made ready, the newest checkpoint restored when resuming."""
    state = TrainerState(mixed_precision=accelerator.mixed_precision)  # the launcher's when the recipe leaves it
    if prep.step.loss_scale is not None:
        state.fp16_overflow_skipped = 0
    start_run(accelerator, run.root, to_yaml(cfg), state, resume)  # after the data: a bad row leaves the folder be
    state.data = prep.data.report
    if cfg.log_with:
        accelerator.init_trackers("simcse", config={k: str(v) for k, v in vars(cfg).items()})
    return state


def _record(outcome: StepOutcome, state: TrainerState, step: int, cfg: TrainConfig, lr: float) -> dict[str, Any]:
    """The step's record for metrics.jsonl; counts and logs the skipped updates since the last read."""
    _count_nonfinite(outcome, state, step, cfg.max_nonfinite_steps)
    record: dict[str, Any] = {"step": step, "loss": outcome.loss, "lr": lr}
    if outcome.skipped:
        record["skipped"] = outcome.skipped
    if outcome.loss_scale is not None:  # fp16
        record["loss_scale"] = outcome.loss_scale
        if outcome.overflows:
            state.fp16_overflow_skipped = (state.fp16_overflow_skipped or 0) + outcome.overflows
            record["overflow_skipped"] = outcome.overflows
            logger.warning(
                "step %d: %d update(s) skipped since the last read: fp16 gradients overflowed; loss scale now %g",
                step, outcome.overflows, outcome.loss_scale,
            )  # fmt: skip
    return record


def _count_nonfinite(outcome: Any, state: TrainerState, step: int, limit: int) -> None:
    """Count the updates skipped since the last read (every process skipped them); stop after ``limit`` in a row."""
    if not outcome.skipped:
        return
    state.nonfinite_skipped += outcome.skipped
    if outcome.steps == 1:
        logger.warning("step %d: non-finite loss, update skipped (%d in a row)", step, outcome.in_a_row)
    else:
        logger.warning(
            "steps %d-%d: %d non-finite loss(es), updates skipped (at most %d in a row)",
            step - outcome.steps + 1, step, outcome.skipped, outcome.in_a_row,
        )  # fmt: skip
    if outcome.in_a_row >= limit:
        raise FloatingPointError(
            f"{outcome.in_a_row} non-finite losses in a row at step {step} (max_nonfinite_steps={limit}); "
            "lower learning_rate, raise temperature, or check the data"
        )


def _publish(
    accelerator: Any, cfg: TrainConfig, run: RunFolder, progress: Any, record: dict[str, Any], steps: int
) -> SaveError | None:
    """A record to metrics.jsonl and the bar (main process) and the trackers; a failed write is returned, to be
    shared with every process at the next read."""
    error = None
    if accelerator.is_main_process:
        try:
            run.append_metrics(record)
        except SaveError as err:
            error = err
        _show(progress, record, steps, cfg.metric_for_best)
    if cfg.log_with:
        accelerator.log(record, step=record["step"])
    return error


def _show(progress: Any, record: dict[str, Any], steps: int, metric: str = "stsb_dev") -> None:
    """The bar's postfix: the loss and, at an evaluation, the metric that selects the best model."""
    # 4 significant digits: a strong model's loss is ~1e-5
    shown = {k: f"{record[k]:.4g}" for k in ("loss", metric) if isinstance(record.get(k), (int, float))}
    progress.update(steps)
    progress.set_postfix(shown)


class _Stop:
    """SIGTERM (pre-emption) sets a flag; the loop saves a checkpoint and exits cleanly.

    A context manager: SIGTERM's previous handler is given back when the block ends, however it ends
    (else a later SIGTERM in the same process, e.g. the next ``train()`` of ``--seeds``, would be swallowed).
    """

    def __init__(self) -> None:
        self.requested, self._previous = False, None

    def __enter__(self) -> _Stop:
        if hasattr(signal, "SIGTERM"):
            # ValueError: not the main thread (e.g. a notebook worker); then SIGTERM is not handled
            with contextlib.suppress(ValueError):
                self._previous = signal.signal(signal.SIGTERM, self._handler)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handler(self, signum: int, frame: Any) -> None:
        logger.warning("SIGTERM received: saving a checkpoint and stopping")
        self.requested = True


def _progress(total: int, initial: int, enabled: bool) -> Any:
    """The training progress bar (off on other ranks, and where ``TQDM_DISABLE`` is set, as tqdm documents)."""
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=disable, dynamic_ncols=True)
