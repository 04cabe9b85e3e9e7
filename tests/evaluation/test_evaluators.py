"""Pair classification against sentence-transformers' BinaryClassificationEvaluator; STS on the user's pairs
(every format reads the same pairs) and on STS-B dev against the training's DevEvaluator; specs and their errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from simcse.evaluation.evaluators import build_evaluator, build_evaluators, load_specs, run_evaluators
from simcse.evaluation.pair_classification import PairClassificationEvaluator, classification_metrics
from simcse.evaluation.tables import EvalDataError

PAIRS = [
    ("a man plays a guitar", "a man is playing music", 1), ("the cat sits on the mat", "a dog runs in the park", 0),
    ("the boy eats bread", "the boy is eating food", 1), ("a red car", "a blue house", 0),
    ("a woman walks the dog", "a woman is walking a dog", 1), ("children play ball", "the government said today", 0),
    ("a man plays a guitar", "a man is playing the piano", 0), ("the police stand", "police on the street", 1),
    ("an old man sits", "a young girl runs", 0), ("people ride bikes in the city", "people are riding bikes", 1),
]  # fmt: skip


@pytest.fixture(scope="module")
def st_model(spread_model_dir: str):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(spread_model_dir, device="cpu")


def _write(path, rows: list[dict], fmt: str) -> str:
    if fmt == "csv":
        import csv

        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), str(path))
    return str(path)


# ------------------------------------------------------------------ pair classification
@pytest.mark.slow  # imports sentence-transformers and scikit-learn (seconds)
def test_best_threshold_metrics_equal_sentence_transformers_on_ties() -> None:
    from sentence_transformers.sentence_transformer.evaluation import BinaryClassificationEvaluator as BCE
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(0)
    for trial in range(20):
        scores = rng.integers(0, 12, size=60).astype(np.float64) / 11 if trial % 2 else rng.random(60)  # ties
        labels = (rng.random(60) < 0.3 + 0.02 * trial).astype(np.int64)
        ours = classification_metrics(scores, labels)
        acc, acc_t = BCE.find_best_acc_and_threshold(scores, labels, True)
        f1, precision, recall, f1_t = BCE.find_best_f1_and_threshold(scores, labels, True)
        ap = average_precision_score(labels, scores)
        expected = {"accuracy": acc, "accuracy_threshold": acc_t, "f1": f1, "f1_threshold": f1_t,
                    "precision": precision, "recall": recall, "ap": ap}  # fmt: skip
        for key, value in expected.items():
            assert ours[key] == pytest.approx(value, abs=1e-12), (trial, key)


@pytest.mark.slow  # a real sentence-transformers run
def test_pair_classification_equals_binary_classification_evaluator(st_model, tmp_path) -> None:
    from sentence_transformers.sentence_transformer.evaluation import BinaryClassificationEvaluator

    rows = [{"sentence1": a, "sentence2": b, "label": y} for a, b, y in PAIRS]
    path = _write(tmp_path / "pairs.csv", rows, "csv")
    ours = build_evaluator({"type": "pair_classification", "name": "p", "path": path, "similarity": ["cosine", "dot"]})
    got = ours(st_model, batch_size=4)
    assert sorted(got) == sorted(ours.metric_names())
    theirs = BinaryClassificationEvaluator(
        [a for a, _, _ in PAIRS], [b for _, b, _ in PAIRS], [y for _, _, y in PAIRS], name="st",
        similarity_fn_names=["cosine", "dot"], write_csv=False,
    )(st_model)  # fmt: skip
    for sim in ("cosine", "dot"):
        for metric in ("accuracy", "f1", "precision", "recall", "ap"):
            assert got[f"p/{sim}_{metric}"] == pytest.approx(theirs[f"st_{sim}_{metric}"], abs=1e-6), (sim, metric)
        for metric in ("accuracy_threshold", "f1_threshold"):  # theirs in float32
            assert got[f"p/{sim}_{metric}"] == pytest.approx(theirs[f"st_{sim}_{metric}"], abs=1e-5), (sim, metric)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("sentence1,sentence2,label\na,b,1\nc,d,2\n", "pairs.csv:3: label '2' is not 0 or 1"),
        ("sentence1,sentence2,label\na,b,yes\n", "pairs.csv:2: label 'yes' is not 0 or 1"),
        ("sentence1,sentence2,label\na,,1\n", "pairs.csv:2: sentence2 is empty"),
        ("sentence1,sentence2,label\na,b,1\nc,d,1\n", "pairs.csv: every label is 1; pairs of both labels are needed"),
        ("text1,text2,label\na,b,1\n", "pairs.csv:1: no column 'sentence1', 'sentence2' (found 'text1', 'text2',"),
        ("sentence1,sentence2,label\na,b,1,extra\n", "pairs.csv:2: expected 3 fields, found 4"),
        ("", "pairs.csv: empty (expected a header row naming sentence1, sentence2, label)"),
    ],
)  # fmt: skip
def test_bad_pairs_are_one_line_naming_file_and_line(tmp_path, content: str, expected: str) -> None:
    path = tmp_path / "pairs.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(EvalDataError) as err:
        build_evaluator({"type": "pair_classification", "path": str(path)})
    assert str(err.value).startswith(f"{tmp_path}/{expected}") and "\n" not in str(err.value)


def test_labels_read_from_every_format_and_mapped_columns(tiny_encoder, tmp_path) -> None:
    rows = [{"q1": a, "q2": b, "dup": y} for a, b, y in PAIRS]
    results = []
    for fmt, convert in (("csv", str), ("jsonl", bool), ("parquet", float)):
        path = _write(tmp_path / f"p.{fmt}", [{**r, "dup": convert(r["dup"])} for r in rows], fmt)
        spec = {
            "type": "pair_classification",
            "path": path,
            "columns": {"sentence1": "q1", "sentence2": "q2", "label": "dup"},
        }
        evaluator = build_evaluator(spec)
        assert evaluator.pairs.labels.tolist() == [y for _, _, y in PAIRS]
        results.append(evaluator(tiny_encoder, batch_size=4))
    assert results[0] == results[1] == results[2]


# ------------------------------------------------------------------ STS
@pytest.mark.slow  # STS-B and SICK-R dev, encoded twice
def test_stsb_dev_evaluator_equals_the_training_dev_evaluator(spread_model_dir: str, small_dev_data: str) -> None:
    from simcse import Encoder
    from simcse.evaluation.dev import DevEvaluator

    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    specs = [
        {"type": "sts", "task": "STSBenchmark", "split": "dev"},
        {"type": "sts", "task": "SICKRelatedness", "split": "dev"},
    ]
    evaluators = build_evaluators(specs, small_dev_data)
    ours = run_evaluators(evaluators, encoder, 16)
    assert sorted(ours) == sorted(n for e in evaluators for n in e.metric_names())
    reference = DevEvaluator(small_dev_data, 16)(encoder, use_head=True)
    assert ours["stsb_dev/spearman"] == pytest.approx(reference["stsb_dev"], abs=1e-6)
    assert ours["sickr_dev/spearman"] == pytest.approx(reference["sickr_dev"], abs=1e-6)
    assert ours["stsb_dev/alignment"] == pytest.approx(reference["alignment"], abs=1e-6)  # pairs above 4
    assert ours["stsb_dev/uniformity"] == pytest.approx(reference["uniformity"], abs=1e-6)


def test_custom_sts_pairs_score_the_same_in_every_format(spread_model_dir: str, tmp_path) -> None:
    from scipy.stats import spearmanr

    from simcse import Encoder

    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    scores = [4.5, 0.5, 3.0, 0.0, 5.0, 0.2, 2.0, 4.0, 1.0, 3.5]
    rows = [{"sentence1": a, "sentence2": b, "score": s} for (a, b, _), s in zip(PAIRS, scores)]
    legacy = tmp_path / "mine.tsv"
    legacy.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in (r.values() for r in rows)), encoding="utf-8")
    paths = [str(legacy)] + [_write(tmp_path / f"mine.{fmt}", rows, fmt) for fmt in ("csv", "jsonl", "parquet")]
    results = [build_evaluator({"type": "sts", "path": p})(encoder) for p in paths]
    vectors = encoder.encode([t for r in rows for t in (r["sentence1"], r["sentence2"])], normalize=True)
    cosine = (vectors[0::2] * vectors[1::2]).sum(axis=1)
    expected = 100 * spearmanr(scores, cosine)[0]  # the reference: scipy on the cosines, by hand
    for result in results:
        assert result["sts/spearman"] == pytest.approx(expected, abs=1e-6)
        assert result["sts/alignment"] == pytest.approx(results[0]["sts/alignment"], abs=1e-9)
    positive = np.array(scores) > 4.0  # the top fifth of 0-5: 4.5 and 5.0
    aligned = ((vectors[0::2][positive] - vectors[1::2][positive]) ** 2).sum(axis=1).mean()
    assert results[0]["sts/alignment"] == pytest.approx(aligned, rel=1e-5)


def test_simcse_eval_tasks_reads_the_new_formats(tiny_model_dir: str, tmp_path, capsys) -> None:
    from simcse.cli import main

    rows = [{"sentence1": a, "sentence2": b, "score": float(y)} for a, b, y in PAIRS]
    path = _write(tmp_path / "mine.jsonl", rows, "jsonl")
    out = tmp_path / "r.json"
    assert main(["eval", "--model", tiny_model_dir, "--tasks", path, "--no-align-uniform", "--no-progress",
                 "--output", str(out)]) == 0  # fmt: skip
    assert json.loads(out.read_text())["models"][0]["tasks"]["mine"]["n_pairs"] == len(PAIRS)
    assert "mine" in capsys.readouterr().out


# ------------------------------------------------------------------ specs
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"type": "ranking", "path": "x"}, "evaluator type 'ranking': choose one of sts, retrieval, pair_"),
        ({"type": "retrieval", "path": "x", "top_k": 5}, "retrieval evaluator: unknown key(s) top_k; known: name,"),
        ({"type": "retrieval"}, "retrieval evaluator: give the data as path (a file or folder) or dataset"),
        ({"type": "sts", "name": "a/b", "path": "x.csv"}, "name must be non-empty text without '/'"),
        ({"type": "sts", "task": "STS99"}, "unknown STS task 'STS99'"),
        ({"type": "sts", "task": "STS12", "split": "dev"}, "STS12 has only a test split"),
        ({"type": "retrieval", "path": "x.txt"}, "x.txt: unknown file type"),
        ({"type": "pair_classification", "path": "none.csv"}, "none.csv: not found"),
    ],
)  # fmt: skip
def test_bad_specs_are_refused_in_one_line(spec: dict, expected: str, shared_data: str) -> None:
    with pytest.raises(ValueError) as err:
        build_evaluator(spec, shared_data)
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_specs_from_yaml_and_distinct_names(tmp_path, shared_data: str) -> None:
    pairs = tmp_path / "p.csv"
    pairs.write_text("sentence1,sentence2,label\na,b,1\nc,d,0\n", encoding="utf-8")
    spec_file = tmp_path / "evals.yaml"
    spec_file.write_text(f"evaluators:\n  - {{type: pair_classification, path: {pairs}}}\n"
                         f"  - {{type: pair_classification, path: {pairs}}}\n")  # fmt: skip
    specs = load_specs(spec_file)
    assert specs[0] == {"type": "pair_classification", "path": str(pairs)}
    with pytest.raises(ValueError, match="several evaluators are named pair_classification"):
        build_evaluators(specs)
    (tmp_path / "bad.yaml").write_text("- [unclosed\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        load_specs(tmp_path / "bad.yaml")
    assert [e.name for e in build_evaluators([{**specs[0], "name": "a"}, {**specs[1], "name": "b"}])] == ["a", "b"]


def test_every_evaluator_reports_what_metric_names_promise(tiny_encoder, tmp_path) -> None:
    pairs = tmp_path / "p.csv"
    pairs.write_text("sentence1,sentence2,label\na cat,a dog,1\nthe man,the woman,0\n", encoding="utf-8")
    qa = tmp_path / "qa.jsonl"
    qa.write_text('{"query": "a cat", "positive": "the cat sits", "negative": ["a dog runs"]}\n')
    labelled = build_evaluator({"type": "pair_classification", "path": str(pairs)}).pairs
    retrieval = {"type": "retrieval", "path": str(qa), "cutoffs": {"ndcg": [1], "precision": [2]}}
    evaluators = [PairClassificationEvaluator(labelled, similarity=["dot"]), build_evaluator(retrieval)]
    for evaluator in evaluators:
        assert sorted(evaluator(tiny_encoder, 8)) == sorted(evaluator.metric_names())


def test_bytes_that_are_not_utf8_and_records_over_lines_are_named_by_line(tmp_path) -> None:
    path = tmp_path / "p.csv"
    path.write_bytes(b'sentence1,sentence2,label\n"a\nb",c,1\nx,\xff,0\n')
    with pytest.raises(EvalDataError, match=r"p.csv:4: invalid UTF-8 \(invalid start byte\)$"):
        build_evaluator({"type": "pair_classification", "path": str(path)})
    path.write_bytes(b'sentence1,sentence2,label\n"a\nb",c,1\nx,y\n')
    with pytest.raises(EvalDataError, match=r"p.csv:4: expected 3 fields, found 2$"):  # the record after the 2-line one
        build_evaluator({"type": "pair_classification", "path": str(path)})
