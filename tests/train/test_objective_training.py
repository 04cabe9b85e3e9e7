"""Every objective in the training loop: trains, checkpoints and resumes; state survives; collapse is flagged."""

from __future__ import annotations

import json
import logging
import os

import pytest
import torch

from simcse.config import load_config
from simcse.data.cache import load_training_views
from simcse.objectives import OBJECTIVES
from simcse.objectives.pairs import labelled_pairs
from simcse.train import train
from simcse.train.model import build_model
from simcse.train.objective_step import ObjectiveStep
from simcse.train.step import build_optimizer, compute_loss, embed_views
from tests.helpers.launch import weights as _load
from tests.helpers.objectives import config


@pytest.fixture(scope="module")
def dev_data(shared_data: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data dir with the first 24 pairs of the dev sets scored during training (a fast evaluation)."""
    from simcse.data_dir import senteval_dir

    root = tmp_path_factory.mktemp("objective_dev_data")
    for rel, keep in (("STS/STSBenchmark/sts-dev.csv", 24), ("SICK/SICK_trial.txt", 25)):  # SICK has a header
        with open(os.path.join(senteval_dir(shared_data), rel), encoding="utf-8") as f:
            lines = f.readlines()[:keep]
        (root / "senteval" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "senteval" / rel).write_text("".join(lines), encoding="utf-8")
    return str(root)


@pytest.fixture(autouse=True)
def _no_model_card(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the model card and training-curves plot at the end of train() (tested elsewhere; half the time here)."""
    monkeypatch.setattr("simcse.train.loop.finish_run", lambda cfg: None, raising=False)


# the objectives that read a hard negative (the others refuse mode: triplets), written out independently
THREE_VIEW_OBJECTIVES = ("infonce", "triplet", "contrastive", "logistic", "circle")


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_loss_in_every_mode_reaches_the_encoder(tiny_model_dir, data_files, tmp_path, objective):
    model = None
    for mode in ("unsup", "pairs", "triplets"):
        if mode == "triplets" and objective not in THREE_VIEW_OBJECTIVES:
            with pytest.raises(ValueError, match="takes two views"):
                config(tiny_model_dir, data_files, str(tmp_path), objective, mode=mode)
            continue
        cfg = config(tiny_model_dir, data_files, str(tmp_path), objective, mode=mode)
        model = model or build_model(cfg).train()  # the mode changes the data, not the model
        batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(8)))
        model.zero_grad()
        loss = compute_loss(model, batch, cfg, model.encoder.tokenizer, ObjectiveStep(cfg, model.encoder.dim))
        assert loss.ndim == 0 and torch.isfinite(loss), mode
        loss.backward()
        grad = model.encoder.model.embeddings.word_embeddings.weight.grad
        assert grad is not None and grad.abs().sum() > 0, mode


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_trains_and_resumes(tiny_model_dir, data_files, dev_data, tmp_path, objective):
    cfg = config(tiny_model_dir, data_files, str(tmp_path / "run"), objective, dev_data, max_steps=2)
    assert train(cfg, stop_after=1)["step"] == 1
    torch.manual_seed(999)  # the resumed run must not depend on the RNG state it starts with
    state = train(cfg, resume=True)
    assert state["step"] == 2 and state["best_step"] == 2 and state["nonfinite_skipped"] == 0
    with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        assert [json.loads(line)["step"] for line in f] == [1, 2]
    last = os.path.join(cfg.output_dir, "checkpoints", "step-00000002")
    saved, spec = _load(last), OBJECTIVES[objective]
    assert any(k.startswith("objective.predictor.") for k in saved) == spec.needs_predictor
    assert any(k.startswith("objective.prototypes.") for k in saved) == spec.needs_prototypes
    assert any(k.startswith("objective.target.") for k in saved) == spec.needs_momentum_encoder
    if spec.needs_queue or spec.needs_memory:  # step 1's 8 keys were restored, then step 2 added 8 into 12 slots
        queue = torch.load(os.path.join(last, "custom_checkpoint_0.pkl"), weights_only=False)
        prefix = "queue." if spec.needs_memory else ""
        assert queue[f"{prefix}_extra_state"]["filled"] == 12
    if objective == "moco":  # queue and EMA target equal those of an uninterrupted run
        straight = config(tiny_model_dir, data_files, str(tmp_path / "straight"), objective, dev_data, max_steps=2)
        train(straight)
        reference = os.path.join(straight.output_dir, "checkpoints", "step-00000002")
        for key, value in _load(reference).items():  # the encoder and objective.target.*
            torch.testing.assert_close(saved[key], value, atol=1e-6, rtol=0, msg=key)
        expected = torch.load(os.path.join(reference, "custom_checkpoint_0.pkl"), weights_only=False)
        assert queue["_extra_state"] == expected["_extra_state"]
        torch.testing.assert_close(queue["keys"], expected["keys"], atol=1e-6, rtol=0)


