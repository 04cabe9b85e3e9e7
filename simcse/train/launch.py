"""The run's Accelerate state: the launcher's processes and precision, the timeouts, the engines this loop refuses."""

from __future__ import annotations

import datetime
import os
from typing import Any

from simcse.config import TrainConfig
from simcse.distributed import launched_on_cpu_only, setup_wait_group

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
