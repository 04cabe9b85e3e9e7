"""Augmented views end to end through ``torchrun ... training/train.py``: the same views on 1 and 2 processes
(equal losses at every step, equal weights) and after a resume, with a word-level view (WordNet synonyms), an
MLM view (a tiny masked LM), next-3-sentence positives and two encoders at once (slow)."""

from __future__ import annotations

import os

import pytest

from tests.helpers.data import write_corpus
from tests.helpers.launch import assert_same_training, assert_same_weights, checkpoint, launch, metrics, weights
from tests.helpers.models import build_tiny_mlm_dir

pytestmark = pytest.mark.slow
STEPS = 6


def test_views_on_two_processes_equal_one_process_and_a_resume(tiny_model_dir, small_dev_data, shared_data, tmp_path):
    write_corpus(tmp_path / "corpus.txt", n=200)
    cfg = dict(
        model_name_or_path=tiny_model_dir, data_dir=small_dev_data, train_file=str(tmp_path / "corpus.txt"),
        views="synonym:0.3,mlm:0.2", positive="next3", two_encoders="true",
        augment_model=build_tiny_mlm_dir(str(tmp_path / "mlm")), dropout=0.0, max_seq_len=16, learning_rate=3e-5,
        max_steps=STEPS, eval_steps=3, checkpoint_steps=3, eval_batch_size=64, seed=3,
    )  # fmt: skip
    nltk = {"NLTK_DATA": os.path.join(shared_data, "nltk_data")}  # the data dir above has no WordNet
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    launch(1, {**cfg, "batch_size": 16, "output_dir": one}, **nltk)
    launch(2, {**cfg, "batch_size": 8, "output_dir": two}, **nltk)
    m1, m2 = metrics(one), metrics(two)
    assert [r["step"] for r in m2] == list(range(1, STEPS + 1))
    for a, b in zip(m1, m2):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), a["step"]
    final = weights(checkpoint(two, STEPS))
    assert any(k.startswith("second.") for k in final)  # the second encoder trains and is checkpointed
    assert_same_training(weights(checkpoint(one, STEPS)), final)
    assert not any("second" in k for k in weights(os.path.join(two, "model")))  # the first encoder is the model
    os.replace(checkpoint(two, STEPS), str(tmp_path / "moved"))
    launch(2, {**cfg, "batch_size": 8, "output_dir": two}, resume=True, **nltk)
    assert_same_weights(final, weights(checkpoint(two, STEPS)))
    assert [r["loss"] for r in metrics(two)] == pytest.approx([r["loss"] for r in m2], abs=1e-6)
