"""Objective state across 2 CPU processes (gloo) equals one process fed the concatenated batch."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from simcse.objectives import CrossBatchMemory, KeyQueue, moco_loss, sinkhorn_knopp

WORLD, BATCH, DIM, SIZE, STEPS = 2, 3, 4, 10, 3


def batch(step: int, rank: int) -> torch.Tensor:
    """This rank's keys at ``step``: ``(BATCH, DIM)``, deterministic."""
    return torch.randn(BATCH, DIM, generator=torch.Generator().manual_seed(100 * step + rank))


def global_batch(step: int) -> torch.Tensor:
    return torch.cat([batch(step, r) for r in range(WORLD)])  # (WORLD * BATCH, DIM), rank order


def gather(t: torch.Tensor) -> torch.Tensor:
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)  # rank order


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    t = t.clone()
    dist.all_reduce(t)
    return t


def _worker(rank: int, port: int, out_dir: str) -> None:
    # a forked child must not reuse the parent's OpenMP pool (it would wait on threads that were not
    # forked); one thread per process, as DataLoader workers do
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    try:
        queue, memory = KeyQueue(SIZE, DIM), CrossBatchMemory(SIZE, DIM, warmup_steps=1)
        for step in range(STEPS):
            queue.enqueue(batch(step, rank), gather=gather)
            memory.enqueue(batch(step, rank), gather=gather)
        codes = sinkhorn_knopp(batch(0, rank).double(), epsilon=0.5, n_iters=3, all_reduce=all_reduce)
        keys = gather(batch(1, rank))
        queries = batch(2, rank)
        losses = [
            moco_loss(queries, keys, queue.get(), in_batch_negatives=ib, label_offset=rank * BATCH)
            for ib in (False, True)
        ]
        result = {"queue": queue.ordered(), "memory": memory.queue.ordered(), "codes": codes, "losses": losses}
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("gloo")
    # fork: the children inherit the imported modules (a fresh interpreter would spend seconds importing)
    mp.start_processes(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True, start_method="fork")
    return [torch.load(out / f"rank{r}.pt") for r in range(WORLD)]


@pytest.fixture(scope="module")
def single() -> dict:
    queue, memory = KeyQueue(SIZE, DIM), CrossBatchMemory(SIZE, DIM, warmup_steps=1)
    for step in range(STEPS):
        queue.enqueue(global_batch(step))
        memory.enqueue(global_batch(step))
    return {"queue": queue, "memory": memory}


def test_gathered_queue_equals_single_process_queue(ranks, single):
    expected = single["queue"].ordered()  # the last 10 of 18 keys, rank 0's rows before rank 1's per step
    torch.testing.assert_close(expected, torch.cat([global_batch(s) for s in range(STEPS)])[-SIZE:])
    for r in ranks:
        assert torch.equal(r["queue"], expected)
        assert torch.equal(r["memory"], single["memory"].queue.ordered())


def test_sinkhorn_all_reduce_equals_global_batch(ranks):
    expected = sinkhorn_knopp(global_batch(0).double(), epsilon=0.5, n_iters=3)  # (WORLD * BATCH, DIM)
    torch.testing.assert_close(torch.cat([r["codes"] for r in ranks]), expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("in_batch", [False, True])
def test_moco_with_label_offset_equals_global_loss(ranks, single, in_batch):
    full = moco_loss(global_batch(2), global_batch(1), single["queue"].get(), in_batch_negatives=in_batch)
    mean_of_ranks = sum(r["losses"][int(in_batch)] for r in ranks) / WORLD
    torch.testing.assert_close(mean_of_ranks, full, atol=1e-6, rtol=0)
