"""LoRA runs end to end through ``training/train.py``: 2 processes train like 1, and a tiny decoder learns."""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.data import write_corpus
from tests.helpers.decoders import build_tiny_decoder_dir
from tests.helpers.launch import STEPS, assert_same_training, launch, metrics, weights
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow


def test_two_processes_train_like_one_with_lora(tmp_path, small_dev_data):
    """LoRA on 2 processes with the gradient cache, gradient checkpointing (LoRA needs its inputs to require
    grad) and Matryoshka: the run of 1 process. Plain 2-process DDP is tested without LoRA in test_multiprocess."""
    model = build_tiny_decoder_dir(str(tmp_path / "llama"), "llama")
    write_corpus(tmp_path / "corpus.txt", n=400)
    cfg = dict(
        model_name_or_path=model, data_dir=small_dev_data, train_file=str(tmp_path / "corpus.txt"), mode="unsup",
        pooler="last_token", lora_r=4, lora_alpha=8, lora_dropout=0.0, dropout=0.0, max_seq_len=16,
        learning_rate=1e-3, max_steps=STEPS, eval_steps=10, eval_batch_size=64, seed=3,
    )  # fmt: skip
    # Matryoshka at half the size (32). Not 4: InfoNCE at tau 0.05 on 4 of 32 dimensions is so sharp that any
    # reordering of a sum (grad cache vs one pass, even on one process) moves ~200 coordinates of the last
    # down_proj by up to 4e-5 in 20 steps (measured); at 16 the two agree to 1e-8.
    cfg.update(grad_cache_chunk_size=6, gradient_checkpointing=True, matryoshka_dims="32,16")
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    launch(1, {**cfg, "batch_size": 16, "output_dir": one})
    launch(2, {**cfg, "batch_size": 8, "output_dir": two})
    m1, m2 = metrics(one), metrics(two)
    assert [r["step"] for r in m2] == list(range(1, STEPS + 1))
    for a, b in zip(m1, m2):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), a["step"]
    assert_same_training(weights(os.path.join(one, "model")), weights(os.path.join(two, "model")))
    for run in (one, two):  # the adapter alone is saved beside the merged weights
        assert os.path.isfile(os.path.join(run, "model", "adapter", "adapter_model.safetensors"))


def test_unsup_simcse_with_lora_spreads_a_tiny_decoder(tmp_path, small_dev_data):
    """The CPU demo recipe (last-token pooling, attention dropout 0.3 makes the views, LoRA r 8) on a tiny
    random Llama: the loss falls and the batch's embeddings spread (uniformity falls), as for BERT.
    Measured when written: loss 1.0 -> 0.05, batch uniformity -1.0 -> -2.8 in 40 steps (demo corpus)."""
    from simcse.config import load_config
    from simcse.train import train

    model = build_tiny_decoder_dir(str(tmp_path / "llama"), "llama")
    write_corpus(tmp_path / "corpus.txt", n=32 * 60, seed=1)
    cfg = load_config(
        os.path.join(REPO, "training", "configs", "demo_unsup_tiny_llm.yaml"),
        {"model_name_or_path": model, "train_file": str(tmp_path / "corpus.txt"), "data_dir": small_dev_data,
         "output_dir": str(tmp_path / "run"), "collapse_check_steps": 1, "max_steps": 30, "eval_steps": 30},
    )  # fmt: skip
    state = train(cfg)
    with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    losses = [r["loss"] for r in records]
    spread = [r["batch_uniformity"] for r in records]
    first, last = sum(losses[:3]) / 3, sum(losses[-10:]) / 10
    print(f"\nLoRA tiny llama: loss {first:.3f} -> {last:.3f}; uniformity {spread[0]:.3f} -> {spread[-1]:.3f}")
    assert last < 0.5 * first
    assert sum(spread[-5:]) / 5 < spread[0] - 0.5
    assert state["step"] == cfg.max_steps
