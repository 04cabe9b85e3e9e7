"""Matryoshka and guided false-negative filtering against independent references.

Matryoshka: the weighted sum of the plain loss on hand-truncated, re-normalised embeddings. Guided filtering:
a mask written out loop by loop, a cross-entropy that leaves the masked candidates out by hand, and
sentence-transformers' ``GISTEmbedLoss`` where the two define the same thing (no anchor-anchor or
positive-positive terms, the "absolute" margin).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from simcse.objectives import guided_false_negatives, info_nce, matryoshka_loss
from simcse.objectives.matryoshka import ranking_distillation, tail_energy
from tests.helpers.data import cfg_for, write_triplets


def _plain(anchors, positives, hard, temperature=0.05, weight=0.0):
    """InfoNCE written out: cosine logits of each anchor against every positive and hard negative."""
    logits = []
    for i in range(anchors.shape[0]):
        row = [F.cosine_similarity(anchors[i], p, dim=0) / temperature for p in positives]
        row += [F.cosine_similarity(anchors[i], h, dim=0) / temperature + (weight if j == i else 0.0)
                for j, h in enumerate(hard)]  # fmt: skip
        logits.append(torch.stack(row))
    return F.cross_entropy(torch.stack(logits), torch.arange(anchors.shape[0]))


def test_matryoshka_loss_is_the_weighted_sum_of_the_plain_loss_on_truncated_renormalised_vectors():
    torch.manual_seed(0)
    a, p, h = (torch.randn(6, 16, dtype=torch.float64) for _ in range(3))
    dims, weights = [16, 8, 3], [1.0, 0.5, 2.0]
    got = matryoshka_loss(info_nce, a, p, h, dims=dims, weights=weights, hard_negative_weight=0.3)
    want = sum(w * _plain(*(F.normalize(x[:, :d], dim=-1) for x in (a, p, h)), weight=0.3)
               for d, w in zip(dims, weights))  # fmt: skip
    assert got.item() == pytest.approx(want.item(), rel=1e-10)


def test_the_training_step_applies_matryoshka_to_every_view_at_every_size(tiny_model_dir, tmp_path):
    from simcse.train.objective_step import ObjectiveStep

    write_triplets(tmp_path / "t.csv", n=32)
    cfg = cfg_for(tiny_model_dir, str(tmp_path / "t.csv"), tmp_path, mode="triplets", hard_negative_weight=0.5,
                  matryoshka_dims=[32, 4], matryoshka_weights=[1.0, 3.0])  # fmt: skip
    z = torch.randn(3, 5, 32, dtype=torch.float64, requires_grad=True)
    got = ObjectiveStep(cfg, 32).loss(None, z, {})
    want = _plain(z[0], z[1], z[2], weight=0.5) + 3.0 * _plain(z[0, :, :4], z[1, :, :4], z[2, :, :4], weight=0.5)
    assert got.item() == pytest.approx(want.item(), rel=1e-10)
    g1, g2 = torch.autograd.grad(got, z)[0], torch.autograd.grad(want, z)[0]
    assert torch.allclose(g1, g2, atol=1e-10)
    with pytest.raises(ValueError, match=r"matryoshka_dims \[32, 4\]: the encoder's vectors have 16"):
        ObjectiveStep(cfg, 16)


def _hand_kl(anchors, candidates, d, temperature):
    """KL(p_full || p_d) of each anchor's softmax over the candidates' cosines, averaged over anchors, by hand."""
    total = 0.0
    for i in range(anchors.shape[0]):
        full = [F.cosine_similarity(anchors[i], c, dim=0) / temperature for c in candidates]
        cut = [F.cosine_similarity(anchors[i, :d], c[:d], dim=0) / temperature for c in candidates]
        p, q = torch.softmax(torch.stack(full), 0), torch.softmax(torch.stack(cut), 0)
        total = total + sum(p[j] * (torch.log(p[j]) - torch.log(q[j])) for j in range(len(candidates)))
    return total / anchors.shape[0]


def test_ranking_distillation_adds_each_smaller_sizes_kl_to_the_full_sizes_ranking(tiny_model_dir, tmp_path):
    from simcse.train.objective_step import ObjectiveStep

    write_triplets(tmp_path / "t.csv", n=32)
    cfg = cfg_for(tiny_model_dir, str(tmp_path / "t.csv"), tmp_path, mode="triplets", matryoshka_dims=[32, 8, 4],
                  matryoshka_distill=0.7, temperature=0.1)  # fmt: skip
    torch.manual_seed(0)
    z = torch.randn(3, 5, 32, dtype=torch.float64, requires_grad=True)
    got = ObjectiveStep(cfg, 32).loss(None, z, {})
    plain = sum(_plain(*(z[v, :, :d] for v in range(3)), temperature=0.1) for d in (32, 8, 4))
    kl = _hand_kl(z[0], z[1], 8, 0.1) + _hand_kl(z[0], z[1], 4, 0.1)
    assert kl.item() > 1e-3  # the sizes rank differently: the term is not trivially 0
    assert got.item() == pytest.approx((plain + 0.7 * kl).item(), rel=1e-9)
    # the full size is the teacher: no gradient reaches the dimensions only the full size reads from the KL
    grad = torch.autograd.grad(ranking_distillation(z[0], z[1], [32, 8, 4], 0.1), z)[0]
    assert grad[:, :, 8:].abs().max() == 0 and grad[:2, :, :8].abs().max() > 0


def test_the_energy_term_adds_each_sizes_weighted_share_of_squared_length_beyond_it(tiny_model_dir, tmp_path):
    from simcse.train.objective_step import ObjectiveStep

    write_triplets(tmp_path / "t.csv", n=32)
    cfg = cfg_for(tiny_model_dir, str(tmp_path / "t.csv"), tmp_path, mode="triplets", matryoshka_dims=[32, 8, 4],
                  matryoshka_energy=[0.7, 0.3, 0.5])  # fmt: skip
    torch.manual_seed(0)
    z = torch.randn(3, 5, 32, dtype=torch.float64, requires_grad=True)
    got = ObjectiveStep(cfg, 32).loss(None, z, {})
    plain = sum(_plain(*(z[v, :, :d] for v in range(3))) for d in (32, 8, 4))
    rows = [z[v, i].tolist() for v in range(3) for i in range(5)]  # every view's vectors
    share = {d: sum(sum(x * x for x in row[d:]) / sum(x * x for x in row) for row in rows) / len(rows) for d in (8, 4)}
    assert got.item() == pytest.approx(plain.item() + 0.3 * share[8] + 0.5 * share[4], rel=1e-9)  # full: no tail
    # a vector already inside its first d dimensions adds nothing; one outside them adds 1 per size
    inside, outside = torch.zeros(1, 2, 16), torch.zeros(1, 2, 16)
    inside[..., :4], outside[..., 12:] = 1.0, 2.0
    assert tail_energy(inside, [16, 8, 4]).item() == 0.0 and tail_energy(outside, [16, 8, 4]).item() == 2.0
    assert tail_energy(outside, [16, 8, 4], [1.0, 0.0, 3.0]).item() == 3.0
    # under autocast (bf16 vectors) the shares are computed in float32
    assert tail_energy(z.detach().bfloat16(), [32, 8]).dtype == torch.float32


def test_distillation_and_energy_need_matryoshka_and_a_weight_of_at_least_0(tiny_model_dir, tmp_path):
    for key, value, bad in (("matryoshka_distill", 1.0, -1.0), ("matryoshka_energy", [0.0, 1.0], [0.0, -1.0])):
        with pytest.raises(ValueError, match=f"{key} needs matryoshka_dims"):
            cfg_for(tiny_model_dir, "x.txt", tmp_path, **{key: value})
        with pytest.raises(ValueError, match=f"{key} must be >= 0"):
            cfg_for(tiny_model_dir, "x.txt", tmp_path, matryoshka_dims=[16, 8], **{key: bad})
    with pytest.raises(ValueError, match="matryoshka_energy needs one weight per matryoshka_dims"):
        cfg_for(tiny_model_dir, "x.txt", tmp_path, matryoshka_dims=[16, 8], matryoshka_energy=[1.0])
    cfg = cfg_for(tiny_model_dir, "x.txt", tmp_path, matryoshka_dims="16,8", matryoshka_energy="0,2.5")  # CLI form
    assert cfg.matryoshka_energy == (0.0, 2.5)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(objective="moco"), "matryoshka_dims needs an objective that scores the embeddings alone; moco"),
        (dict(objective="swav"), "matryoshka_dims needs an objective that scores the embeddings alone; swav"),
        (dict(matryoshka_weights=[1.0]), "one weight per matryoshka_dims"),
        (dict(matryoshka_dims=[8, 8]), "distinct"),
    ],
)
def test_what_does_not_compose_with_matryoshka_is_refused_in_one_line(tiny_model_dir, tmp_path, overrides, message):
    kw = {"matryoshka_dims": [16, 8], **overrides}
    with pytest.raises(ValueError, match=message):
        cfg_for(tiny_model_dir, "x.txt", tmp_path, **kw)


def _hand_mask(ga, gp, gh, margin, offset=0):
    n = ga.shape[0]
    cands = list(gp) + ([] if gh is None else list(gh))
    mask = torch.zeros(n, len(cands), dtype=torch.bool)
    for i in range(n):
        own = F.cosine_similarity(ga[i], gp[offset + i], dim=0)
        for j, c in enumerate(cands):
            if j != offset + i and F.cosine_similarity(ga[i], c, dim=0) > own - margin:
                mask[i, j] = True
    return mask


@pytest.mark.parametrize("margin", [0.0, 0.1])
def test_guided_mask_equals_a_hand_written_mask(margin):
    torch.manual_seed(1)
    ga, gp, gh = (torch.randn(5, 8, dtype=torch.float64) for _ in range(3))
    gp[2] = ga[0] * 2 + 0.01  # a paraphrase of anchor 0 among the in-batch negatives
    for hard in (None, gh):
        got = guided_false_negatives(ga, gp, hard, margin=margin)
        assert torch.equal(got, _hand_mask(ga, gp, hard, margin))
    assert guided_false_negatives(ga, gp)[0, 2]
    # with candidates gathered from 2 processes: anchors of process 1 start at row 5
    gp2 = torch.cat([torch.randn(5, 8, dtype=torch.float64), gp])
    assert torch.equal(guided_false_negatives(ga, gp2, label_offset=5), _hand_mask(ga, gp2, None, 0.0, offset=5))


def test_info_nce_leaves_the_masked_candidates_out_of_the_softmax():
    torch.manual_seed(2)
    a, p, h = (torch.randn(4, 8) for _ in range(3))
    mask = torch.zeros(4, 8, dtype=torch.bool)
    mask[0, 1] = mask[0, 4] = mask[3, 6] = True
    got = info_nce(a, p, h, false_negatives=mask)
    cands = torch.cat([p, h])
    want = 0.0
    for i in range(4):
        logits = [F.cosine_similarity(a[i], c, dim=0) / 0.05 for j, c in enumerate(cands) if not mask[i, j]]
        keep = [j for j in range(8) if not mask[i, j]]
        want += -(logits[keep.index(i)] - torch.logsumexp(torch.stack(logits), 0)) / 4
    assert got.item() == pytest.approx(float(want), rel=1e-5)


def test_guided_info_nce_equals_sentence_transformers_gist_embed_loss(tiny_model_dir, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import GISTEmbedLoss

    from tests.helpers.models import build_tiny_bert_dir

    model = SentenceTransformer(tiny_model_dir, device="cpu").eval()
    guide = SentenceTransformer(build_tiny_bert_dir(str(tmp_path / "guide"), seed=5, initializer_range=1.0),
                                device="cpu").eval()  # fmt: skip
    columns = [["a man plays the guitar", "a dog runs", "a child eats bread", "the red car"],
               ["a man is playing guitar", "the dog is running", "a kid eats", "an old house"],
               ["a woman sleeps", "a cat sits", "a man runs", "a blue car"]]  # fmt: skip
    features = [model.tokenize(c) for c in columns]
    masked = []
    for margin in (0.0, 0.05):
        theirs = GISTEmbedLoss(model, guide, temperature=0.05, margin=margin, contrast_anchors=False,
                               contrast_positives=False)(features, None)  # fmt: skip
        with torch.no_grad():
            z = [model.encode(c, convert_to_tensor=True) for c in columns]
            g = [guide.encode(c, convert_to_tensor=True) for c in columns]
        mask = guided_false_negatives(g[0], g[1], g[2], margin=margin)
        ours = info_nce(z[0], z[1], z[2], temperature=0.05, false_negatives=mask)
        assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)
        assert math.isfinite(ours.item())
        masked.append(int(mask.sum()))
    assert masked[-1] > 0  # the comparison covers masked negatives, not only the plain loss
