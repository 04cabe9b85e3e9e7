"""CUDA checks (run by ``scripts/gpu_check.sh run`` on a GPU machine; skipped where there is no GPU).

- The gradient cache equals the plain step with dropout on, on CUDA, and only because it replays the
  CUDA RNG state (the negative control replays the CPU state alone and differs).
- Every objective runs under bf16 autocast on CUDA, with a finite loss that reaches the encoder.
- A training step's host syncs, counted by CUDA's sync debug mode: none on a step whose metrics are
  not read, one when they are.
"""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch

from simcse.objectives import OBJECTIVES
from simcse.train.grad_cache import RngState
from simcse.train.objective import ObjectiveStep
from simcse.train.step import compute_loss, make_grad_cache
from tests.test_grad_cache import SEED, data, grads_after, setup  # noqa: F401  (data: a fixture)
from tests.test_objective_training import MODE, STATE_KW

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh)")


def on_cuda(model, batch):
    return model.cuda(), {k: v.cuda() for k, v in batch.items()}


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


def max_difference(a, b):
    return max((a[1][k] - b[1][k]).abs().max().item() for k in a[1])


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_grad_cache_equals_the_plain_step_with_dropout_on_cuda(tiny_model_dir, data, tmp_path, mode):  # noqa: F811
    cfg, model, batch = setup(tiny_model_dir, data, tmp_path, mode)
    model, batch = on_cuda(model, batch)
    reference = same_masks_grads(model, batch, cfg, chunk=5)
    assert max_difference(reference, cached_grads(model, batch, cfg, chunk=5)) < 1e-5
    whole = grads_after(model, lambda: compute_loss(model, batch, cfg, model.encoder.tokenizer).backward() or 0)
    assert max_difference(whole, cached_grads(model, batch, cfg, chunk=10_000)) < 1e-5  # one chunk: the plain step


def test_negative_control_without_cuda_rng_replay_the_cache_differs(tiny_model_dir, data, tmp_path, monkeypatch):  # noqa: F811
    cfg, model, batch = setup(tiny_model_dir, data, tmp_path, "unsup")
    model, batch = on_cuda(model, batch)
    reference = same_masks_grads(model, batch, cfg, chunk=5)
    monkeypatch.setattr(RngState, "restore", lambda self: torch.set_rng_state(self.cpu))  # the CPU state only
    assert max_difference(reference, cached_grads(model, batch, cfg, chunk=5)) > 1e-4


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_runs_under_bf16_autocast_on_cuda(tiny_model_dir, data, tmp_path, objective):  # noqa: F811
    mode = MODE.get(objective, "unsup")
    kw = {"objective": objective, **STATE_KW.get(objective, {})}
    if mode != "unsup":
        kw["mlp_only_train"] = False
    cfg, model, batch = setup(tiny_model_dir, data, tmp_path, mode, **kw)
    model, batch = on_cuda(model, batch)
    step = ObjectiveStep(cfg, model.encoder.dim)
    if step.state is not None:
        step.state.cuda()
    with torch.autocast("cuda", torch.bfloat16):
        loss = compute_loss(model, batch, cfg, model.encoder.tokenizer, step)
    assert torch.isfinite(loss).item()
    loss.backward()
    assert model.encoder.model.embeddings.word_embeddings.weight.grad.abs().sum().item() > 0


def count_syncs(run) -> int:
    torch.cuda.synchronize()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            run()
        finally:
            torch.cuda.set_sync_debug_mode("default")
    return sum("synchroniz" in str(w.message) for w in caught)


def test_host_syncs_per_training_step_on_cuda(tiny_model_dir, data, tmp_path):  # noqa: F811
    """A step syncs only where the model's own forward does, plus once when its outcome is read."""
    from accelerate import Accelerator

    from simcse.train.step import TrainStep, build_optimizer

    cfg, model, batch = setup(tiny_model_dir, data, tmp_path, "unsup")
    accelerator = Accelerator()
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    batch = {k: v.cuda() for k, v in batch.items()}
    step = TrainStep(accelerator, model, optimizer, cfg, ObjectiveStep(cfg, model.encoder.dim))
    step(batch, read=True)  # warm-up: allocations, cuBLAS handles
    with torch.no_grad():
        forward = count_syncs(lambda: model(**batch))  # the model's own (transformers' SDPA mask check)
    counts = [count_syncs(lambda read=read: step(batch, read=read)) for read in (False, False, True)]
    assert counts == [forward, forward, forward + 1], (counts, forward)