def test_collapse_flagged_for_byol_without_predictor_not_for_infonce(
    tiny_model_dir, data_files, dev_data, tmp_path, caplog
):
    common = dict(max_steps=6, learning_rate=1e-2, collapse_check_steps=1)
    records = {}
    for objective, extra in (("infonce", {}), ("byol", {"predictor_hidden": 0, "momentum": 0.0})):
        cfg = config(tiny_model_dir, data_files, str(tmp_path / objective), objective, dev_data, **common, **extra)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="simcse"):
            train(cfg)
        with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
            records[objective] = [json.loads(line) for line in f]
        assert all({"embedding_std", "batch_uniformity", "collapsed"} <= r.keys() for r in records[objective])
        warned = [r for r in caplog.records if "look collapsed" in r.getMessage()]
        assert len(warned) == (objective == "byol"), objective  # once, and only for BYOL without predictor
    assert not any(r["collapsed"] for r in records["infonce"])
    assert records["infonce"][-1]["batch_uniformity"] < -1.0  # InfoNCE spreads the batch
    assert records["byol"][-1]["collapsed"] == 1.0 and records["byol"][-1]["batch_uniformity"] > -0.1


def test_momentum_encoder_is_frozen_and_left_out_of_the_optimizer(tiny_model_dir, data_files, tmp_path):
    model = build_model(config(tiny_model_dir, data_files, str(tmp_path), "byol"))
    target = list(model.objective.target.parameters())
    assert target and not any(p.requires_grad for p in target)
    in_optimizer = {id(p) for group in build_optimizer(model, load_config()).param_groups for p in group["params"]}
    assert not in_optimizer & {id(p) for p in target}
    assert {id(p) for p in model.objective.predictor.parameters()} <= in_optimizer
    assert {id(p) for p in model.encoder.parameters()} <= in_optimizer


def test_after_step_moves_the_target_by_ema_and_enqueues_the_keys(tiny_model_dir, data_files, tmp_path):
    cfg = config(tiny_model_dir, data_files, str(tmp_path), "moco", momentum=0.9)
    model = build_model(cfg).train()
    step = ObjectiveStep(cfg, model.encoder.dim)
    batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(8)))
    loss = step.loss(model, embed_views(model, batch, cfg), batch)
    assert len(step.state) == 0  # nothing enqueued before the step
    loss.backward()
    online = model.encoder.model.embeddings.word_embeddings.weight
    target = model.objective.target.target.model.embeddings.word_embeddings.weight
    before = target.clone()
    with torch.no_grad():
        online.add_(1.0)  # stands in for optimizer.step()
    step.after_step(model)
    torch.testing.assert_close(target, 0.9 * before + 0.1 * online)
    assert len(step.state) == 8


def test_labelled_pairs_use_the_hard_negative_else_the_next_positive():
    a, p, h = torch.arange(3.0)[:, None], torch.arange(10.0, 13.0)[:, None], torch.arange(20.0, 23.0)[:, None]
    view_a, view_b, labels = labelled_pairs(a, p)
    assert view_a[:, 0].tolist() == [0, 1, 2, 0, 1, 2]
    assert view_b[:, 0].tolist() == [10, 11, 12, 11, 12, 10]  # positive_{i+1} as the negative
    assert labels.tolist() == [1, 1, 1, 0, 0, 0]
    assert labelled_pairs(a, p, h)[1][:, 0].tolist() == [10, 11, 12, 20, 21, 22]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objective": "simclr"}, "objective must be one of"),
        ({"objective": "nt_xent", "mode": "triplets", "train_file": "x.csv"}, "takes two views"),
        ({"objective": "infonce", "queue_size": 64}, "queue_size is read by objective.s. moco only"),
        ({"objective": "moco", "momentum": 1.5}, r"momentum must be in \[0, 1\]"),
        ({"objective": "triplet", "margin": -0.1}, "margin must be > 0"),
        ({"objective": "byol", "batch_size": 1}, "needs batch_size >= 2"),
    ],
)
def test_config_rejects_bad_objective_settings(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)
