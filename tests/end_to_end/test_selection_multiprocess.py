"""Evaluation during training on 2 processes (``torchrun ... training/train.py``) scores like 1 process.

Each process encodes a share of every dev evaluator's texts (STS-B dev sentences, labelled pairs, queries and
the corpus), so both hold the scores one process computes and select the same step. Before the first step
(``eval_on_start``) both runs hold the same weights and every score agrees to 1e-6 (the model's vectors are
spread out, so float noise from other batch compositions cannot reorder a ranking); after training they
agree as far as the weights do.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.helpers.data import write_corpus
from tests.helpers.launch import FAULTY, launch, metrics
from tests.helpers.retrieval import write_small_sets

pytestmark = pytest.mark.slow
METRIC = "mini/ndcg@10"


def _encoded(log: str, rank: int) -> int:
    with open(f"{log}.{rank}", encoding="utf-8") as f:
        return sum(int(line.split()[1]) for line in f)


def test_two_processes_evaluate_and_select_like_one(spread_model_dir, small_dev_data, tmp_path) -> None:
    sets = write_small_sets(tmp_path, small_dev_data)
    write_corpus(tmp_path / "corpus.txt", n=200)
    specs = [
        {"type": "retrieval", "name": "mini", "path": sets["beir"], "split": "dev"},
        {"type": "pair_classification", "name": "pairs", "path": sets["pairs"]},
        {"type": "sts", "task": "STSBenchmark", "split": "dev"},
    ]
    cfg = dict(
        model_name_or_path=spread_model_dir, train_file=tmp_path / "corpus.txt", data_dir=small_dev_data,
        pooler="avg", dropout=0.0, max_seq_len=16, max_steps=4, eval_steps=2, learning_rate=3e-5, seed=3,
        eval_batch_size=16, dev_evaluators=json.dumps(specs), metric_for_best=METRIC, eval_on_start="true",
    )  # fmt: skip
    runs, logs = {}, {}
    for n, batch in ((1, 16), (2, 8)):
        runs[n], logs[n] = str(tmp_path / f"run{n}"), str(tmp_path / f"encoded{n}")
        launch(n, {**cfg, "batch_size": batch, "output_dir": runs[n]}, script=FAULTY, SIMCSE_TEST_ENCODE_LOG=logs[n])
    one, two = ([r for r in metrics(runs[n]) if METRIC in r] for n in (1, 2))
    assert [r["step"] for r in one] == [r["step"] for r in two] == [0, 2, 4]
    keys = {k for k in one[0] if "/" in k}
    assert len(keys) >= 20 and {k for k in two[0] if "/" in k} == keys
    for key in keys:
        assert two[0][key] == pytest.approx(one[0][key], abs=1e-6), key  # the same weights: the same scores
        for a, b in zip(one[1:], two[1:]):  # weights equal to ~1e-5 after training
            assert b[key] == pytest.approx(a[key], abs=1e-3), (a["step"], key)
    assert [bool(r.get("new_best")) for r in one] == [bool(r.get("new_best")) for r in two]
    # the work was split: each of the 2 processes encoded about half of what the 1 process did
    total = _encoded(logs[1], 0)
    shares = [_encoded(logs[2], rank) for rank in (0, 1)]
    assert sum(shares) == total and all(abs(s - total / 2) <= 0.05 * total for s in shares), (total, shares)
    assert not os.path.exists(f"{logs[1]}.1")
