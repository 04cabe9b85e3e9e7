"""Training: one forward over all views, cross-process equivalence, resume, saved-folder readers, bad input."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from simcse.config import load_config
from simcse.data.cache import load_training_views
from simcse.data.readers import DataError
from simcse.data.sampler import BatchSchedule
from simcse.train import train
from simcse.train.model import CPU_LENGTH_GROUP_ROWS, build_model, length_group_rows
from simcse.train.step import compute_loss, embed_views
from tests.helpers.data import cfg_for, write_corpus, write_triplets
from tests.helpers.launch import run_probe
from tests.helpers.launch import weights as _weights
from tests.helpers.paths import REPO


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    write_corpus(path)
    return str(path)


@pytest.fixture
def triplets(tmp_path):
    path = tmp_path / "nli.csv"
    write_triplets(path)
    return str(path)


def test_unsup_step_is_one_forward_over_2n_rows(tiny_model_dir, corpus, tmp_path):
    cfg = cfg_for(tiny_model_dir, corpus, tmp_path, length_group_rows=0)
    model = build_model(cfg).train()
    views = load_training_views(cfg, model.encoder.tokenizer, verbose=False)
    batch = views.collate(list(range(8)))
    calls = []
    hook = model.encoder.model.register_forward_hook(
        lambda m, args, kwargs, out: calls.append(kwargs), with_kwargs=True
    )
    z = embed_views(model, batch, cfg)
    hook.remove()
    assert len(calls) == 1 and calls[0]["input_ids"].shape[0] == 16
    assert z.shape == (2, 8, 32)
    assert torch.equal(batch["input_ids"][:8], batch["input_ids"][8:])  # the same sentences twice
    assert (z[0] - z[1]).abs().max() > 1e-4  # dropout makes the views differ


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_length_groups_give_the_single_forward_loss_and_gradients(tiny_model_dir, corpus, triplets, tmp_path, mode):
    """Length-sorted groups (each padded to its own longest) = one forward padded to the batch's longest."""
    train_file = corpus if mode == "unsup" else triplets
    results = {}
    for group in (0, 8):
        cfg = cfg_for(
            tiny_model_dir, train_file, tmp_path, mode=mode, dropout=0.0, length_group_rows=group,
            hard_negative_weight=0.5 if mode == "triplets" else 0.0,
        )  # fmt: skip
        torch.manual_seed(0)
        model = build_model(cfg).train()
        batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(20)))
        widths: list[tuple[int, int]] = []
        hook = model.encoder.model.register_forward_hook(
            lambda m, args, kwargs, out, seen=widths: seen.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
        )
        loss = compute_loss(model, batch, cfg, model.encoder.tokenizer)
        hook.remove()
        loss.backward()
        results[group] = loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        rows, width = batch["input_ids"].shape
        if group == 0:
            assert widths == [(rows, width)]
        else:  # ceil(rows / 8) groups covering every row once, the later (shorter) ones cut narrower
            assert len(widths) == -(-rows // 8) and sum(w[0] for w in widths) == rows
            assert widths[0][1] == width and widths[-1][1] < width and widths == sorted(widths, key=lambda w: -w[1])
    torch.testing.assert_close(results[8][0], results[0][0], atol=1e-5, rtol=0)
    assert results[8][1].keys() == results[0][1].keys()
    for name, grad in results[0][1].items():
        torch.testing.assert_close(results[8][1][name], grad, atol=1e-5, rtol=1e-4, msg=name)


def test_length_groups_keep_views_apart_and_default_to_the_device(tiny_model_dir, corpus, tmp_path):
    cfg = cfg_for(tiny_model_dir, corpus, tmp_path, length_group_rows=4)
    model = build_model(cfg).train()
    batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(8)))
    z = embed_views(model, batch, cfg)
    assert z.shape == (2, 8, 32) and (z[0] - z[1]).abs().max() > 1e-4  # each row still has its own dropout mask
    auto = cfg_for(tiny_model_dir, corpus, tmp_path)
    assert auto.length_group_rows is None
    assert length_group_rows(auto, torch.device("cpu")) == CPU_LENGTH_GROUP_ROWS
    assert length_group_rows(auto, torch.device("cuda")) == 0  # one launch beats several on a GPU
    assert length_group_rows(cfg, torch.device("cuda")) == 4  # an explicit setting wins
    with pytest.raises(ValueError, match="length_group_rows"):
        cfg_for(tiny_model_dir, corpus, tmp_path, length_group_rows=-1)


def test_views_identical_without_dropout(tiny_model_dir, corpus, tmp_path):
    cfg = cfg_for(tiny_model_dir, corpus, tmp_path, dropout=0.0)
    model = build_model(cfg).train()
    views = load_training_views(cfg, model.encoder.tokenizer, verbose=False)
    z = embed_views(model, views.collate(list(range(8))), cfg)
    torch.testing.assert_close(z[0], z[1], atol=1e-6, rtol=0)


