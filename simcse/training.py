"""The SimCSE training loop on Accelerate: one forward over all views, InfoNCE, best checkpoint kept."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
from typing import Any

import torch

from simcse.checkpoint import (
    BEST_FILE,
    list_checkpoints,
    load_latest,
    reconcile_best,
    save_checkpoint,
)
from simcse.config import TrainConfig, to_yaml
from simcse.data import BatchSchedule, TokenizedViews
from simcse.distributed import (
    all_agree,
    launched_on_cpu_only,
    rank_and_world,
    refuse_data_parallel,
    sum_over_processes,
)
from simcse.evaluation.scoring import evaluate_sts
from simcse.evaluation.tasks import load_task
from simcse.grad_cache import GradCache
from simcse.io import atomic_write_text, recover
from simcse.model import build_model, length_group_rows, mask_tokens
from simcse.model_card import CARD_FILE, finish_run, render_model_card
from simcse.objective_step import ObjectiveStep
from simcse.run_dir import RunFolderBusy, RunLock, SaveError, save_together, saving
from simcse.train_data import load_training_views

logger = logging.getLogger(__name__)


def embed_views(model: torch.nn.Module, batch: dict[str, torch.Tensor], cfg: TrainConfig) -> torch.Tensor:
    """Every view of the batch in one step's forward -> ``(views, batch, dim)``.

    Unsupervised rows hold each sentence twice, so the two copies get different dropout masks. The
    rows go through the model as one batch, or, with :func:`simcse.model.length_group_rows`, as
    length-sorted groups of it inside the model's one forward call (the same embeddings with less
    padding; see :func:`simcse.model.grouped_forward`).
    ``same_dropout_mask`` (an ablation) forwards the first view once and uses it for both.
    """
    views = cfg.num_views
    group = length_group_rows(cfg, batch["input_ids"].device)
    if cfg.same_dropout_mask:
        first = {k: v[: v.shape[0] // views] for k, v in batch.items()}
        z = model(**first, group_rows=group)  # (batch, dim)
        return torch.stack([z] * views)  # (views, batch, dim)
    z = model(**batch, group_rows=group)  # (views * batch, dim)
    return z.view(views, -1, z.shape[-1])  # (views, batch, dim)


def compute_loss(
    model: Any, batch: dict[str, torch.Tensor], cfg: TrainConfig, tokenizer: Any, objective: ObjectiveStep | None = None
) -> torch.Tensor:
    """The full training loss of one batch (``cfg.objective``, plus the weighted MLM loss if enabled).

    ``objective`` carries the objective's state across steps (queue, collapse watch); None builds a
    fresh one, which suits stateless objectives (a queue would start empty).
    """
    z = embed_views(model, batch, cfg)  # (views, batch, dim)
    loss = (objective or ObjectiveStep(cfg, z.shape[-1])).loss(model, z, batch)
    if cfg.do_mlm:
        special = torch.isin(batch["input_ids"], torch.tensor(tokenizer.all_special_ids, device=loss.device))
        masked, labels = mask_tokens(
            batch["input_ids"], special | (batch["attention_mask"] == 0), tokenizer.mask_token_id,
            len(tokenizer), cfg.mlm_probability,
        )  # fmt: skip
        mlm_batch = {**batch, "input_ids": masked, "labels": labels}
        inner = model.module if hasattr(model, "module") else model
        loss = loss + cfg.mlm_weight * inner.mlm_loss(**mlm_batch)
    return loss


def make_grad_cache(
    cfg: TrainConfig, accelerator: Any = None, objective: ObjectiveStep | None = None
) -> GradCache | None:
    """The gradient cache for ``cfg.grad_cache_chunk_size``, or None.

    Its loss is the objective's own (:meth:`ObjectiveStep.loss`, as in :func:`compute_loss`), so the
    step records the same collapse metrics with or without the cache.
    """
    if not cfg.grad_cache_chunk_size:
        return None
    step = objective if objective is not None else ObjectiveStep(cfg, 0)

    def loss_fn(z: torch.Tensor) -> torch.Tensor:
        return step.loss(None, z, {})  # the cache's objectives (infonce) read neither model nor batch

    return GradCache(cfg.grad_cache_chunk_size, loss_fn, cfg.num_views, accelerator)


class DevEvaluator:
    """STS-B dev (and SICK-R dev) Spearman with alignment/uniformity, files read once."""

    def __init__(self, data_dir: str | None, batch_size: int) -> None:
        self.tasks = {
            "STSBenchmark": load_task("STSBenchmark", data_dir, stsb_split="dev"),
            "SICKRelatedness": load_task("SICKRelatedness", data_dir, sick_mode="dev"),
        }
        self.batch_size = batch_size

    def __call__(self, encoder: Any, use_head: bool) -> dict[str, float]:
        """Score ``encoder`` (left in its previous train/eval mode)."""
        result = evaluate_sts(
            lambda s: encoder.encode(s, batch_size=self.batch_size, use_head=use_head),
            tasks=list(self.tasks),
            loaded=self.tasks,
            stsb_split="dev",
        )
        return {
            "stsb_dev": result["tasks"]["STSBenchmark"]["score"],
            "sickr_dev": result["tasks"]["SICKRelatedness"]["score"],
            "alignment": result["alignment"],
            "uniformity": result["uniformity"],
        }


class _Stop:
    """SIGTERM (pre-emption) sets a flag; the loop saves a checkpoint and exits cleanly."""

    def __init__(self) -> None:
        self.requested, self._previous = False, None
        if hasattr(signal, "SIGTERM"):
            # ValueError: not the main thread (e.g. a notebook worker); then SIGTERM is not handled
            with contextlib.suppress(ValueError):
                self._previous = signal.signal(signal.SIGTERM, self._handler)

    def close(self) -> None:
        """Give SIGTERM back to the previous handler (else a later SIGTERM would be swallowed)."""
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def _handler(self, signum: int, frame: Any) -> None:
        logger.warning("SIGTERM received: saving a checkpoint and stopping")
        self.requested = True


def build_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """AdamW, fused: one kernel per tensor instead of a dozen ops (the same update; CPU and CUDA alike)."""
    trainable = [p for p in model.parameters() if p.requires_grad]  # not a momentum encoder's
    return torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay, fused=True)


def _scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total: int) -> Any:
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)


def _log(path: str, record: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _truncate_metrics(path: str, step: int) -> None:
    """On resume, drop metric lines written after the checkpoint (they will be written again).

    A line cut short by a kill is dropped too (it can only be the last one).
    """
    if os.path.isfile(path):
        kept = []
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    if line.endswith("\n") and json.loads(line).get("step", 0) <= step:
                        kept.append(line)
        atomic_write_text(path, "".join(kept))


def train(cfg: TrainConfig, resume: bool = False, stop_after: int | None = None) -> dict[str, Any]:
    """Train per ``cfg``; the best model by STS-B dev is saved to ``<output_dir>/model``.

    Runs as one process or as every process of a launch (``torchrun``, ``accelerate launch``): the
    run is the same either way (the same global batches, loss, learning rate and weights).

    Args:
        cfg: The run's config.
        resume: Continue from the newest complete checkpoint in ``cfg.output_dir``.
        stop_after: Stop (with a checkpoint) after this global step, as a pre-emption would;
            the learning-rate schedule still spans the full run.

    Returns the final trainer state (best metric and step, last step, counters).

    Raises:
        RunFolderBusy: another live run holds ``cfg.output_dir``.
        SaveError: a model or checkpoint could not be written (disk full, permissions...).
    """
    accelerator = _accelerator(cfg)
    lock = RunLock(cfg.output_dir) if accelerator.is_main_process else None
    refusal: BaseException | None = None
    if lock is not None:
        try:
            lock.acquire()
        except RunFolderBusy as err:
            refusal, lock = err, None
        else:
            if not resume and list_checkpoints(cfg.output_dir):  # a fresh start would mix with and prune them
                refusal = FileExistsError(
                    f"{cfg.output_dir}: holds an earlier run's checkpoints; resume it or pick another folder"
                )
    if not all_agree(refusal is None, accelerator.device):  # every process stops; none waits in a barrier
        if lock is not None:
            lock.release()
        raise refusal or RunFolderBusy(f"{cfg.output_dir}: the main process could not take the run folder")
    try:
        return _train(accelerator, cfg, resume, stop_after)
    finally:
        if lock is not None:
            lock.release()


def _accelerator(cfg: TrainConfig) -> Any:
    """Accelerate's state for this run: the launcher's processes, the config's precision.

    ``cpu=True`` when a launcher started several processes without GPUs (else each trains alone);
    the scheduler is stepped once per global step (Accelerate would step it once per process).
    """
    from accelerate import Accelerator

    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, log_with=cfg.log_with, project_dir=cfg.output_dir,
        cpu=launched_on_cpu_only(), step_scheduler_with_optimizer=False,
    )  # fmt: skip
    refuse_data_parallel(accelerator.num_processes)
    return accelerator


def _train(accelerator: Any, cfg: TrainConfig, resume: bool, stop_after: int | None) -> dict[str, Any]:
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model = build_model(cfg)
    tokenizer = model.encoder.tokenizer
    views: TokenizedViews = load_training_views(cfg, tokenizer, accelerator.is_main_process)
    schedule = BatchSchedule(len(views), cfg.batch_size, accelerator.num_processes, cfg.seed)
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * schedule.steps_per_epoch
    optimizer = build_optimizer(model, cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, _scheduler(optimizer, cfg, total))
    evaluator = DevEvaluator(cfg.data_dir, cfg.eval_batch_size) if accelerator.is_main_process else None
    objective = ObjectiveStep(cfg, accelerator.unwrap_model(model).encoder.dim)
    if objective.state is not None:  # a queue / memory: saved and restored with every checkpoint
        accelerator.register_for_checkpointing(objective.state.to(accelerator.device))
    out, metrics_path = cfg.output_dir, os.path.join(cfg.output_dir, "metrics.jsonl")
    state: dict[str, Any] = {"step": 0, "best_metric": -math.inf, "best_step": -1, "nonfinite_skipped": 0}
    if accelerator.is_main_process:
        for path in (os.path.join(out, "model"), metrics_path, os.path.join(out, "config.yaml")):
            recover(path)  # what a kill during a save left behind
        atomic_write_text(os.path.join(out, "config.yaml"), to_yaml(cfg))
    if resume and (restored := load_latest(accelerator, out)) is not None:
        state.update(restored)
    if resume:
        reconcile_best(out, state)
    state["data"] = views.report
    if accelerator.is_main_process:
        _truncate_metrics(metrics_path, state["step"])
    if cfg.log_with:
        accelerator.init_trackers("simcse", config={k: str(v) for k, v in vars(cfg).items()})
    stop, rank, in_a_row = _Stop(), accelerator.process_index, 0
    log_error: SaveError | None = None
    checkpoint_every = cfg.checkpoint_steps or cfg.eval_steps
    progress = _progress(total, state["step"], accelerator.is_main_process)
    cache = make_grad_cache(cfg, accelerator, objective)  # None: one forward with graph over the whole batch
    backward = cache.backward if cache else accelerator.backward
    model.train()
    for step in range(state["step"], total):
        batch = {k: v.to(accelerator.device) for k, v in views.collate(schedule.rows(step, rank)).items()}
        with accelerator.autocast():
            loss = cache.loss(model, batch) if cache else compute_loss(model, batch, cfg, tokenizer, objective)
        # one collective per step decides for every process: the mean loss, whether any process's loss is
        # non-finite (then all skip the update: a process alone in DDP's all-reduce would wait for ever) and
        # whether any process was asked to stop (then all checkpoint the same step)
        mean_loss, finite, stop_now, failed = _agree_on_step(
            loss, stop.requested or step + 1 == stop_after, log_error is not None
        )
        if failed:  # the main process could not write the metrics of the step before
            raise log_error or SaveError(f"{metrics_path}: the main process could not write the metrics")
        if not finite:
            in_a_row, state["nonfinite_skipped"] = in_a_row + 1, state["nonfinite_skipped"] + 1
            logger.warning("step %d: non-finite loss, update skipped (%d in a row)", step + 1, in_a_row)
            optimizer.zero_grad(set_to_none=True)
            if in_a_row >= cfg.max_nonfinite_steps:
                raise FloatingPointError(
                    f"{in_a_row} non-finite losses in a row at step {step + 1} (max_nonfinite_steps="
                    f"{cfg.max_nonfinite_steps}); lower learning_rate, raise temperature, or check the data"
                )
        else:
            in_a_row = 0
            backward(loss)
            if cfg.max_grad_norm > 0:
                accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            objective.after_step(model)  # EMA of the momentum encoder, enqueue this step's keys
        scheduler.step()
        state["step"] = done = step + 1
        progress.update(1)
        record: dict[str, Any] = {"step": done, "loss": mean_loss, "lr": scheduler.get_last_lr()[0]}
        if cfg.collapse_check_steps and done % cfg.collapse_check_steps == 0:
            record.update(objective.collapse_metrics())  # the global batch's spread; warns once on collapse
        # not on a stop: an interrupted run must evaluate (and keep the best of) the same steps
        if done % cfg.eval_steps == 0 or done == total:
            record.update(_evaluate(accelerator, model, evaluator, cfg, state, done))
        if accelerator.is_main_process:
            try:
                with saving("metrics", metrics_path, out):
                    _log(metrics_path, record)
            except SaveError as err:
                log_error = err  # raised by every process at the next step's agreement
            progress.set_postfix(
                loss=f"{record['loss']:.4f}",
                **({"stsb_dev": f"{record['stsb_dev']:.2f}"} if "stsb_dev" in record else {}),
            )
        if cfg.log_with:
            accelerator.log(record, step=done)
        if done % checkpoint_every == 0 or done == total or stop_now:
            save_checkpoint(accelerator, out, done, state, cfg.keep_last_n)
        if stop_now:
            break
    if log_error is not None:
        raise log_error
    progress.close()
    stop.close()
    accelerator.end_training()
    if accelerator.is_main_process:
        _summarise(state, out)
        finish_run(cfg)  # training_curves.png in the run and model folders, the model card
    return state


def _agree_on_step(loss: torch.Tensor, stop: bool, failed: bool) -> tuple[float, bool, bool, bool]:
    """``(mean loss, every loss finite, any process stopping, any process failed)`` over all processes.

    One sum over processes, the step's one host sync.
    """
    local = loss.detach().float().reshape(1)
    finite = torch.isfinite(local)
    flags = torch.tensor([float(stop), float(failed)], device=local.device)
    total = sum_over_processes(torch.cat([torch.where(finite, local, 0.0), (~finite).float(), flags])).tolist()
    nonfinite = total[1] > 0
    return (math.nan if nonfinite else total[0] / rank_and_world()[1]), not nonfinite, total[2] > 0, total[3] > 0


def _summarise(state: dict[str, Any], out: str) -> None:
    """Log the outcome, with a warning for anything skipped on the way (also in the returned state)."""
    model = os.path.join(out, "model")
    logger.info("best STS-B dev %.2f at step %d; model in %s", state["best_metric"], state["best_step"], model)
    skipped = {k: v for k, v in state["data"].items() if v}
    if skipped or state["nonfinite_skipped"]:
        logger.warning(
            "skipped: %s; %d step(s) with a non-finite loss",
            ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in skipped.items()) or "no input lines",
            state["nonfinite_skipped"],
        )


def _evaluate(
    accelerator: Any, model: Any, evaluator: DevEvaluator | None, cfg: TrainConfig, state: dict, step: int
) -> dict:
    """Score on the main process; save the model when STS-B dev improves (ties keep the earlier)."""
    result: dict[str, Any] = {}
    save = None
    folder = os.path.join(cfg.output_dir, "model")
    if accelerator.is_main_process and evaluator is not None:
        encoder = accelerator.unwrap_model(model).encoder
        result = evaluator(encoder, use_head=not cfg.mlp_only_train)
        encoder.train()
        if result["stsb_dev"] > state["best_metric"]:
            state["best_metric"], state["best_step"] = result["stsb_dev"], step
            best = {BEST_FILE: json.dumps({"step": step, "metric": "stsb_dev", "value": result["stsb_dev"]})}
            best[CARD_FILE] = render_model_card(cfg, result, step)  # saved with the weights, atomically

            def save() -> None:
                encoder.save(folder, include_head=not cfg.mlp_only_train, extra_files=best)
                logger.info("step %d: best STS-B dev so far (%.2f), saved to %s", step, result["stsb_dev"], folder)

            result["new_best"] = True
    # every process waits here for the save, and stops with it if it fails
    save_together(accelerator, save, "best model", folder, cfg.output_dir)
    return result


def _progress(total: int, initial: int, enabled: bool) -> Any:
    """The training progress bar (off on other ranks, and where ``TQDM_DISABLE`` is set, as tqdm documents)."""
    from tqdm.auto import tqdm

    disable = not enabled or os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false")
    return tqdm(total=total, initial=initial, desc="train", unit="step", disable=disable, dynamic_ncols=True)
