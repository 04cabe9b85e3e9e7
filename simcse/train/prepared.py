"""What the training loop runs on (:class:`Prepared`), built in one place: :func:`prepare`, shared with the benchmarks.

``prepare(cfg, accelerator)`` seeds, builds the model (:mod:`simcse.train.model`), opens the training data
(map-style Arrow data, or a stream with ``streaming: true``: :mod:`simcse.data`), builds AdamW and the
learning-rate schedule, hands them to ``accelerator.prepare``, and builds the objective's loop-side state
and the step (:class:`simcse.train.step.TrainStep`). ``scripts/bench/bench_train.py`` and
``scripts/bench/bench_data.py`` time what it returns, so the benchmarks run the loop's own objects.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from simcse.config import TrainConfig
from simcse.data.cache import load_training_views
from simcse.data.loader import MapData
from simcse.data.stream import StreamData
from simcse.train.model import build_model
from simcse.train.objective_step import ObjectiveStep
from simcse.train.step import TrainStep, build_optimizer


@dataclasses.dataclass
class Prepared:
    """Everything one run's steps need, prepared for its processes.

    Attributes:
        model: The training model (:class:`simcse.train.model.ContrastiveModel`), wrapped by Accelerate.
        optimizer: AdamW, wrapped by Accelerate.
        scheduler: The learning-rate schedule: linear warmup, then linear decay to 0 at ``total``.
        data: :class:`simcse.data.loader.MapData` or :class:`simcse.data.stream.StreamData`.
        total: Optimizer steps of the run (``max_steps``, else the epochs' steps).
        objective: The objective's loop-side state (queue, momentum encoder, collapse watch).
        step: The training step.
        read_every: Steps between reads of the step's outcome (its one host sync): ``logging_steps``,
            else 1 on CPU and 10 on GPU.
    """

    model: Any
    optimizer: Any
    scheduler: Any
    data: MapData | StreamData
    total: int
    objective: ObjectiveStep
    step: TrainStep
    read_every: int


def prepare(cfg: TrainConfig, accelerator: Any) -> Prepared:
    """Build and prepare the model, data, optimizer, schedule, objective and step of a run of ``cfg``.

    Args:
        cfg: The run's config.
        accelerator: The run's ``accelerate.Accelerator`` (:func:`simcse.train.launch.make_accelerator`).
    """
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model = build_model(cfg)
    data = open_training_data(cfg, model.encoder.tokenizer, accelerator)
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * data.steps_per_epoch  # type: ignore[operator]
    optimizer = build_optimizer(model, cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, lr_schedule(optimizer, cfg, total))
    objective = ObjectiveStep(cfg, accelerator.unwrap_model(model).encoder.dim)
    if objective.state is not None:  # a queue / memory: saved and restored with every checkpoint
        accelerator.register_for_checkpointing(objective.state.to(accelerator.device))
    step = TrainStep(accelerator, model, optimizer, cfg, objective)
    if step.loss_scale is not None:  # fp16: the scale continues where the checkpoint left it
        accelerator.register_for_checkpointing(step.loss_scale)
    every = cfg.logging_steps or (1 if accelerator.device.type == "cpu" else 10)
    return Prepared(model, optimizer, scheduler, data, total, objective, step, every)


def open_training_data(cfg: TrainConfig, tokenizer: Any, accelerator: Any) -> MapData | StreamData:
    """The run's data: :class:`simcse.data.loader.MapData` (Arrow, tokenized once by the main process,
    memory-mapped by every process), or :class:`simcse.data.stream.StreamData` with ``streaming: true``.

    Either gives ``batches(start, total, device)`` (this process's rows of every step from ``start``),
    ``steps_per_epoch``, ``report`` (what reading skipped), ``state(step)`` and ``error``.
    """
    if cfg.streaming:
        return StreamData(cfg, tokenizer, accelerator.process_index, accelerator.num_processes)
    views = load_training_views(cfg, tokenizer, accelerator.is_main_process, accelerator)
    return MapData(views, cfg, accelerator.process_index, accelerator.num_processes)


def lr_schedule(optimizer: Any, cfg: TrainConfig, total: int) -> Any:
    """The learning rate: linear warmup over ``warmup_steps``, then linear decay to 0 at step ``total``."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)
