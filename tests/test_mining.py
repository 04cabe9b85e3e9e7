"""Hard-negative mining: the filters on a hand-made score matrix, the exclusions, sentence-transformers'
``mine_hard_negatives`` on the same model, and a mined CSV that trains."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest

from simcse.cli import main
from simcse.mining import MiningOptions, MiningStats, mine_hard_negatives, select_negatives
from tests.helpers.data import cfg_for, write_corpus

# one anchor, candidates 0..5 best first; candidate 1 is the anchor's positive (excluded); positive score 0.8
IDS = np.array([[0, 1, 2, 3, 4, 5]])
SCORES = np.array([[0.95, 0.9, 0.7, 0.5, 0.3, -0.1]])


def pick(positive: float = 0.8, **kw: float) -> list[int]:
    return [i for i, _ in select_negatives(IDS, SCORES, np.array([positive]), [{1}], MiningOptions(**kw))[0]]


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"num_negatives": 2, "range_max": 6}, [0, 2]),  # the positive (1) never
        ({"num_negatives": 2, "range_max": 6, "range_min": 1}, [2, 3]),  # skip the closest survivor
        ({"num_negatives": 3, "range_max": 3}, [0, 2, 3]),  # the window counts survivors, as in s-t
        ({"num_negatives": 2, "absolute_margin": 0.05}, [2, 3]),  # 0.95 + 0.05 > 0.8; 0.7 + 0.05 <= 0.8
        ({"num_negatives": 2, "absolute_margin": 0.15}, [3, 4]),  # 0.7 + 0.15 > 0.8
        ({"num_negatives": 2, "relative_margin": 0.1}, [2, 3]),  # threshold 0.8 - 0.08 = 0.72
        ({"num_negatives": 2, "relative_margin": 0.2}, [3, 4]),  # threshold 0.64
        ({"num_negatives": 2, "max_score": 0.6}, [3, 4]),
        ({"num_negatives": 3, "max_score": 0.6, "min_score": 0.4}, [3]),  # fewer than asked: what there is
        ({"num_negatives": 2, "max_score": 0.6, "range_min": 1, "range_max": 6}, [4, 5]),  # range_min after filters
    ],
)
def test_filters_on_a_hand_made_score_matrix(options, expected) -> None:
    assert pick(**options) == expected


def test_relative_margin_with_a_negative_positive_score() -> None:
    # threshold = -0.05 - |-0.05| * 1.0 = -0.1: only the candidate at -0.1 is kept
    assert pick(positive=-0.05, relative_margin=1.0, num_negatives=2) == [5]


def test_default_window_and_counts() -> None:
    assert MiningOptions(range_min=2, num_negatives=3).window == 5
    assert MiningOptions(range_min=2, num_negatives=3, relative_margin=0.05).window == 32
    stats = MiningStats()
    select_negatives(IDS, SCORES, np.array([0.8]), [{1}], MiningOptions(max_score=0.6, absolute_margin=0.05), stats)
    assert stats.dropped == {"absolute_margin": 1, "max_score": 1}  # 0.95 by the margin first, then 0.7
    with pytest.raises(ValueError, match="fewer than num_negatives"):
        MiningOptions(num_negatives=3, range_min=2, range_max=4)


class TableEncoder:
    """A stand-in encoder: each text's vector is looked up in a table (so the ranking is known exactly)."""

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = table

    def encode(self, sentences, batch_size=64, normalize=False, show_progress_bar=False):
        x = np.array([self.table[s] for s in sentences], dtype=np.float32)
        return x / np.linalg.norm(x, axis=1, keepdims=True) if normalize else x


def test_exclusions_positive_other_positives_and_copies_of_the_anchor() -> None:
    table = {
        "anchor": [1.0, 0.0, 0.0],
        "pos a": [0.9, 0.1, 0.0],
        "pos b": [0.8, 0.2, 0.0],  # the anchor's second positive: never its negative
        "near": [0.7, 0.3, 0.0],
        "far": [0.0, 0.0, 1.0],
        "other anchor": [0.8, 0.2, 0.0],  # the direction of "pos b", another pair's positive: a candidate
        "other pos": [0.1, 1.0, 0.0],
    }
    pairs = [("anchor", "pos a"), ("anchor", "pos b"), ("other anchor", "other pos")]
    corpus = ["anchor", "near", "far", "near", "pos a"]  # a copy of the anchor, a duplicate, the positive
    triplets, stats = mine_hard_negatives(TableEncoder(table), pairs, corpus, MiningOptions(num_negatives=1))
    assert triplets == [
        ("anchor", "pos a", "near"), ("anchor", "pos b", "near"), ("other anchor", "other pos", "pos b")
    ]  # fmt: skip
    assert stats.triplets == 3 and stats.pairs_without_negative == 0
    two, _ = mine_hard_negatives(TableEncoder(table), pairs[:1], corpus, MiningOptions(num_negatives=5, range_max=5))
    assert [n for _, _, n in two] == ["near", "far"]  # only two candidates are neither the anchor nor its positive