def test_same_dropout_mask_ablation_gives_identical_views(tiny_model_dir, corpus, tmp_path):
    cfg = cfg_for(tiny_model_dir, corpus, tmp_path, same_dropout_mask=True)
    model = build_model(cfg).train()
    views = load_training_views(cfg, model.encoder.tokenizer, verbose=False)
    z = embed_views(model, views.collate(list(range(8))), cfg)
    assert torch.equal(z[0], z[1])


def test_batch_schedule_splits_global_batch_by_rank():
    one = BatchSchedule(100, 16, 1, seed=3)
    two = BatchSchedule(100, 8, 2, seed=3)
    for step in (0, 5, 6, 7):  # crosses an epoch boundary (6 steps per epoch)
        assert np.array_equal(one.rows(step, 0), np.concatenate([two.rows(step, 0), two.rows(step, 1)]))


@pytest.mark.slow
def test_two_processes_equal_one_process_global_batch(tiny_model_dir, triplets, tmp_path):
    """One step's loss and every gradient, triplets with hard negatives and the MLP head (the richest batch;
    unsup runs are compared end to end in tests/end_to_end/test_multiprocess.py)."""
    common = dict(model_name_or_path=tiny_model_dir, dropout=0.0, max_seq_len=16, mode="triplets")
    common.update(train_file=triplets, hard_negative_weight=0.5, mlp_only_train=False)
    single = run_probe(1, str(tmp_path / "one.pt"), {**common, "batch_size": 16, "length_group_rows": 0})
    # the 2 processes forward in length groups (inside DDP's one forward call): the same loss and gradients
    double = run_probe(2, str(tmp_path / "two.pt"), {**common, "batch_size": 8, "length_group_rows": 4})
    assert single["loss"] == pytest.approx(double["loss"], abs=1e-5)
    assert single["grads"].keys() == double["grads"].keys()
    for name, g in single["grads"].items():
        torch.testing.assert_close(double["grads"][name], g, atol=1e-5, rtol=1e-4, msg=name)


