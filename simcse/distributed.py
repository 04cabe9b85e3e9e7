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


def collective_device() -> torch.device:
    """Where tensors for a collective must live: the current GPU under NCCL, else the CPU (gloo)."""
    if is_distributed() and "nccl" in str(dist.get_backend()) and "gloo" not in str(dist.get_backend()):
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def gather_rows(rows: torch.Tensor) -> torch.Tensor:
    """Concatenate ``rows`` over processes in rank order; each process may hold a different number of rows.

    No gradient. Shapes other than the first must agree; the result is on ``rows``' device. Two
    collectives (the row counts, then the rows padded to the largest count); every process must call it.
    """
    if not is_distributed():
        return rows
    device = collective_device()
    count = torch.tensor([rows.shape[0]], device=device)
    counts = [torch.empty_like(count) for _ in range(dist.get_world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c) for c in counts]
    padded = torch.zeros((max(sizes), *rows.shape[1:]), dtype=rows.dtype, device=device)  # (max rows, ...)
    padded[: rows.shape[0]] = rows.to(device)
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([part[:size] for part, size in zip(parts, sizes)]).to(rows.device)  # (sum of rows, ...)