@pytest.mark.slow
def test_same_triplets_as_sentence_transformers(minilm_path, shared_data) -> None:
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives as st_mine

    from simcse import Encoder

    with open(os.path.join(shared_data, "nli", "nli_pairs.csv"), encoding="utf-8") as f:
        rows = list(csv.reader(f))[1:400:20]  # 20 pairs, distinct anchors
    pairs = [(a, p) for a, p in rows]
    assert len({a for a, _ in pairs}) == len(pairs)
    with open(os.path.join(shared_data, "corpus", "wiki_sentences.txt"), encoding="utf-8") as f:
        corpus = [next(f).strip() for _ in range(300)]
    settings = {"range_min": 1, "range_max": 12, "relative_margin": 0.05, "max_score": 0.9, "num_negatives": 2}
    ours, _ = mine_hard_negatives(Encoder.from_pretrained(str(minilm_path)), pairs, corpus, MiningOptions(**settings))
    dataset = Dataset.from_dict({"anchor": [a for a, _ in pairs], "positive": [p for _, p in pairs]})
    model = SentenceTransformer(str(minilm_path), device="cpu")
    theirs = st_mine(dataset, model, corpus=corpus, **settings, verbose=False, output_format="triplet")
    assert len(ours) > 10
    assert ours == list(zip(theirs["anchor"], theirs["positive"], theirs["negative"]))


def test_mine_command_writes_a_csv_that_trains(tiny_model_dir, tmp_path, shared_data) -> None:
    from simcse.train import train

    corpus = tmp_path / "corpus.txt"
    lines = write_corpus(corpus, n=64)
    pairs = tmp_path / "pairs.csv"
    with open(pairs, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sent0", "sent1"])
        w.writerows((lines[i], lines[i + 1] + ", indeed") for i in range(0, 32, 2))  # a comma: quoted in the CSV
    out = tmp_path / "mined.csv"
    args = ["mine", "--model", tiny_model_dir, "--pooler", "avg", "--pairs", str(pairs), "--corpus", str(corpus)]
    assert main([*args, "--output", str(out), "--num-negatives", "2", "--range-min", "1", "--no-progress"]) == 0
    with open(out, encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["sent0", "sent1", "hard_neg"] and len(rows) == 1 + 2 * 16
    for anchor, positive, negative in rows[1:]:
        assert negative not in (anchor, positive)
    cfg = cfg_for(tiny_model_dir, str(out), tmp_path, mode="triplets", max_steps=2, eval_steps=2, data_dir=shared_data)
    state = train(cfg)
    assert state["step"] == 2 and os.path.isdir(os.path.join(cfg.output_dir, "model"))


def test_mine_command_errors(tiny_model_dir, tmp_path, capsys) -> None:
    corpus, pairs = tmp_path / "corpus.txt", tmp_path / "pairs.csv"
    corpus.write_text("a man plays\nthe cat sits\n")
    pairs.write_text("anchor,positive\na dog,a puppy\n")
    base = ["mine", "--model", tiny_model_dir, "--corpus", str(corpus), "--output", str(tmp_path / "o.csv")]
    named = ["--pairs", str(pairs), "--columns", "anchor,positive"]
    cases = {
        "lacks column(s) sent0,sent1": ["--pairs", str(pairs)],
        "missing.csv: not found": ["--pairs", str(tmp_path / "missing.csv")],
        "fewer than num_negatives": [*named, "--range-max", "1", "--num-negatives", "2"],
        "no negative passed the filters": [*named, "--max-score", "-2"],
    }
    for message, extra in cases.items():
        assert main([*base, *extra]) == 1
        err = capsys.readouterr().err  # the last case loads the model first: its progress and log lines
        last = err.strip().splitlines()[-1]
        assert last.startswith("simcse mine: error: ") and message in last and "Traceback" not in err
    assert not (tmp_path / "o.csv").exists()
