"""``simcse eval --truncate-dim N`` scores the first N dimensions (issue 27), as ``encode`` and ``search`` do.

The reference is computed by hand here: the tiny model run through ``transformers`` directly, masked mean
pooling, the first N columns, then cosine / Spearman (scipy) / alignment and uniformity (Wang & Isola's
formulas in numpy) on the same pairs.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from scipy.stats import spearmanr

from simcse.cli import main

DIM = 8  # of the tiny model's 32
PAIRS = [
    ("a man is playing the guitar", "a man plays the guitar", 4.8),
    ("a woman eats bread", "a woman is eating food", 4.0),
    ("the dog runs in the park", "a dog is running", 3.6),
    ("a red car in the street", "an old blue car", 2.2),
    ("the child sits on a chair", "a cat sits on the table", 1.4),
    ("people walk in the city", "the government said today", 0.2),
    ("a boy rides a bike", "a girl rides a horse", 2.0),
    ("the old man plays piano", "an old man is playing the piano", 4.6),
]


@pytest.fixture(scope="module")
def custom_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sts") / "pairs.tsv"
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in PAIRS), encoding="utf-8")
    return str(path)


def by_hand(model_dir: str, sentences: list[str], dim: int | None) -> np.ndarray:
    """Mean of the last hidden states over real tokens, first ``dim`` columns, unit length (float64)."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    tokenizer, model = AutoTokenizer.from_pretrained(model_dir), AutoModel.from_pretrained(model_dir).eval()
    batch = tokenizer(sentences, padding=True, truncation=True, max_length=128, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state.double()  # (n, seq, 32)
    mask = batch["attention_mask"].unsqueeze(-1).double()  # (n, seq, 1)
    vectors = ((hidden * mask).sum(1) / mask.sum(1)).numpy()[:, :dim]  # (n, dim)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def stsb_dev(data_dir: str) -> tuple[list[str], list[str], np.ndarray]:
    with open(os.path.join(data_dir, "senteval", "STS", "STSBenchmark", "sts-dev.csv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f]
    return [r[5] for r in rows], [r[6] for r in rows], np.array([float(r[4]) for r in rows])


def test_eval_scores_the_truncated_vectors(tiny_model_dir, custom_file, small_dev_data, tmp_path, capsys) -> None:
    report = tmp_path / "r.json"
    common = ["--model", tiny_model_dir, "--pooler", "avg", "--tasks", custom_file, "--stsb-split", "dev",
              "--data-dir", small_dev_data]  # fmt: skip
    assert main(["eval", *common, "--truncate-dim", str(DIM), "--output", str(report), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"(pooler avg, first {DIM} of 32 dimensions)" in out
    saved = json.loads(report.read_text(encoding="utf-8"))
    assert saved["settings"]["truncate_dim"] == DIM
    [record] = saved["models"]

    a = by_hand(tiny_model_dir, [p[0] for p in PAIRS], DIM)
    b = by_hand(tiny_model_dir, [p[1] for p in PAIRS], DIM)
    expected = 100 * spearmanr([p[2] for p in PAIRS], (a * b).sum(1))[0]
    assert record["tasks"]["pairs"]["score"] == pytest.approx(expected, abs=1e-6)
    a, b = by_hand(tiny_model_dir, [p[0] for p in PAIRS], None), by_hand(tiny_model_dir, [p[1] for p in PAIRS], None)
    assert abs(100 * spearmanr([p[2] for p in PAIRS], (a * b).sum(1))[0] - expected) > 1  # all 32 rank otherwise

    s1, s2, gold = stsb_dev(small_dev_data)
    keep = gold > 4.0
    x = by_hand(tiny_model_dir, [s for s, k in zip(s1, keep) if k], DIM)
    y = by_hand(tiny_model_dir, [s for s, k in zip(s2, keep) if k], DIM)
    assert record["alignment"] == pytest.approx(np.mean(np.sum((x - y) ** 2, axis=1)), rel=1e-5)
    u = by_hand(tiny_model_dir, sorted(set(s1) | set(s2)), DIM)
    sq = np.sum((u[:, None] - u[None]) ** 2, axis=-1)[np.triu_indices(len(u), k=1)]  # each pair i < j once
    assert record["uniformity"] == pytest.approx(np.log(np.mean(np.exp(-2 * sq))), rel=1e-5)


@pytest.mark.parametrize("value", ["0", "33"])
def test_eval_refuses_a_truncate_dim_outside_the_vector(tiny_model_dir, custom_file, value, capsys) -> None:
    rc = main(["eval", "--model", tiny_model_dir, "--tasks", custom_file, "--no-align-uniform", "--truncate-dim",
               value, "--no-progress", "--device", "cpu"])  # fmt: skip
    err = capsys.readouterr().err.strip().splitlines()  # transformers' loading bar, then our one line
    expected = f"simcse eval: error: --truncate-dim must be in [1, 32] (the model's vector size), got {value}"
    assert rc == 1 and err[-1] == expected


@pytest.mark.slow  # mteb.evaluate, ~9 s here
def test_eval_mteb_scores_the_truncated_vectors(tiny_model_dir, small_dev_data, tmp_path, capsys) -> None:
    import mteb  # noqa: F401 (the mteb extra is part of dev: a broken install fails, never skips)
    report = tmp_path / "mteb.json"
    rc = main(["eval", "--model", tiny_model_dir, "--pooler", "avg", "--mteb", "STSBenchmark", "--mteb-local",
               "--stsb-split", "dev", "--data-dir", small_dev_data, "--truncate-dim", str(DIM), "--output",
               str(report), "--no-progress", "--device", "cpu"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    saved = json.loads(report.read_text(encoding="utf-8"))
    s1, s2, gold = stsb_dev(small_dev_data)
    a, b = by_hand(tiny_model_dir, s1, DIM), by_hand(tiny_model_dir, s2, DIM)
    assert saved["truncate_dim"] == DIM
    assert saved["models"][0]["scores"]["STSBenchmark"] == pytest.approx(100 * spearmanr(gold, (a * b).sum(1))[0],
                                                                         abs=1e-6)  # fmt: skip
