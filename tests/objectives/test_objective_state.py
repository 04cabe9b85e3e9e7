"""State modules of the objectives: FIFO order, momentum updates, warm-up, sinkhorn marginals, collapse watch."""

from __future__ import annotations

import logging
import math

import pytest
import torch
from torch import nn

from simcse.objectives import (
    CrossBatchMemory,
    KeyQueue,
    MomentumEncoder,
    Predictor,
    Prototypes,
    cosine_momentum,
    ema_update,
    info_nce,
    moco_loss,
    sinkhorn_knopp,
    xbm_loss,
)
from simcse.train.collapse import CollapseMonitor, embedding_std


def numbered(start: int, stop: int, dim: int = 2) -> torch.Tensor:
    """Rows whose every entry is the row's number: ``(stop - start, dim)``."""
    return torch.arange(start, stop, dtype=torch.float32)[:, None].expand(-1, dim).contiguous()


def ids(t: torch.Tensor) -> list[int]:
    return [int(x) for x in t[:, 0].tolist()]


# ----------------------------------------------------------------------------- KeyQueue
def test_queue_keeps_the_newest_rows_oldest_first():
    queue = KeyQueue(size=5, dim=2)
    assert len(queue) == 0 and queue.get().shape == (0, 2)
    queue.enqueue(numbered(0, 3))
    assert ids(queue.ordered()) == [0, 1, 2] and ids(queue.get()) == [0, 1, 2]
    queue.enqueue(numbered(3, 7))  # 7 keys into 5 slots: 0 and 1 overwritten
    assert len(queue) == 5
    assert ids(queue.ordered()) == [2, 3, 4, 5, 6]
    assert ids(queue.get()) == [5, 6, 2, 3, 4]  # storage order: the pointer wrapped around
    queue.enqueue(numbered(7, 10))
    assert ids(queue.ordered()) == [5, 6, 7, 8, 9]


def test_queue_batch_larger_than_capacity_keeps_its_newest_rows():
    queue = KeyQueue(size=4, dim=2)
    queue.enqueue(numbered(0, 1))
    queue.enqueue(numbered(1, 11))
    assert ids(queue.ordered()) == [7, 8, 9, 10]


def test_queue_detaches_and_checks_shape():
    queue = KeyQueue(size=4, dim=3)
    keys = torch.randn(2, 3, requires_grad=True)
    queue.enqueue(keys * 2)
    assert not queue.get().requires_grad
    with pytest.raises(ValueError, match=r"\(b, 3\)"):
        queue.enqueue(torch.randn(2, 4))


def test_enqueue_between_loss_and_backward_is_safe():
    queue = KeyQueue(size=4, dim=3)
    queue.enqueue(torch.randn(4, 3))
    q, k = torch.randn(2, 3, requires_grad=True), torch.randn(2, 3, requires_grad=True)
    loss = moco_loss(q, k, queue.get(), in_batch_negatives=True)
    queue.enqueue(k)  # overwrites rows the loss has read, in place
    loss.backward()
    assert q.grad is not None and k.grad is not None


def test_queue_state_dict_round_trip_keeps_pointer():
    queue = KeyQueue(size=4, dim=2)
    queue.enqueue(numbered(0, 6))
    restored = KeyQueue(size=4, dim=2)
    restored.load_state_dict(queue.state_dict())
    restored.enqueue(numbered(6, 7))
    queue.enqueue(numbered(6, 7))
    assert ids(restored.ordered()) == ids(queue.ordered()) == [3, 4, 5, 6]


# ----------------------------------------------------------------------------- CrossBatchMemory
def test_memory_fifo_and_warmup_switch():
    memory = CrossBatchMemory(size=4, dim=2, warmup_steps=2)
    assert memory.negatives() is None and not memory.active
    memory.enqueue(numbered(0, 3))
    assert memory.negatives() is None
    memory.enqueue(numbered(3, 6))
    assert memory.active
    assert ids(memory.queue.ordered()) == [2, 3, 4, 5]
    assert sorted(ids(memory.negatives())) == [2, 3, 4, 5]


def test_xbm_loss_is_info_nce_before_warmup_and_adds_memory_after():
    a, p = torch.randn(4, 2, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64)
    memory = CrossBatchMemory(size=8, dim=2, warmup_steps=1).double()
    assert torch.equal(xbm_loss(a, p, memory.negatives()), info_nce(a, p))
    past = torch.randn(3, 2, dtype=torch.float64)
    memory.enqueue(past)
    with_memory = xbm_loss(a, p, memory.negatives())
    assert torch.allclose(with_memory, info_nce(a, torch.cat([p, past])))
    assert with_memory > info_nce(a, p)  # more negatives, larger loss


def test_memory_state_dict_keeps_step_count():
    memory = CrossBatchMemory(size=4, dim=2, warmup_steps=2)
    memory.enqueue(numbered(0, 1))
    memory.enqueue(numbered(1, 2))
    restored = CrossBatchMemory(size=4, dim=2, warmup_steps=2)
    restored.load_state_dict(memory.state_dict())
    assert restored.active and ids(restored.negatives()) == [0, 1]


# ----------------------------------------------------------------------------- momentum
def _net() -> nn.Module:
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))


