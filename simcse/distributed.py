"""Cross-process helpers: gather with gradient, rank offsets, agreements; identity on one process.

``accelerator.gather`` carries no gradient, so in-batch negatives from other processes would be
constants. :func:`gather_with_grad` all-gathers forward and sums the incoming gradients backward
(an all-reduce, which every backend including gloo supports), so the gradient of each process's
embeddings equals that of the single-process global batch.

Two kinds of wait, two timeouts. The training step's collectives run on the default process group
(NCCL on GPUs), whose timeout (``ddp_timeout``) should stay short enough to catch a real hang. Where
every process waits for one process's long work (the main process tokenizing the corpus, evaluating,
writing the best model or a checkpoint), they wait in :func:`share_outcome` on a separate gloo group
with its own, longer timeout (:func:`setup_wait_group`, ``wait_timeout``): a CPU-side wait that NCCL's
watchdog never sees. :func:`share_outcome` also carries the outcome: when the work failed on one
process, every process raises at once with that process's message, instead of the others waiting for
a collective that never comes until the timeout.
"""

from __future__ import annotations

import contextlib
import datetime
import os
from collections.abc import Callable
from typing import Any

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



class PeerFailed(RuntimeError):
    """Another process failed; raised on every process that did not, with the failing process's message."""


_WAIT: dict[str, object] = {}  # the gloo group for long waits: {"group", "timeout", "world"}


def setup_wait_group(timeout_s: float) -> None:
    """Create the gloo group on which :func:`share_outcome` waits, with a timeout of ``timeout_s`` seconds.

    Every process must call it at the same point (creating a group is collective); calling it again
    with the same timeout reuses the group. Nothing happens on one process.
    """
    if not is_distributed():
        return
    key = (float(timeout_s), dist.get_world_size(), id(dist.group.WORLD))
    if _WAIT.get("key") != key:
        group = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=timeout_s))
        _WAIT.update(key=key, group=group)


def end_process_groups() -> None:
    """End the process group this process joined and every group made from it (local; not a collective).

    Our own reference to the long-wait group goes first, so that destroying the groups frees their native
    objects (gloo's worker threads) now, while the interpreter is whole. A group left for the interpreter's
    exit to free is torn down in no set order with the rest, and a process can then abort after its work is
    done ("terminate called without an active exception", seen in 2-process runs). Nothing happens where no
    group was joined; calling it twice is harmless.
    """
    import gc

    held = bool(_WAIT)
    _WAIT.clear()
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        held = True
    if held:
        gc.collect()


def _wait_group() -> object | None:
    """The group of :func:`setup_wait_group` when it belongs to the current process group, else None (default)."""
    key = _WAIT.get("key")
    if key is not None and key[1:] == (dist.get_world_size(), id(dist.group.WORLD)):  # type: ignore[index]
        return _WAIT["group"]
    return None


def _one_line(err: BaseException) -> str:
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


def gather_objects(value: object) -> list[object]:
    """``value`` of every process, in rank order (picklable objects; on the long-wait group)."""
    if not is_distributed():
        return [value]
    values: list[object] = [None] * dist.get_world_size()
    dist.all_gather_object(values, value, group=_wait_group())
    return values


def share_outcome(error: BaseException | None, what: str) -> None:
    """Tell every process whether its part of ``what`` failed; raise on all of them if one did.

    Every process calls this at the same point, after its own part of the work (which may be nothing:
    the main process alone builds, evaluates or saves, the others only wait here). A process whose own
    part failed re-raises its error; the others raise :class:`PeerFailed` naming the first failing
    process and its message. On one process, ``error`` is simply raised.

    The wait runs on the group of :func:`setup_wait_group` (gloo, the long ``wait_timeout``) when there
    is one, so waiting for a long build or save does not hit the training collectives' timeout.
    """
    if not is_distributed():
        if error is not None:
            raise error
        return
    try:
        messages = gather_objects(None if error is None else _one_line(error))
    except Exception as failed:  # the wait itself failed (a timeout, a process gone): no second wait can succeed
        _mark_shared(failed)
        raise
    if error is not None:
        raise _mark_shared(error)
    for rank, message in enumerate(messages):
        if message is not None:
            raise PeerFailed(f"process {rank} failed while {what}: {message}")


def _mark_shared(error: BaseException) -> BaseException:
    with contextlib.suppress(AttributeError):  # an exception type with __slots__ stays unmarked
        error.simcse_shared = True  # type: ignore[attr-defined]
    return error


def was_shared(error: BaseException) -> bool:
    """Whether ``error`` was raised by :func:`share_outcome` (every process knows of it, or the wait itself
    failed): sharing it again would wait for processes that have stopped."""
    return isinstance(error, PeerFailed) or bool(getattr(error, "simcse_shared", False))


def on_main(work: Callable[[], Any], what: str) -> Any:
    """``work()`` on the main process; every process waits for it and raises if it failed (None elsewhere).

    For work the main process alone does (writing the run folder, reading the dev sets): its failure stops
    every process at once with its message (:func:`share_outcome`).
    """
    result, error = None, None
    if rank_and_world()[0] == 0:
        try:
            result = work()
        except Exception as err:  # shared, then raised on every process
            error = err
    share_outcome(error, what)
    return result


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
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not (dist.is_available() and dist.is_initialized()):
        dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=timeout_s))
    return rank_and_world()


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
