"""Every objective against a naive loop reference (float64, 1e-6) and autograd's gradcheck.

The references below are written from the papers' formulas with Python loops and ``math`` on
floats, independently of the vectorised code in ``simcse.objectives``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from simcse.objectives import (
    OBJECTIVES,
    Prototypes,
    barlow_twins,
    build_objective,
    byol_loss,
    circle_loss,
    info_nce,
    lifted_structure_loss,
    logistic_loss,
    moco_loss,
    n_pair_loss,
    nt_xent,
    pair_contrastive_loss,
    simsiam_loss,
    sinkhorn_knopp,
    swapped_prediction,
    swav_loss,
    triplet_loss,
    xbm_loss,
)

TOL = 1e-6


# ----------------------------------------------------------------------------- scalar helpers
def rows(t: torch.Tensor) -> list:
    return t.detach().tolist()


def dot(u, v) -> float:
    return sum(a * b for a, b in zip(u, v, strict=True))


def cos(u, v) -> float:
    return dot(u, v) / (math.sqrt(dot(u, u)) * math.sqrt(dot(v, v)))


def euclid(u, v) -> float:
    return math.sqrt(sum((a - b) ** 2 for a, b in zip(u, v, strict=True)))


def dist(u, v, kind: str) -> float:
    return 1.0 - cos(u, v) if kind == "cosine" else euclid(u, v)


def lse(xs) -> float:
    m = max(xs)
    return m + math.log(sum(math.exp(x - m) for x in xs))


def softplus(x: float) -> float:
    return x + math.log1p(math.exp(-x)) if x > 0 else math.log1p(math.exp(x))


def close(value: torch.Tensor, expected: float) -> None:
    assert value.dim() == 0
    assert abs(value.item() - expected) <= TOL * max(1.0, abs(expected)), (value.item(), expected)


def randn(*shape: int, seed: int = 0, grad: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).requires_grad_(grad)


def labels_ab() -> torch.Tensor:
    return torch.tensor([1, 0, 1, 0, 0, 1])


# ----------------------------------------------------------------------------- references
def ref_info_nce(a, p, hn=None, t=0.05, w=0.0):
    a, p = rows(a), rows(p)
    hn = rows(hn) if hn is not None else []
    total = 0.0
    for i in range(len(a)):
        logits = [cos(a[i], p[j]) / t for j in range(len(p))]
        logits += [cos(a[i], hn[j]) / t + (w if j == i else 0.0) for j in range(len(hn))]
        total += lse(logits) - logits[i]
    return total / len(a)


def ref_nt_xent(z1, z2, t):
    z = rows(z1) + rows(z2)
    n2 = len(z)
    total = 0.0
    for i in range(n2):
        twin = (i + n2 // 2) % n2
        others = [cos(z[i], z[j]) / t for j in range(n2) if j != i]
        total += lse(others) - cos(z[i], z[twin]) / t
    return total / n2


def ref_moco(q, k, queue, t, in_batch):
    q, k, queue = rows(q), rows(k), rows(queue)
    total = 0.0
    for i in range(len(q)):
        if in_batch:
            logits = [cos(q[i], x) / t for x in k + queue]
            total += lse(logits) - logits[i]
        else:
            logits = [cos(q[i], k[i]) / t] + [cos(q[i], x) / t for x in queue]
            total += lse(logits) - logits[0]
    return total / len(q)


def ref_byol(p, z):
    p, z = rows(p), rows(z)
    total = 0.0
    for i in range(len(p)):
        for v in range(2):
            total += 2.0 - 2.0 * cos(p[i][v], z[i][1 - v])
    return total / len(p)


def ref_simsiam(p, z):
    p, z = rows(p), rows(z)
    total = 0.0
    for i in range(len(p)):
        total += -cos(p[i][0], z[i][1]) / 2 - cos(p[i][1], z[i][0]) / 2
    return total / len(p)


def ref_standardise(z, eps):
    n, d = len(z), len(z[0])
    out = [[0.0] * d for _ in range(n)]
    for k in range(d):
        mean = sum(z[i][k] for i in range(n)) / n
        var = sum((z[i][k] - mean) ** 2 for i in range(n)) / n
        for i in range(n):
            out[i][k] = (z[i][k] - mean) / math.sqrt(var + eps)
    return out


def ref_barlow(z1, z2, lam, eps=1e-5):
    a, b = ref_standardise(rows(z1), eps), ref_standardise(rows(z2), eps)
    n, d = len(a), len(a[0])
    loss = 0.0
    for k in range(d):
        for m in range(d):
            c = sum(a[i][k] * b[i][m] for i in range(n)) / n
            loss += (1.0 - c) ** 2 if k == m else lam * c**2
    return loss


def ref_sinkhorn(scores, eps, n_iters):
    s = rows(scores)
    bsz, k = len(s), len(s[0])
    q = [[math.exp(s[b][p] / eps) for b in range(bsz)] for p in range(k)]  # (K, B)
    total = sum(sum(r) for r in q)
    q = [[x / total for x in r] for r in q]
    for _ in range(n_iters):
        for p in range(k):
            row = sum(q[p])
            q[p] = [x / row / k for x in q[p]]
        for b in range(bsz):
            col = sum(q[p][b] for p in range(k))
            for p in range(k):
                q[p][b] = q[p][b] / col / bsz
    return [[q[p][b] * bsz for p in range(k)] for b in range(bsz)]  # (B, K)


def ref_swapped(scores, codes, t):
    s, c = rows(scores), codes
    total = 0.0
    for i in range(len(s)):
        log_z = lse([x / t for x in s[i]])
        total -= sum(c[i][k] * (s[i][k] / t - log_z) for k in range(len(s[i])))
    return total / len(s)


def ref_proto_scores(z, w):
    return torch.tensor([[cos(zi, wk) for wk in rows(w)] for zi in rows(z)], dtype=torch.float64)


def ref_triplet(a, p, n, margin, kind, batch_hard):
    a, p = rows(a), rows(p)
    n = rows(n) if n is not None else []
    total = 0.0
    for i in range(len(a)):
        d_pos = dist(a[i], p[i], kind)
        if batch_hard:
            cands = [dist(a[i], p[j], kind) for j in range(len(p)) if j != i] + [dist(a[i], x, kind) for x in n]
            d_neg = min(cands)
        else:
            d_neg = dist(a[i], n[i], kind)
        total += max(0.0, d_pos - d_neg + margin)
    return total / len(a)


def ref_contrastive(a, b, y, margin, kind):
    a, b, y = rows(a), rows(b), y.tolist()
    total = 0.0
    for i in range(len(a)):
        d = dist(a[i], b[i], kind)
        total += 0.5 * (d**2 if y[i] == 1 else max(0.0, margin - d) ** 2)
    return total / len(a)


def ref_logistic(a, b, y, t):
    a, b, y = rows(a), rows(b), y.tolist()
    total = 0.0
    for i in range(len(a)):
        x = cos(a[i], b[i]) / t
        total += y[i] * softplus(-x) + (1 - y[i]) * softplus(x)  # -log sigma(x), -log(1 - sigma(x))
    return total / len(a)


def ref_circle(a, b, y, m, gamma, alphas=None):
    a, b, y = rows(a), rows(b), y.tolist()
    s = [cos(a[i], b[i]) for i in range(len(a))]
    if alphas is None:
        alphas = [max(0.0, 1 + m - s[i]) if y[i] == 1 else max(0.0, s[i] + m) for i in range(len(s))]
    pos = [-gamma * alphas[i] * (s[i] - (1 - m)) for i in range(len(s)) if y[i] == 1]
    neg = [gamma * alphas[i] * (s[i] - m) for i in range(len(s)) if y[i] == 0]
    if not pos or not neg:
        return 0.0
    return softplus(lse(pos) + lse(neg))  # log(1 + sum_n exp(.) * sum_p exp(.))


def ref_n_pair(a, p, lam):
    a, p = rows(a), rows(p)
    total = 0.0
    for i in range(len(a)):
        total += math.log(1.0 + sum(math.exp(dot(a[i], p[j]) - dot(a[i], p[i])) for j in range(len(p)) if j != i))
    reg = sum(dot(x, x) for x in a) / len(a) + sum(dot(x, x) for x in p) / len(p)
    return total / len(a) + 0.25 * lam * reg


def ref_lifted(a, p, margin):
    a, p = rows(a), rows(p)
    n = len(a)
    total = 0.0
    for k in range(n):
        negatives = [x for j in range(n) if j != k for x in (a[j], p[j])]
        terms = [margin - euclid(a[k], x) for x in negatives] + [margin - euclid(p[k], x) for x in negatives]
        j_k = lse(terms) + euclid(a[k], p[k])
        total += max(0.0, j_k) ** 2
    return total / (2 * n)


# ----------------------------------------------------------------------------- value tests
@pytest.mark.parametrize("with_hard", [False, True])
def test_info_nce_matches_loop(with_hard):
    a, p, hn = randn(6, 5, seed=1), randn(6, 5, seed=2), randn(6, 5, seed=3) if with_hard else None
    weight = 0.5 if with_hard else 0.0
    close(info_nce(a, p, hn, temperature=0.1, hard_negative_weight=weight), ref_info_nce(a, p, hn, 0.1, weight))


def test_nt_xent_matches_loop_and_is_symmetric():
    z1, z2 = randn(6, 5, seed=1), randn(6, 5, seed=2)
    close(nt_xent(z1, z2, temperature=0.2), ref_nt_xent(z1, z2, 0.2))
    close(nt_xent(z2, z1, temperature=0.2), ref_nt_xent(z1, z2, 0.2))


@pytest.mark.parametrize("in_batch", [False, True])
def test_moco_matches_loop(in_batch):
    q, k, queue = randn(6, 5, seed=1), randn(6, 5, seed=2), randn(10, 5, seed=3)
    close(moco_loss(q, k, queue, temperature=0.2, in_batch_negatives=in_batch), ref_moco(q, k, queue, 0.2, in_batch))


@pytest.mark.parametrize("in_batch", [False, True])
def test_moco_label_offset_picks_this_process_keys(in_batch):
    q, k, queue = randn(6, 5, seed=1), randn(6, 5, seed=2), randn(4, 5, seed=3)
    full = moco_loss(q, k, queue, in_batch_negatives=in_batch)
    halves = [
        moco_loss(q[r * 3 : r * 3 + 3], k, queue, in_batch_negatives=in_batch, label_offset=3 * r) for r in (0, 1)
    ]
    close((halves[0] + halves[1]) / 2, full.item())


def test_moco_with_empty_queue():
    q, k = randn(4, 5, seed=1), randn(4, 5, seed=2)
    close(moco_loss(q, k, torch.zeros(0, 5, dtype=torch.float64)), 0.0)  # one logit: nothing to contrast


def test_xbm_matches_loop():
    a, p, mem = randn(6, 5, seed=1), randn(6, 5, seed=2), randn(9, 5, seed=3)
    close(xbm_loss(a, p, mem, temperature=0.1), ref_moco(a, p, mem, 0.1, in_batch=True))
    close(xbm_loss(a, p, None, temperature=0.1), ref_info_nce(a, p, None, 0.1))


def test_byol_and_simsiam_match_loop():
    p, z = randn(5, 2, 4, seed=1), randn(5, 2, 4, seed=2)
    close(byol_loss(p, z), ref_byol(p, z))
    close(simsiam_loss(p, z), ref_simsiam(p, z))


def test_byol_and_simsiam_stop_gradient_on_targets():
    p, z = randn(5, 2, 4, seed=1, grad=True), randn(5, 2, 4, seed=2, grad=True)
    (byol_loss(p, z) + simsiam_loss(p, z)).backward()
    assert p.grad is not None and p.grad.abs().sum() > 0
    assert z.grad is None


def test_two_view_shape_is_checked():
    with pytest.raises(ValueError, match="two views"):
        byol_loss(randn(5, 4), randn(5, 4))


@pytest.mark.parametrize("lam", [5e-3, 0.5])
def test_barlow_twins_matches_loop(lam):
    z1, z2 = randn(7, 4, seed=1), randn(7, 4, seed=2)
    close(barlow_twins(z1, z2, off_diagonal_weight=lam), ref_barlow(z1, z2, lam))


def test_barlow_twins_is_zero_for_identical_decorrelated_views():
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    assert barlow_twins(z, z, eps=0.0).item() == pytest.approx(0.0, abs=1e-12)


def test_sinkhorn_matches_loop():
    scores = F.normalize(randn(6, 4, seed=1), dim=-1) @ F.normalize(randn(4, 4, seed=2), dim=-1).T  # (6, 4)
    q = sinkhorn_knopp(scores, epsilon=0.3, n_iters=3)
    torch.testing.assert_close(q, torch.tensor(ref_sinkhorn(scores, 0.3, 3), dtype=torch.float64), atol=TOL, rtol=0)


def test_swapped_prediction_matches_loop_with_fixed_codes():
    scores = randn(6, 4, seed=1)
    codes = torch.softmax(randn(6, 4, seed=2), dim=1)
    close(swapped_prediction(scores, codes, temperature=0.1), ref_swapped(scores, codes.tolist(), 0.1))


def test_swav_loss_matches_loop():
    z1, z2 = randn(6, 5, seed=1), randn(6, 5, seed=2)
    protos = Prototypes(5, 4).double()
    s1, s2 = ref_proto_scores(z1, protos.weight), ref_proto_scores(z2, protos.weight)
    c1, c2 = ref_sinkhorn(s1, 0.05, 3), ref_sinkhorn(s2, 0.05, 3)
    expected = 0.5 * (ref_swapped(s1, c2, 0.1) + ref_swapped(s2, c1, 0.1))
    close(swav_loss(z1, z2, protos, temperature=0.1, epsilon=0.05), expected)


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
@pytest.mark.parametrize("batch_hard", [False, True])
@pytest.mark.parametrize("with_negatives", [False, True])
def test_triplet_matches_loop(distance, batch_hard, with_negatives):
    if not (batch_hard or with_negatives):
        with pytest.raises(ValueError, match="negatives"):
            triplet_loss(randn(3, 2), randn(3, 2))
        return
    a, p = randn(6, 5, seed=1), randn(6, 5, seed=2)
    n = randn(6, 5, seed=3) if with_negatives else None
    margin = 0.5 if distance == "cosine" else 2.0
    got = triplet_loss(a, p, n, margin=margin, distance=distance, batch_hard=batch_hard)
    close(got, ref_triplet(a, p, n, margin, distance, batch_hard))


@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_contrastive_matches_loop(distance):
    a, b = randn(6, 5, seed=1), randn(6, 5, seed=2)
    margin = 1.0 if distance == "cosine" else 3.0
    got = pair_contrastive_loss(a, b, labels_ab(), margin=margin, distance=distance)
    close(got, ref_contrastive(a, b, labels_ab(), margin, distance))


def test_logistic_matches_loop():
    a, b = randn(6, 5, seed=1), randn(6, 5, seed=2)
    close(logistic_loss(a, b, labels_ab(), temperature=0.2), ref_logistic(a, b, labels_ab(), 0.2))


@pytest.mark.parametrize(("margin", "gamma"), [(0.25, 256.0), (0.4, 16.0)])
def test_circle_matches_loop(margin, gamma):
    a, b = randn(6, 5, seed=1), randn(6, 5, seed=2)
    close(circle_loss(a, b, labels_ab(), margin=margin, gamma=gamma), ref_circle(a, b, labels_ab(), margin, gamma))


def test_circle_without_negatives_is_zero_with_finite_gradient():
    a, b = randn(4, 3, seed=1, grad=True), randn(4, 3, seed=2)
    loss = circle_loss(a, b, torch.ones(4))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(a.grad).all()


@pytest.mark.parametrize("lam", [0.0, 0.002, 0.5])
def test_n_pair_matches_loop(lam):
    a, p = randn(6, 5, seed=1), randn(6, 5, seed=2)
    close(n_pair_loss(a, p, l2_weight=lam), ref_n_pair(a, p, lam))


@pytest.mark.parametrize("margin", [1.0, 4.0])
def test_lifted_structure_matches_loop(margin):
    a, p = randn(5, 4, seed=1), randn(5, 4, seed=2)
    close(lifted_structure_loss(a, p, margin=margin), ref_lifted(a, p, margin))


# ----------------------------------------------------------------------------- gradients
def _g(*shape: int, seed: int) -> torch.Tensor:
    return randn(*shape, seed=seed, grad=True)


GRADCHECKS = {
    "infonce": (lambda a, p, h: info_nce(a, p, h, temperature=0.5, hard_negative_weight=0.3), 3),
    "nt_xent": (lambda a, b: nt_xent(a, b, temperature=0.5), 2),
    "moco": (lambda q, k, u: moco_loss(q, k, u, temperature=0.5), 3),
    "moco_in_batch": (lambda q, k, u: moco_loss(q, k, u, temperature=0.5, in_batch_negatives=True), 3),
    "xbm": (lambda a, p, m: xbm_loss(a, p, m, temperature=0.5), 3),
    "barlow_twins": (lambda a, b: barlow_twins(a, b, off_diagonal_weight=0.1), 2),
    "triplet": (lambda a, p, n: triplet_loss(a, p, n, margin=1.5), 3),
    "triplet_hard_euclidean": (
        lambda a, p, n: triplet_loss(a, p, n, margin=3.0, distance="euclidean", batch_hard=True),
        3,
    ),
    "contrastive": (lambda a, b: pair_contrastive_loss(a, b, torch.tensor([1, 0, 1, 0]), margin=1.5), 2),
    "contrastive_euclidean": (
        lambda a, b: pair_contrastive_loss(a, b, torch.tensor([1, 0, 1, 0]), margin=2.5, distance="euclidean"),
        2,
    ),
    "logistic": (lambda a, b: logistic_loss(a, b, torch.tensor([1, 0, 1, 0]), temperature=0.5), 2),
    "n_pair": (lambda a, p: n_pair_loss(a, p, l2_weight=0.1), 2),
    "lifted_structure": (lambda a, p: lifted_structure_loss(a, p, margin=2.0), 2),
}


@pytest.mark.parametrize("name", sorted(GRADCHECKS))
def test_gradcheck(name):
    fn, n_inputs = GRADCHECKS[name]
    assert gradcheck(fn, tuple(_g(4, 3, seed=s) for s in range(n_inputs)))


def test_gradcheck_predictor_losses_through_predictions():
    targets = randn(4, 2, 3, seed=9)  # stop-gradient side: a constant for gradcheck
    assert gradcheck(lambda p: byol_loss(p, targets), (_g(4, 2, 3, seed=1),))
    assert gradcheck(lambda p: simsiam_loss(p, targets), (_g(4, 2, 3, seed=1),))


def test_gradcheck_swav_with_fixed_codes():
    codes = torch.softmax(randn(4, 5, seed=3), dim=1)
    protos = Prototypes(3, 5).double()

    def fn(z: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        scores = torch.func.functional_call(protos, {"weight": w}, (z,))  # (4, 5)
        return swapped_prediction(scores, codes, temperature=0.5)

    assert gradcheck(fn, (_g(4, 3, seed=1), _g(5, 3, seed=2)))


def test_circle_gradient_treats_weights_as_constants():
    """The paper detaches alpha, so compare with finite differences of the loop with alpha frozen."""
    a, b, y, m, gamma = randn(4, 3, seed=1, grad=True), randn(4, 3, seed=2), torch.tensor([1, 0, 1, 0]), 0.25, 4.0
    circle_loss(a, b, y, margin=m, gamma=gamma).backward()
    s = [cos(u, v) for u, v in zip(rows(a), rows(b), strict=True)]
    alphas = [max(0.0, 1 + m - s[i]) if y[i] == 1 else max(0.0, s[i] + m) for i in range(4)]
    numeric, h = torch.zeros_like(a), 1e-6
    for idx in range(a.numel()):
        plus, minus = a.detach().clone(), a.detach().clone()
        plus.view(-1)[idx] += h
        minus.view(-1)[idx] -= h
        diff = ref_circle(plus, b, y, m, gamma, alphas) - ref_circle(minus, b, y, m, gamma, alphas)
        numeric.view(-1)[idx] = diff / (2 * h)
    torch.testing.assert_close(a.grad, numeric, atol=1e-6, rtol=1e-5)


# ----------------------------------------------------------------------------- registry
EXPECTED = {
    "infonce", "nt_xent", "moco", "xbm", "byol", "simsiam", "barlow_twins", "swav",
    "triplet", "contrastive", "n_pair", "logistic", "circle", "lifted_structure",
}  # fmt: skip


def _inputs(name: str) -> list:
    n, d = 4, 6
    make = {
        "queue": lambda s: randn(7, d, seed=s),
        "memory": lambda s: randn(7, d, seed=s),
        "labels": lambda s: torch.tensor([1, 0, 1, 0]),
        "prototypes": lambda s: Prototypes(d, 5).double(),
    }
    stacked = {"online_predictions", "target_projections", "predictions", "projections"}
    out = []
    for s, arg in enumerate(OBJECTIVES[name].inputs):
        arg = arg.rstrip("?")
        if arg in make:
            out.append(make[arg](s))
        else:
            out.append(_g(n, 2, d, seed=s) if arg in stacked else _g(n, d, seed=s))
    return out


def test_registry_names():
    assert set(OBJECTIVES) == EXPECTED


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_registered_objective_runs_from_its_spec(name):
    spec = OBJECTIVES[name]
    inputs = _inputs(name)
    loss = build_objective(name, **spec.defaults)(*inputs)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    assert torch.isfinite(inputs[0].grad).all()


def test_build_objective_rejects_unknown_names_and_hyperparameters():
    with pytest.raises(KeyError, match="unknown objective"):
        build_objective("simclr")
    with pytest.raises(ValueError, match="temp"):
        build_objective("nt_xent", temp=0.1)
    assert OBJECTIVES["barlow_twins"].defaults["off_diagonal_weight"] == 5e-3
    assert OBJECTIVES["moco"].needs_momentum_encoder and OBJECTIVES["moco"].needs_queue
    assert OBJECTIVES["swav"].needs_prototypes and OBJECTIVES["circle"].needs_labels
