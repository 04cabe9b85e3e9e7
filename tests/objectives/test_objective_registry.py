"""Adding an objective: its own loss and step function plus ONE registry entry, and the trainer runs it.

The toy objective below ("cosine_margin": pull each anchor's positive above every other candidate of
the global batch by a margin, a hinge on cosines) is the whole change a contributor makes: a loss, a
step function, one ``ObjectiveSpec``. The config, the step, the gradient across processes, the
collapse watch and the checkpoints come from the registry entry.
"""

from __future__ import annotations

import json
import os

import pytest
import torch
import torch.nn.functional as F

from simcse.objectives import OBJECTIVES, ObjectiveSpec, StepInputs
from simcse.train import load_config, train
from tests.helpers.data import write_corpus


# --- the toy objective's own file would hold these two functions ---------------------------------
def cosine_margin_loss(anchors: torch.Tensor, candidates: torch.Tensor, *, margin: float = 0.2,
                       label_offset: int = 0) -> torch.Tensor:  # fmt: skip
    """Mean hinge ``max(0, margin - cos(a_i, p_i) + cos(a_i, c_j))`` over candidates ``j != i``."""
    sims = F.normalize(anchors, dim=-1) @ F.normalize(candidates, dim=-1).T  # (n, world * n)
    own = torch.arange(anchors.shape[0], device=anchors.device) + label_offset  # (n,)
    positive = sims.gather(1, own[:, None])  # (n, 1)
    others = torch.ones_like(sims, dtype=torch.bool).scatter(1, own[:, None], False)  # (n, world * n)
    return (margin - positive + sims).clamp(min=0)[others].mean()


def cosine_margin_step(x: StepInputs) -> torch.Tensor:
    """Local anchors against every process's positives, labels offset by rank."""
    return x.loss(x.z[0], x.gather(x.z[1]), label_offset=x.offset)


# --- and this is its one registry entry -----------------------------------------------------------
TOY = ObjectiveSpec("cosine_margin", cosine_margin_loss, ("anchors", "candidates"), cosine_margin_step)


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setitem(OBJECTIVES, TOY.name, TOY)
    return TOY.name


def test_the_toy_loss_matches_a_loop():
    a, c = torch.randn(3, 4), torch.randn(3, 4)
    cos = torch.nn.functional.cosine_similarity
    expected = [max(0.0, 0.2 - cos(a[i], c[i], dim=0).item() + cos(a[i], c[j], dim=0).item())
                for i in range(3) for j in range(3) if j != i]  # fmt: skip
    assert cosine_margin_loss(a, c).item() == pytest.approx(sum(expected) / len(expected), abs=1e-6)


def test_a_registered_objective_trains_checkpoints_and_is_watched(registered, tiny_model_dir, small_dev_data,
                                                                  tmp_path):  # fmt: skip
    corpus = tmp_path / "corpus.txt"
    write_corpus(corpus)
    cfg = load_config(None, dict(
        model_name_or_path=tiny_model_dir, train_file=str(corpus), data_dir=small_dev_data, objective=registered,
        batch_size=8, max_seq_len=16, max_steps=4, eval_steps=2, collapse_check_steps=2, learning_rate=1e-3,
        output_dir=str(tmp_path / "run"),
    ))  # fmt: skip
    state = train(cfg)
    assert state["step"] == 4
    with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    assert all(0 < r["loss"] < 1 for r in records)  # a hinge of cosines, the margin 0.2 at the start
    from safetensors.torch import load_file

    start = load_file(os.path.join(tiny_model_dir, "model.safetensors"))
    end = load_file(os.path.join(cfg.output_dir, "checkpoints", "step-00000004", "model.safetensors"))
    key = "embeddings.word_embeddings.weight"
    assert not torch.equal(start[key], end[f"encoder.model.{key}"])  # its gradient reached the encoder
    assert "embedding_std" in records[1] and "stsb_dev" in records[1]
    assert os.path.isdir(os.path.join(cfg.output_dir, "checkpoints", "step-00000004"))
    # a hard negative it does not read is refused from its registry entry (views=2)
    with pytest.raises(ValueError, match="cosine_margin takes two views"):
        load_config(None, {"objective": registered, "mode": "triplets"})
    with pytest.raises(ValueError, match="margin is read by objective"):  # a field it does not declare
        load_config(None, {"objective": registered, "margin": 0.3})
