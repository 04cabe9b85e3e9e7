"""The data path under several processes, through ``torchrun ... training/train.py`` (slow).

Two processes build the tokenized cache once (the main process; the other waits and memory-maps it)
and train like one; ``streaming: true`` trains on 1 and 2 processes, and a 2-process streaming run
resumed from its checkpoint ends with the uninterrupted run's weights.
"""

from __future__ import annotations

import os

import pytest

from simcse.data.cache import FINGERPRINTS_DIR
from tests.helpers.data import write_corpus
from tests.helpers.launch import assert_same_training, assert_same_weights, checkpoint, launch, metrics, weights

pytestmark = pytest.mark.slow
STEPS = 8


@pytest.fixture(scope="module")
def base(tiny_model_dir: str, small_dev_data: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("mp_stream")
    write_corpus(root / "corpus.txt", n=100)
    return dict(
        model_name_or_path=tiny_model_dir, data_dir=small_dev_data, dropout=0.0, max_seq_len=16, learning_rate=3e-5,
        max_steps=STEPS, eval_steps=4, checkpoint_steps=4, eval_batch_size=64, seed=3,
        train_file=str(root / "corpus.txt"),
    )  # fmt: skip


def test_two_processes_tokenize_once_and_train_like_one(base, tmp_path):
    cache = tmp_path / "cache"
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    launch(1, {**base, "batch_size": 16, "output_dir": one, "data_cache_dir": str(tmp_path / "cache1")})
    run = launch(2, {**base, "batch_size": 8, "output_dir": two, "data_cache_dir": str(cache)})
    assert run.stderr.count("tokenized ") == 1  # built by one process only
    assert len([n for n in os.listdir(cache) if n != FINGERPRINTS_DIR]) == 1  # one cache folder, no temporary left
    for a, b in zip(metrics(one), metrics(two)):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), a["step"]
    assert_same_training(weights(checkpoint(one, STEPS)), weights(checkpoint(two, STEPS)))


def test_streaming_on_one_and_two_processes_and_resume(base, tmp_path):
    cfg = {**base, "streaming": "true", "shuffle_buffer": 16, "batch_size": 8}
    one = str(tmp_path / "one")
    launch(1, {**cfg, "output_dir": one})
    assert [r["step"] for r in metrics(one)] == list(range(1, STEPS + 1))
    two = str(tmp_path / "two")
    launch(2, {**cfg, "output_dir": two})  # 100 rows: 50 per process, 6 batches of 8: crosses into epoch 2
    m2 = metrics(two)
    assert [r["step"] for r in m2] == list(range(1, STEPS + 1))
    final = weights(checkpoint(two, STEPS))
    os.replace(checkpoint(two, STEPS), str(tmp_path / "moved"))
    launch(2, {**cfg, "output_dir": two}, resume=True)  # from step 4: each process reads past its 32 rows
    assert_same_weights(final, weights(checkpoint(two, STEPS)))
    assert [r["loss"] for r in metrics(two)] == pytest.approx([r["loss"] for r in m2], abs=1e-6)
