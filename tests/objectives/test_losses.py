"""info_nce against a hand-written loop, gradients by finite differences."""

import math

import pytest
import torch

from simcse.objectives.infonce import info_nce


def loop_info_nce(a, p, h=None, tau=0.05, weight=0.0, offset=0):
    """Cross-entropy written term by term: -log(exp(s_ii) / sum_j exp(s_ij) [+ sum_j exp(s'_ij)])."""

    def cos(x, y):
        return float((x @ y) / (x.norm() * y.norm()))

    total = 0.0
    for i in range(a.shape[0]):
        logits = [cos(a[i], p[j]) / tau for j in range(p.shape[0])]
        if h is not None:
            for j in range(h.shape[0]):
                logits.append(cos(a[i], h[j]) / tau + (weight if j == offset + i else 0.0))
        denom = sum(math.exp(x) for x in logits)
        total += -math.log(math.exp(logits[offset + i]) / denom)
    return total / a.shape[0]


@pytest.mark.parametrize(
    ("hard", "weight", "tau"),
    [(False, 0.0, 0.05), (False, 0.0, 1.0), (True, 0.0, 0.05), (True, 0.7, 0.05), (True, -1.0, 1.0)],
)
def test_info_nce_matches_loop(hard, weight, tau):
    g = torch.Generator().manual_seed(0)
    a, p, h = (torch.randn(5, 7, generator=g, dtype=torch.float64) for _ in range(3))
    got = info_nce(a, p, h if hard else None, temperature=tau, hard_negative_weight=weight)
    assert float(got) == pytest.approx(loop_info_nce(a, p, h if hard else None, tau, weight), abs=1e-6)


def test_info_nce_label_offset_matches_loop():
    g = torch.Generator().manual_seed(1)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64)
    p, h = torch.randn(9, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64)
    got = info_nce(a, p, h, temperature=0.1, hard_negative_weight=1.2, label_offset=3)
    assert float(got) == pytest.approx(loop_info_nce(a, p, h, 0.1, 1.2, offset=3), abs=1e-6)


def test_alpha_weight_touches_only_own_hard_negative():
    """Orthogonal toy case computed by hand: anchor i's logits are [pos_i, pos_j, hard_i, hard_j]."""
    a = torch.eye(2, dtype=torch.float64)
    p = torch.eye(2, dtype=torch.float64)  # cos(a_i, p_i) = 1, cos(a_i, p_j) = 0
    h = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)  # cos(a_i, h_i) = 0, cos(a_i, h_j) = 1
    alpha = 3.0
    got = info_nce(a, p, h, temperature=1.0, hard_negative_weight=math.log(alpha))
    # own hard negative: exp(0 + log alpha) = alpha; the other hard negative keeps exp(1) = e
    expected = -math.log(math.e / (math.e + 1.0 + alpha + math.e))
    assert float(got) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("hard", [False, True])
def test_info_nce_gradcheck(hard):
    g = torch.Generator().manual_seed(2)
    a, p, h = (torch.randn(4, 3, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def fn(a, p, h):
        return info_nce(a, p, h if hard else None, temperature=0.5, hard_negative_weight=0.3 if hard else 0.0)

    assert torch.autograd.gradcheck(fn, (a, p, h))


def test_logits_are_float32_under_bf16_autocast():
    """Low-precision cosines / tau would quantise logits (bf16: steps of ~0.08 at tau 0.05)."""
    from simcse.objectives.infonce import cosine_logits

    torch.manual_seed(0)
    a = torch.randn(6, 16).bfloat16().requires_grad_()
    b = (a.detach() + 0.01 * torch.randn(6, 16).bfloat16()).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = cosine_logits(a, b, 0.05)
        loss = info_nce(a, b, temperature=0.05)
    reference = torch.nn.functional.cosine_similarity(a.double()[:, None], b.double()[None], dim=-1) / 0.05
    assert logits.dtype == torch.float32
    torch.testing.assert_close(logits.double(), reference, atol=1e-4, rtol=0)
    loss.backward()  # gradients flow back to the bf16 embeddings
    assert a.grad is not None and a.grad.dtype == torch.bfloat16 and torch.isfinite(a.grad.float()).all()
