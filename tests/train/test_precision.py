"""Mixed precision: every objective scores in float32 under bf16 / fp16 autocast; fp16's loss scale tells an
overflow of the scaled gradients from a non-finite loss, on the device, and counts the overflows."""

from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from simcse.objectives import OBJECTIVES
from simcse.train.device_state import LossScale
from simcse.train.objective_step import ObjectiveStep, objective_modules
from simcse.train.step import TrainStep, build_optimizer, embed_views
from tests.helpers.grads import batch_setup
from tests.helpers.objectives import objective_batch

VIEWS = ("aten.view", "aten._unsafe_view", "aten.select", "aten.slice", "aten.detach", "aten.transpose", "aten.t",
         "aten.permute", "aten.expand", "aten.alias", "aten.unsqueeze", "aten.squeeze")  # fmt: skip


class Ops(TorchDispatchMode):
    """Every computing op's floating-point output dtype while active (not views; not inside ``skip``'s forward)."""

    def __init__(self, skip: torch.nn.Module | None = None) -> None:
        super().__init__()
        self.dtypes: list[tuple[str, torch.dtype]] = []
        self.paused = False
        if skip is not None:
            skip.register_forward_pre_hook(lambda *_: setattr(self, "paused", True))
            skip.register_forward_hook(lambda *_: setattr(self, "paused", False))

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = str(func).rsplit(".", 1)[0]
        if isinstance(out, torch.Tensor) and out.is_floating_point() and not self.paused and name not in VIEWS:
            self.dtypes.append((name, out.dtype))
        return out


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objectives_similarities_are_float32_under_autocast(tiny_model_dir, data_files, tmp_path, objective,
                                                                 dtype):  # fmt: skip
    """At temperature 0.05 a bf16 cosine near 1 (resolution ~0.004) moves a logit by ~0.08: the loss runs in fp32.

    The views come from the model's forward under autocast (half precision); every op of the objective's loss
    (the momentum encoder's own forward aside: that is the encoder, not the loss) gives float32, its matrix
    products included, and the loss equals the loss of the same views outside autocast.
    """
    cfg, model, batch = objective_batch(tiny_model_dir, data_files, str(tmp_path / "run"), objective, dropout=0.0,
                                        pooler="cls", mlp_only_train=False)  # the head's output: half precision
    extras: dict = {}
    with torch.autocast("cpu", dtype=dtype):
        z = embed_views(model, batch, cfg, extras, predict=OBJECTIVES[objective].needs_predictor)
    assert z.dtype == dtype  # the encoder ran in half precision
    modules = objective_modules(model)
    record = Ops(skip=modules.target if modules is not None else None)
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=dtype), record:
        loss = ObjectiveStep(cfg, z.shape[-1]).loss(model, z, batch, extras.get("predictions"))
    assert [(n, d) for n, d in record.dtypes if d not in (torch.float32, torch.float64)] == [], record.dtypes
    # the same loss of the same (widened) views outside autocast; a momentum encoder's targets stay the autocast
    # forward's (the encoder's precision is the run's choice)
    torch.manual_seed(0)
    momentum = contextlib.nullcontext() if modules is None or modules.target is None else torch.autocast("cpu", dtype)
    with momentum:
        reference = ObjectiveStep(cfg, z.shape[-1]).loss(model, z.float(), batch, _float(extras.get("predictions")))
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, reference, rtol=1e-5, atol=1e-5)


def _float(x):
    return None if x is None else x.float()


def test_loss_scale_backs_off_on_overflow_keeps_on_a_nonfinite_loss_and_grows_after_good_steps():
    scale = LossScale(torch.device("cpu"), init_scale=8.0, growth_interval=3)
    finite, inf, no, yes = torch.tensor(1.0), torch.tensor(math.inf), torch.tensor(False), torch.tensor(True)
    assert scale.update(inf, no).item() and scale.value.item() == 4.0  # overflow: halve
    assert not scale.update(inf, yes).item() and scale.value.item() == 4.0  # a NaN loss: not the scale's fault
    for expected in (4.0, 4.0, 8.0):  # the third good step in a row doubles it
        assert not scale.update(finite, no).item()
        assert scale.value.item() == expected
    scale.update(finite, yes)  # a skipped loss is not a good step
    state = scale.state_dict()
    other = LossScale(torch.device("cpu"))
    other.load_state_dict(state)
    assert other.value.item() == 8.0 and other.good_steps.item() == scale.good_steps.item() == 0.0


def _fp16_step(tiny_model_dir, data, tmp_path, init_scale: float):
    """A training step with fp16's loss scale on the CPU (where Accelerate runs no fp16 autocast)."""
    from accelerate import Accelerator

    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, "unsup", dropout=0.0)
    accelerator = Accelerator(cpu=True)
    optimizer = build_optimizer(model, cfg)
    model, optimizer = accelerator.prepare(model, optimizer)
    scale = LossScale(accelerator.device, init_scale=init_scale)
    step = TrainStep(accelerator, model, optimizer, cfg, ObjectiveStep(cfg, model.encoder.dim), loss_scale=scale)
    return step, model, batch, scale


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_an_fp16_overflow_skips_the_step_halves_the_scale_and_is_counted(tiny_model_dir, data, tmp_path):
    step, model, batch, _ = _fp16_step(tiny_model_dir, data, tmp_path, init_scale=3e38)  # scaled grads: inf
    before = _snapshot(model)
    outcome = step(batch)
    assert outcome.overflows == 1 and outcome.skipped == 0 and math.isfinite(outcome.loss)  # the loss was fine
    assert outcome.loss_scale == pytest.approx(1.5e38)
    assert all(torch.equal(before[k], v) for k, v in _snapshot(model).items())  # no update


def test_an_fp16_nonfinite_loss_skips_the_step_and_keeps_the_scale(tiny_model_dir, data, tmp_path, monkeypatch):
    import simcse.train.step as step_module

    step, model, batch, _ = _fp16_step(tiny_model_dir, data, tmp_path, init_scale=1024.0)
    real = step_module.compute_loss
    monkeypatch.setattr(step_module, "compute_loss", lambda *a, **k: real(*a, **k) * float("nan"))
    before = _snapshot(model)
    outcome = step(batch)
    assert outcome.skipped == 1 and outcome.overflows == 0 and outcome.loss_scale == 1024.0
    assert all(torch.equal(before[k], v) for k, v in _snapshot(model).items())


def test_an_fp16_step_with_a_finite_scale_updates_as_the_unscaled_step(tiny_model_dir, data, tmp_path):
    scaled, model_a, batch, _ = _fp16_step(tiny_model_dir, data, tmp_path / "a", init_scale=2.0**16)
    plain, model_b, _, _ = _fp16_step(tiny_model_dir, data, tmp_path / "b", init_scale=1.0)
    for _ in range(2):
        scaled(batch)
        plain(batch)
    a, b = _snapshot(model_a), _snapshot(model_b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)