def test_resume_equals_uninterrupted(tiny_model_dir, corpus, tmp_path, shared_data):
    kw = dict(max_steps=6, eval_steps=3, data_dir=shared_data, seed=7)
    straight = cfg_for(tiny_model_dir, corpus, tmp_path, output_dir=str(tmp_path / "a"), **kw)
    train(straight)
    broken = cfg_for(tiny_model_dir, corpus, tmp_path, output_dir=str(tmp_path / "b"), **kw)
    state = train(broken, stop_after=3)
    assert state["step"] == 3
    torch.manual_seed(12345)  # the resumed run must not depend on the RNG state it starts with
    state = train(broken, resume=True)
    assert state["step"] == 6
    a = _weights(os.path.join(tmp_path, "a", "checkpoints", "step-00000006"))
    b = _weights(os.path.join(tmp_path, "b", "checkpoints", "step-00000006"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0, msg=name)


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_saved_model_reads_the_same_three_ways(tiny_model_dir, corpus, triplets, tmp_path, shared_data, mode):
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    from simcse import Encoder

    train_file = corpus if mode == "unsup" else triplets
    cfg = cfg_for(
        tiny_model_dir, train_file, tmp_path, mode=mode, max_steps=2, eval_steps=2,
        data_dir=shared_data, mlp_only_train=mode == "unsup",
    )  # fmt: skip
    train(cfg)
    folder = os.path.join(cfg.output_dir, "model")
    # the last sentence is longer than max_seq_len (16): that limit is for training data only, so the saved model
    # keeps the base model's limit and encodes it whole, as the plain transformers call below does
    long = " ".join(["a man is playing the guitar in the park with the old dog"] * 3)
    sentences = ["a man is playing the guitar", "the dog runs", "an old red car in the park today", long]
    encoder = Encoder.from_pretrained(folder)
    assert encoder.max_seq_length == Encoder.from_pretrained(tiny_model_dir).max_seq_length > cfg.max_seq_len
    ours = encoder.encode(sentences)
    st = SentenceTransformer(folder, device="cpu").encode(sentences)
    np.testing.assert_allclose(st, ours, atol=1e-5)
    tok, hf = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        out = hf(**tok(sentences, padding=True, return_tensors="pt"))
    hf_emb = out.last_hidden_state[:, 0] if mode == "unsup" else out.pooler_output
    np.testing.assert_allclose(hf_emb.numpy(), ours, atol=1e-5)
    assert os.path.isdir(os.path.join(folder, "2_Dense")) == (mode != "unsup")


def test_resolved_config_saved_and_unknown_keys_rejected(tiny_model_dir, corpus, tmp_path, shared_data):
    import yaml

    cfg = cfg_for(tiny_model_dir, corpus, tmp_path, max_steps=1, eval_steps=1, data_dir=shared_data)
    train(cfg)
    with open(os.path.join(cfg.output_dir, "config.yaml"), encoding="utf-8") as f:
        saved = yaml.safe_load(f)
    assert saved["max_steps"] == 1 and saved["temperature"] == 0.05
    with pytest.raises(ValueError, match="unknown config key 'temprature'.*temperature"):
        load_config(None, {"temprature": "0.1"})
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("learning_rate: 1e-5\nbatchsize: 3\n")
    with pytest.raises(ValueError, match=r"bad.yaml: unknown config key 'batchsize'"):
        load_config(str(bad_yaml))
    with pytest.raises(ValueError, match="batch_size='many'"):
        load_config(None, {"batch_size": "many"})


@pytest.mark.parametrize(
    ("content", "mode", "message"),
    [
        (b"", "unsup", "no sentences"),
        (b"\n  \n\n", "unsup", "no sentences"),
        (b"good line\nbad \xff\xfe line\n", "unsup", r":2: invalid UTF-8"),
        (b"", "pairs", "file is empty"),
        (b"premise,hypothesis\na,b\n", "pairs", r":1: header .* lacks column\(s\) sent0,sent1"),
        (b"sent0,sent1\na,b\n", "triplets", r":1: header .* lacks column\(s\) hard_neg"),
        (b"sent0,sent1,hard_neg\na,b,c\nd,e\n", "triplets", r":3: expected 3 fields, found 2"),
        (b"sent0,sent1,hard_neg\na,b,c\nd,,f\n", "triplets", r":3: empty field\(s\) sent1 .*on_bad_line: skip"),
    ],
)
def test_bad_training_data_names_file_and_line(tiny_model_dir, tmp_path, content, mode, message):
    path = tmp_path / ("data.csv" if mode != "unsup" else "data.txt")
    path.write_bytes(content)
    run = tmp_path / "run"
    (run / "model").mkdir(parents=True)
    (run / "model" / "keep.txt").write_text("earlier result")
    cfg = cfg_for(tiny_model_dir, str(path), tmp_path, mode=mode, mlp_only_train=mode == "unsup")
    with pytest.raises(DataError, match=message) as err:
        train(cfg)
    assert str(path) in str(err.value)
    assert sorted(os.listdir(run)) == ["model"]  # nothing new, nothing half-written
    assert (run / "model" / "keep.txt").read_text() == "earlier result"


def test_mlm_auxiliary_loss_runs_and_adds(tiny_model_dir, corpus, tmp_path):
    torch.manual_seed(0)
    cfg = cfg_for(tiny_model_dir, corpus, tmp_path, do_mlm=True, dropout=0.0)
    model = build_model(cfg).train()
    views = load_training_views(cfg, model.encoder.tokenizer, verbose=False)
    batch = views.collate(list(range(8)))
    with_mlm = compute_loss(model, batch, cfg, model.encoder.tokenizer)
    plain = compute_loss(model, batch, load_config(None, {**vars(cfg), "do_mlm": False}), model.encoder.tokenizer)
    # MLM cross-entropy over a random 30-token vocabulary is about log(V) > 0, weighted by 0.1
    assert float((with_mlm - plain).detach()) > 0.1 * 1.0


def test_mlp_kept_by_default_for_supervised_modes_and_dropped_for_unsup(tmp_path):
    # the paper keeps the MLP at test time for supervised SimCSE, uses it in training only for unsup
    assert cfg_for("m", "f.csv", tmp_path, mode="triplets").mlp_only_train is False
    assert cfg_for("m", "f.csv", tmp_path, mode="pairs").mlp_only_train is False
    assert cfg_for("m", "f.txt", tmp_path, mode="unsup").mlp_only_train is True
    assert cfg_for("m", "f.csv", tmp_path, mode="triplets", mlp_only_train=True).mlp_only_train is True
    assert cfg_for("m", "f.txt", tmp_path, mode="unsup", mlp_only_train=False).mlp_only_train is False


# Appendix A of the paper (batch size, learning rate) and its MLP choice; batch_size is per process
PAPER_RECIPES = {
    "unsup_bert_base.yaml": (64, 3e-5, True),
    "unsup_roberta_base.yaml": (512, 1e-5, True),
    "sup_bert_base.yaml": (512, 5e-5, False),
    "sup_roberta_base.yaml": (512, 5e-5, False),
}


@pytest.mark.parametrize("name", list(PAPER_RECIPES))
def test_paper_recipes_use_the_papers_hyperparameters(name):
    batch, lr, mlp_only_train = PAPER_RECIPES[name]
    cfg = load_config(os.path.join(REPO, "training", "configs", name))
    processes = 4 if batch > cfg.batch_size else 1  # the recipes' comments: 4 processes x 128
    assert cfg.batch_size * processes == batch
    assert cfg.learning_rate == lr and cfg.mlp_only_train is mlp_only_train and cfg.temperature == 0.05