def test_ema_update_equals_formula_and_copies_buffers():
    torch.manual_seed(0)
    online, target = _net(), _net()
    online(torch.randn(8, 3))  # moves BN running stats
    before = [p.detach().clone() for p in target.parameters()]
    ema_update(target, online, momentum=0.9)
    for p_t, p_before, p_o in zip(target.parameters(), before, online.parameters(), strict=True):
        torch.testing.assert_close(p_t, 0.9 * p_before + 0.1 * p_o.detach(), rtol=0, atol=1e-7)
    for b_t, b_o in zip(target.buffers(), online.buffers(), strict=True):
        assert torch.equal(b_t, b_o)


def test_momentum_encoder_is_frozen_and_follows_online():
    torch.manual_seed(0)
    online = nn.Linear(3, 2)
    target = MomentumEncoder(online, momentum=0.5)
    assert all(not p.requires_grad for p in target.parameters())
    assert not target(torch.randn(4, 3)).requires_grad
    before = target.target.weight.clone()
    with torch.no_grad():
        online.weight.add_(1.0)
    target.update(online)
    torch.testing.assert_close(target.target.weight, 0.5 * before + 0.5 * online.weight.detach())
    target.update(online, momentum=0.0)
    assert torch.equal(target.target.weight, online.weight)
    with pytest.raises(ValueError, match="momentum"):
        target.update(online, momentum=1.5)


def test_cosine_momentum_schedule():
    assert cosine_momentum(0, 100) == pytest.approx(0.996)
    assert cosine_momentum(50, 100) == pytest.approx(0.998)
    assert cosine_momentum(100, 100) == pytest.approx(1.0)


def test_predictor_predicts_each_view_with_its_own_batch_statistics():
    torch.manual_seed(0)
    predictor = Predictor(6, hidden_dim=8)
    z = torch.randn(5, 2, 6)
    out = predictor(z)
    assert out.shape == (5, 2, 6)
    torch.testing.assert_close(out[:, 1], predictor(z[:, 1]))


# ----------------------------------------------------------------------------- SwAV
def test_prototypes_score_by_cosine():
    protos = Prototypes(4, 3)
    z = torch.randn(5, 4)
    scores = protos(z * 10)
    assert scores.shape == (5, 3) and scores.abs().max() <= 1 + 1e-6
    torch.testing.assert_close(scores, protos(z))  # the scale of the inputs does not matter
    with torch.no_grad():
        protos.weight.mul_(7.0)  # nor that of the weights
    torch.testing.assert_close(protos(z), scores)


@pytest.mark.parametrize("n_iters", [3, 200])
def test_sinkhorn_marginals(n_iters):
    torch.manual_seed(0)
    b, k = 12, 4
    scores = torch.randn(b, k, dtype=torch.float64).tanh()
    q = sinkhorn_knopp(scores, epsilon=0.5, n_iters=n_iters)
    # paper's Q (before the final x B) is a transport plan: samples get 1/B each, prototypes about 1/K
    torch.testing.assert_close((q / b).sum(dim=1), torch.full((b,), 1 / b, dtype=torch.float64))
    prototype_mass = (q / b).sum(dim=0)
    initial = torch.softmax(scores / 0.5, dim=1).mean(0)  # marginal before any balancing
    assert (prototype_mass - 1 / k).abs().max() < (initial - 1 / k).abs().max()
    if n_iters == 200:
        torch.testing.assert_close(prototype_mass, torch.full((k,), 1 / k, dtype=torch.float64), atol=1e-9, rtol=0)


def test_sinkhorn_has_no_gradient_and_survives_low_epsilon():
    scores = (2 * torch.rand(6, 3) - 1).requires_grad_()  # cosines in [-1, 1]
    q = sinkhorn_knopp(scores, epsilon=0.005)
    assert not q.requires_grad and q.dtype == torch.float32 and torch.isfinite(q).all()
    assert sinkhorn_knopp(scores.detach().half()).dtype == torch.float32


# ----------------------------------------------------------------------------- collapse watch
def test_embedding_std_scale():
    assert embedding_std(torch.ones(16, 64)) == pytest.approx(0.0, abs=1e-12)
    assert embedding_std(torch.randn(4096, 64)) == pytest.approx(1 / math.sqrt(64), rel=0.05)


def test_collapse_monitor_warns_once_on_constant_embeddings(caplog):
    monitor = CollapseMonitor()
    with caplog.at_level(logging.WARNING, logger="simcse.objectives.collapse"):
        for _ in range(3):
            metrics = monitor.update(torch.ones(16, 8) + 1e-9 * torch.randn(16, 8))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "embedding_std" in warnings[0].getMessage() and "uniformity" in warnings[0].getMessage()
    assert monitor.collapsed and metrics["collapsed"] == 1.0
    assert metrics["uniformity"] == pytest.approx(0.0, abs=1e-6)


def test_collapse_monitor_quiet_on_gaussian_embeddings(caplog):
    torch.manual_seed(0)
    monitor = CollapseMonitor()
    with caplog.at_level(logging.WARNING, logger="simcse.objectives.collapse"):
        for _ in range(3):
            metrics = monitor.update(torch.randn(32, 16))
    assert not caplog.records
    assert not monitor.collapsed and metrics["collapsed"] == 0.0
    assert metrics["uniformity"] < -2.0 and metrics["embedding_std"] > 0.5 / math.sqrt(16)


def test_collapse_flag_follows_latest_batch():
    monitor = CollapseMonitor()
    monitor.update(torch.ones(8, 4))
    assert monitor.collapsed
    monitor.update(torch.randn(8, 4))
    assert not monitor.collapsed
