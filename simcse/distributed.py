"""Cross-process helpers: gather with gradient, rank offsets; identity on one process.

``accelerator.gather`` carries no gradient, so in-batch negatives from other processes would be
constants. :func:`gather_with_grad` all-gathers forward and sums the incoming gradients backward
(an all-reduce, which every backend including gloo supports), so the gradient of each process's
embeddings equals that of the single-process global batch.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank_and_world() -> tuple[int, int]:
    """This process's rank and the world size (0, 1 on a single process)."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


class _GatherWithGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        rank, world = rank_and_world()
        ctx.rank, ctx.n = rank, tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)  # (world * n, ...)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        # every process's loss depends on our rows: sum their gradients, keep our slice
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` (same shape on every rank) over processes in rank order, with gradient."""
    if not is_distributed():
        return tensor
    return _GatherWithGrad.apply(tensor)


def gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` over processes in rank order (no gradient; e.g. for queues)."""
    if not is_distributed():
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


def launched_on_cpu_only() -> bool:
    """True when a launcher started several processes (``WORLD_SIZE`` > 1) on a machine without GPUs.

    Accelerate then runs them as one gloo process group only if told ``cpu=True``; without it each
    process trains alone as "process 0 of 1" on the same rows and writes the same files.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.cuda.is_available():
        return False
    xpu = getattr(torch, "xpu", None)
    return not (xpu is not None and xpu.is_available())


def sum_over_processes(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over processes (a float tensor; itself on one process).

    The loop folds every per-step decision into one such call (loss, non-finite flag, stop request),
    so all processes take the same branch around the collectives that follow.
    """
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def all_agree(ok: bool, device: torch.device | str = "cpu") -> bool:
    """True when ``ok`` holds on every process (one collective; every process must call it)."""
    if not is_distributed():
        return ok
    flag = torch.tensor([0.0 if ok else 1.0], device=device)
    return float(sum_over_processes(flag)) == 0.0


def broadcast_from_main(obj: object) -> object:
    """The main process's ``obj`` on every process (a picklable object; itself on one process)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def init_cpu_group_from_env(timeout_s: float) -> tuple[int, int]:
    """Join the launcher's processes (``torchrun`` / ``accelerate launch`` env) in a gloo group; ``(rank, world)``.

    Used by jobs whose processes work apart and exchange only a few small objects (``simcse encode``):
    gloo on the CPU, whatever the accelerator, with ``timeout_s`` as the limit of any collective.
    """
    import datetime

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return rank_and_world()
