"""The GPU check's tests, run on CUDA by ``scripts/gpu/gpu_check.sh run`` and on the CPU everywhere (a rehearsal).

Every test takes the device as a parameter: ``cuda`` (skipped without a GPU) and ``cpu``, so a mistake in a
test reaches CI before it can cost a GPU lease.

- The gradient cache equals the plain step with dropout on, and only because it replays the device's RNG
  state (the negative control replays less: on CUDA the CPU state alone, on the CPU nothing) and differs.
- Every objective runs under bf16 autocast, with a finite loss that reaches the encoder.
- A training step's host syncs: on CUDA counted by CUDA's sync debug mode (none on a step whose metrics are
  not read but the model's own forward's, one more when they are); on the CPU, the operations of simcse's
  own code that would sync on a GPU (none).
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from simcse.objectives import OBJECTIVES
from simcse.train.grad_cache import RngState
from simcse.train.objective_step import ObjectiveStep
from simcse.train.step import compute_loss, make_grad_cache
from tests.helpers.grads import batch_setup, grads_after
from tests.helpers.objectives import objective_batch
from tests.helpers.syncs import WouldSync

DEVICES = [
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")),
    "cpu",
]


def on(device, model, batch):
    return model.to(device), {k: v.to(device) for k, v in batch.items()}


def cached_grads(model, batch, cfg, chunk):
    def run():
        cache = make_grad_cache(dataclasses.replace(cfg, grad_cache_chunk_size=chunk))
        loss = cache.loss(model, batch)
        cache.backward(loss)
        return loss

    return grads_after(model, run)


def same_masks_grads(model, batch, cfg, chunk):
    """One backward through a forward made of the same chunks, so drawing the same dropout masks."""

    def run():
        rows = batch["input_ids"].shape[0]
        z = torch.cat([model(**{k: v[s : s + chunk] for k, v in batch.items()}) for s in range(0, rows, chunk)])
        loss = ObjectiveStep(cfg, z.shape[-1]).loss(None, z.view(cfg.num_views, -1, z.shape[-1]), {})
        loss.backward()
        return loss

    return grads_after(model, run)


def plain_grads(model, batch, cfg):
    def run():
        loss = compute_loss(model, batch, cfg, model.encoder.tokenizer)
        loss.backward()
        return loss

    return grads_after(model, run)


def max_difference(a, b):
    return max((a[1][k] - b[1][k]).abs().max().item() for k in a[1])


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_grad_cache_equals_the_plain_step_with_dropout(tiny_model_dir, data, tmp_path, mode, device):
    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, mode)
    model, batch = on(device, model, batch)
    reference = same_masks_grads(model, batch, cfg, chunk=5)
    assert max_difference(reference, cached_grads(model, batch, cfg, chunk=5)) < 1e-5
    whole = plain_grads(model, batch, cfg)
    assert max_difference(whole, cached_grads(model, batch, cfg, chunk=10_000)) < 1e-5  # one chunk: the plain step


@pytest.mark.parametrize("device", DEVICES)
def test_negative_control_without_the_devices_rng_replay_the_cache_differs(tiny_model_dir, data, tmp_path,
                                                                           monkeypatch, device):  # fmt: skip
    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, "unsup")
    model, batch = on(device, model, batch)
    reference = same_masks_grads(model, batch, cfg, chunk=5)
    # on CUDA the dropout masks come from the CUDA generator: replaying the CPU's alone is not enough
    partial = (lambda self: torch.set_rng_state(self.cpu)) if device == "cuda" else (lambda self: None)
    monkeypatch.setattr(RngState, "restore", partial)
    assert max_difference(reference, cached_grads(model, batch, cfg, chunk=5)) > 1e-4


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_runs_under_bf16_autocast(tiny_model_dir, data_files, tmp_path, objective, device):
    cfg, model, batch = objective_batch(tiny_model_dir, data_files, str(tmp_path / "run"), objective)
    model, batch = on(device, model, batch)
    step = ObjectiveStep(cfg, model.encoder.dim)
    if step.state is not None:
        step.state.to(device)
    with torch.autocast(device, torch.bfloat16):
        loss = compute_loss(model, batch, cfg, model.encoder.tokenizer, step)
    assert torch.isfinite(loss).item() and loss.dtype == torch.float32
    loss.backward()
    assert model.encoder.model.embeddings.word_embeddings.weight.grad.abs().sum().item() > 0


def count_cuda_syncs(run) -> int:
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


@pytest.mark.parametrize("device", DEVICES)
def test_host_syncs_per_training_step(tiny_model_dir, data, tmp_path, device):
    """A step syncs only where the model's own forward does, plus once when its outcome is read."""
    from accelerate import Accelerator

    from simcse.train.step import TrainStep, build_optimizer

    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, "unsup")
    accelerator = Accelerator(cpu=device == "cpu")
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = {k: v.to(accelerator.device) for k, v in batch.items()}
    step = TrainStep(accelerator, model, optimizer, cfg, ObjectiveStep(cfg, model.encoder.dim))
    step(batch, read=True)  # warm-up: allocations, cuBLAS handles, constants on the device
    if device == "cuda":
        with torch.no_grad():
            forward = count_cuda_syncs(lambda: model(**batch))  # the model's own (transformers' SDPA mask check)
        counts = [count_cuda_syncs(lambda read=read: step(batch, read=read)) for read in (False, False, True)]
        assert counts == [forward, forward, forward + 1], (counts, forward)
        assert step.stop_agreed() is False  # the previous step's flag: its copy was queued, not waited for
        return
    for read in (False, False, True):
        with WouldSync() as syncs:
            step(batch, read=read)
        assert syncs.found == [], syncs.found
        assert step.stop_agreed() is False
