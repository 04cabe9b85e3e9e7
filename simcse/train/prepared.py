"""A run prepared: its Accelerate state (:func:`make_accelerator`) and what the loop runs on (:func:`prepare`).

:func:`make_accelerator` takes the launcher's processes and precision, sets the timeouts and refuses the
engines this loop has not been checked with. ``prepare(cfg, accelerator)``, shared with the benchmarks,
seeds, builds the model (:mod:`simcse.train.model`), opens the training data (map-style Arrow data, or a
stream with ``streaming: true``: :mod:`simcse.data`), builds AdamW and the learning-rate schedule, hands
them to ``accelerator.prepare``, and builds the objective's loop-side state and the step
(:class:`simcse.train.step.TrainStep`). ``scripts/bench/bench_train.py`` and
``scripts/bench/bench_data.py`` time what it returns, so the benchmarks run the loop's own objects.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Any

from simcse.config import TrainConfig
from simcse.config.sources import source_configs, source_label
from simcse.data.cache import load_training_views
from simcse.data.loader import MapData
from simcse.data.mixture import MixedData
from simcse.data.stream import StreamData
from simcse.data.views import AugmentedViews
from simcse.distributed import launched_on_cpu_only, setup_wait_group
from simcse.train.model import build_model
from simcse.train.objective_step import ObjectiveStep
from simcse.train.step import TrainStep, build_optimizer

# what `accelerate launch` sets for the engine of its config file, read by Accelerator() itself
_ENGINE_FLAGS = {"ACCELERATE_USE_DEEPSPEED": "DEEPSPEED", "ACCELERATE_USE_FSDP": "FSDP"}


def make_accelerator(cfg: TrainConfig) -> Any:
    """Accelerate's state for this run: the launcher's processes, the launcher's or the config's precision.

    ``mixed_precision`` None leaves the precision to ``accelerate config`` / ``ACCELERATE_MIXED_PRECISION``.
    ``cpu=True`` when a launcher started several processes without GPUs (else each trains alone); the
    scheduler is stepped once per global step (Accelerate would step it once per process). The training
    collectives time out after ``cfg.ddp_timeout`` seconds, waits for one process's long work after
    ``cfg.wait_timeout`` (:func:`simcse.distributed.setup_wait_group`). fp16's loss scaling is the training
    step's own (:class:`simcse.train.step.LossScale`), so Accelerate's GradScaler is off. Engines not yet
    checked with this loop (FSDP, DeepSpeed) are refused from the launcher's settings, before anything is
    built; bf16 on GPUs that only emulate it is refused too.
    """
    import torch
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import GradScalerKwargs, InitProcessGroupKwargs

    for flag, engine in _ENGINE_FLAGS.items():
        if os.environ.get(flag, "").strip().lower() in ("1", "true", "yes", "y", "on", "t"):
            refuse_engine(engine)
    # the precision is process-wide state in Accelerate: a second train() in one process (a notebook, a
    # grid) with another precision would be refused; the launcher's process group (PartialState) stays
    AcceleratorState._reset_state(reset_partial_state=False)
    handlers = [
        InitProcessGroupKwargs(timeout=datetime.timedelta(seconds=cfg.ddp_timeout)),
        GradScalerKwargs(enabled=False),
    ]
    accelerator = Accelerator(
        mixed_precision=cfg.mixed_precision, log_with=cfg.log_with, project_dir=cfg.output_dir,
        cpu=launched_on_cpu_only(), step_scheduler_with_optimizer=False, kwargs_handlers=handlers,
    )  # fmt: skip
    refuse_engine(str(accelerator.distributed_type))
    setup_wait_group(cfg.wait_timeout)
    cuda = accelerator.device.type == "cuda"
    if cuda and accelerator.mixed_precision == "bf16" and not torch.cuda.is_bf16_supported(including_emulation=False):
        raise ValueError(
            f"{torch.cuda.get_device_name()} has no bf16 kernels (only an emulation, several times slower): "
            "use mixed_precision: fp16"
        )
    if cuda and cfg.tf32:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    return accelerator


def refuse_engine(distributed_type: str) -> None:
    """Refuse, in one line, the scale-out engines this loop has not been checked with (see README, Scaling out)."""
    name = distributed_type.rsplit(".", 1)[-1]
    if name == "FSDP":
        raise ValueError(
            "FSDP (from `accelerate config`) is not supported yet: evaluation, best-model saving and checkpoints "
            "have not been checked with sharded weights on GPUs. Use DDP (training/configs/accelerate/multi_gpu.yaml); "
            "SimCSE encoders fit on one GPU, and grad_cache_chunk_size gives large batches in little memory"
        )
    if name == "DEEPSPEED":
        raise ValueError(
            "DeepSpeed (from `accelerate config`) is not supported yet: it has not been run with this loop on GPUs; "
            "ZeRO-3 (it shards the parameters that evaluation and saving read whole) and DeepSpeed with "
            "grad_cache_chunk_size (its engine would step on the cache's embeddings-only backward) will stay refused. "
            "Use DDP (training/configs/accelerate/multi_gpu.yaml), with grad_cache_chunk_size for large batches"
        )


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
    data: MapData | StreamData | MixedData
    total: int
    objective: ObjectiveStep
    step: TrainStep
    read_every: int


def prepare(cfg: TrainConfig, accelerator: Any) -> Prepared:
    """Build and prepare the model, data, optimizer, schedule, objective and step of a run of ``cfg``.

    Args:
        cfg: The run's config.
        accelerator: The run's ``accelerate.Accelerator`` (:func:`make_accelerator`).
    """
    from accelerate.utils import set_seed

    set_seed(cfg.seed)
    model = build_model(cfg)
    data = open_training_data(cfg, model.encoder.tokenizer, accelerator)
    total = cfg.max_steps if cfg.max_steps > 0 else cfg.num_epochs * data.steps_per_epoch  # type: ignore[operator]
    optimizer = build_optimizer(model, cfg)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, lr_schedule(optimizer, cfg, total))
    encoder = accelerator.unwrap_model(model).encoder
    objective = ObjectiveStep(cfg, encoder.dim, encoder.tokenizer)
    if objective.state is not None:  # a queue / memory: saved and restored with every checkpoint
        accelerator.register_for_checkpointing(objective.state.to(accelerator.device))
    step = TrainStep(accelerator, model, optimizer, cfg, objective)
    if step.loss_scale is not None:  # fp16: the scale continues where the checkpoint left it
        accelerator.register_for_checkpointing(step.loss_scale)
    every = cfg.logging_steps or (1 if accelerator.device.type == "cpu" else 10)
    return Prepared(model, optimizer, scheduler, data, total, objective, step, every)


def open_training_data(cfg: TrainConfig, tokenizer: Any, accelerator: Any) -> MapData | StreamData | MixedData:
    """The run's data: :class:`simcse.data.loader.MapData` (Arrow, tokenized once by the main process,
    memory-mapped by every process), or :class:`simcse.data.stream.StreamData` with ``streaming: true``.

    Either gives ``batches(start, total, device)`` (this process's rows of every step from ``start``),
    ``steps_per_epoch``, ``report`` (what reading skipped), ``state(step)`` and ``error``. With ``datasets``,
    :class:`simcse.data.mixture.MixedData` over each source's own.
    """
    if cfg.datasets:  # several sources: each opened as its own run would open it
        names = [source_label(cfg, i) for i in range(len(cfg.datasets))]
        sources = [open_training_data(c, tokenizer, accelerator) for c in source_configs(cfg)]
        return MixedData(sources, names, cfg.dataset_sampling, cfg.seed)
    if cfg.streaming:
        return StreamData(cfg, tokenizer, accelerator.process_index, accelerator.num_processes)
    views = load_training_views(cfg, tokenizer, accelerator.is_main_process, accelerator)
    if cfg.augments:  # the views are made per step: augmentations, next-sentence positives
        views = AugmentedViews(views, cfg, tokenizer)
    return MapData(views, cfg, accelerator.process_index, accelerator.num_processes)


def lr_schedule(optimizer: Any, cfg: TrainConfig, total: int) -> Any:
    """The learning rate: linear warmup over ``warmup_steps``, then linear decay to 0 at step ``total``."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, cfg.warmup_steps, total)
