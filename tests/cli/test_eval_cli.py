"""``simcse eval`` and ``eval/evaluate.py``: end to end on the tiny model, JSON report, plot, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from simcse.cli import main
from tests.helpers.models import build_tiny_bert_dir
from tests.helpers.paths import REPO

CUSTOM = "a man plays a guitar\ta man plays\t4.5\nthe cat sits\ta dog runs\t0.5\nthe boy eats\tthe girl\t2.5\n"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}  # the test looks for the default bar
    env.update(HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    return subprocess.run(args, capture_output=True, text=True, cwd=REPO, env=env, timeout=300, check=False)


@pytest.fixture(scope="module")
def custom_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("sts") / "custom.tsv"
    path.write_text(CUSTOM, encoding="utf-8")
    return str(path)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


@pytest.mark.slow  # subprocesses
# ------------------------------------------------------------------ end to end (subprocess)
def test_simcse_eval_end_to_end(tiny_model_dir: str, custom_file: str, shared_data: str, tmp_path) -> None:
    out = tmp_path / "results" / "r.json"
    proc = _run(
        sys.executable, "-m", "simcse.cli", "eval", "--model", tiny_model_dir, "--tasks", custom_file, "STSBenchmark",
        "--data-dir", shared_data, "--output", str(out), "--device", "cpu", "--batch-size", "32",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "STS-B | custom |" in proc.stdout and "alignment" in proc.stdout
    assert "encode" in proc.stderr  # the progress bar is on by default
    report = json.loads(out.read_text(encoding="utf-8"))
    assert report["format_version"] == 1
    assert report["settings"]["tasks"] == [custom_file, "STSBenchmark"]
    assert report["settings"]["batch_size"] == 32 and report["settings"]["stsb_split"] == "test"
    [record] = report["models"]
    assert record["model"] == tiny_model_dir and record["pooler"] == "cls" and record["head"] is True
    assert record["tasks"]["custom"]["n_pairs"] == 3 and record["tasks"]["STSBenchmark"]["n_pairs"] == 1379
    assert set(record["tasks"]["STSBenchmark"]["spearman"]) == {"test"}
    for key in ("avg", "alignment", "uniformity", "n_sentences", "seconds"):
        assert isinstance(record[key], (int, float)), key
    assert [p for p in os.listdir(out.parent) if p != "r.json"] == []  # written atomically, no leftovers


@pytest.mark.slow
def test_evaluate_script_reports_a_missing_file_in_one_line(tiny_model_dir: str, tmp_path) -> None:
    missing = str(tmp_path / "nope.tsv")
    proc = _run(sys.executable, "eval/evaluate.py", "--model", tiny_model_dir, "--tasks", missing)
    assert proc.returncode != 0
    assert _error_lines(proc.stderr) == [f"eval/evaluate.py: error: {missing}: STS file not found"]
    assert proc.stdout == ""


# ------------------------------------------------------------------ in process
def test_two_models_json_and_plot(tiny_model_dir: str, custom_file: str, shared_data: str, tmp_path, capsys) -> None:
    from matplotlib.image import imread

    other = build_tiny_bert_dir(str(tmp_path / "other"), seed=1)
    out, png = tmp_path / "r.json", tmp_path / "au.png"
    rc = main(
        ["eval", "--model", tiny_model_dir, other, "--pooler", "avg", "--tasks", custom_file, "--stsb-split", "dev",
         "--data-dir", shared_data, "--output", str(out), "--plot", str(png), "--no-progress", "--device", "cpu"]
    )  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert captured.out.count("Avg.") == 2
    records = json.loads(out.read_text(encoding="utf-8"))["models"]
    assert [r["model"] for r in records] == [tiny_model_dir, other]
    assert all(r["pooler"] == "avg" and r["align_uniform_split"] == "dev" for r in records)
    assert list(records[0]["tasks"]) == ["custom"]  # STS-B is read for alignment/uniformity only
    image = imread(str(png))
    assert image.shape[0] > 400 and image.shape[1] > 600


def test_no_align_uniform_needs_no_data_dir(tiny_model_dir: str, custom_file: str, tmp_path, capsys) -> None:
    out = tmp_path / "r.json"
    rc = main(["eval", "--model", tiny_model_dir, "--tasks", custom_file, "--data-dir", str(tmp_path / "none"),
               "--no-align-uniform", "--output", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    record = json.loads(out.read_text(encoding="utf-8"))["models"][0]
    assert "alignment" not in record and record["tasks"]["custom"]["n_pairs"] == 3


def test_sick_dev_mode_is_passed_through(tiny_model_dir: str, shared_data: str, tmp_path, capsys) -> None:
    out = tmp_path / "r.json"
    rc = main(["eval", "--model", tiny_model_dir, "--tasks", "SICKRelatedness", "--sick-mode", "dev",
               "--data-dir", shared_data, "--no-align-uniform", "--output", str(out), "--no-progress"])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    record = json.loads(out.read_text(encoding="utf-8"))["models"][0]
    assert record["tasks"]["SICKRelatedness"]["n_pairs"] == 500 and "SICK-R" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("a\tb\t1\na\tb\n", ":2: expected 3 tab-separated columns, found 2"),
        ("a\tb\tone\n", ":1: score 'one' is not a number"),
        ("a\tb\t9\n", ":1: score 9.0 is outside [0.0, 5.0]"),
        (b"a\tb\t1\n\xff\tb\t1\n", ":2: invalid UTF-8 (invalid start byte)"),
    ],
)
def test_bad_sts_file_is_one_line_error(tiny_model_dir: str, tmp_path, capsys, content, expected: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    assert main(["eval", "--model", tiny_model_dir, "--tasks", str(path), "--no-align-uniform"]) == 1
    assert _error_lines(capsys.readouterr().err) == [f"simcse eval: error: {path}{expected}"]


def test_missing_data_dir_is_one_line_error(tiny_model_dir: str, tmp_path, capsys) -> None:
    assert main(["eval", "--model", tiny_model_dir, "--tasks", "STS12", "--data-dir", str(tmp_path / "x")]) == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith("simcse eval: error: no STS data under") and "scripts/download_data.sh" in line


def test_alignment_without_stsb_data_suggests_the_flag(tiny_model_dir: str, custom_file: str, tmp_path, capsys) -> None:
    assert main(["eval", "--model", tiny_model_dir, "--tasks", custom_file, "--data-dir", str(tmp_path)]) == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert "--no-align-uniform" in line


@pytest.mark.parametrize("kind", ["not_a_model", "missing"])
def test_bad_model_path_is_one_line_error(custom_file: str, tmp_path, capsys, kind: str) -> None:
    model = tmp_path / kind
    if kind == "not_a_model":
        model.mkdir()
        (model / "readme.txt").write_text("hi", encoding="utf-8")
    assert main(["eval", "--model", str(model), "--tasks", custom_file, "--no-align-uniform", "--no-progress"]) == 1
    [line] = _error_lines(capsys.readouterr().err)
    assert line.startswith(f"simcse eval: error: cannot load model {str(model)!r}")
    if kind == "not_a_model":
        assert "not a model folder" in line
    else:
        assert "no such local folder" in line


def test_usage_errors(tiny_model_dir: str, capsys) -> None:
    with pytest.raises(SystemExit) as err:
        main(["eval", "--tasks", "STS12"])  # --model is required
    assert err.value.code == 2 and "--model" in capsys.readouterr().err
    assert main(["eval", "--model", tiny_model_dir, "--plot", "x.png", "--no-align-uniform"]) == 1
    assert "--plot needs alignment" in capsys.readouterr().err
    assert main(["eval", "--model", tiny_model_dir, "--batch-size", "0"]) == 1
    assert "--batch-size must be >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        main(["--version"])
    assert err.value.code == 0 and capsys.readouterr().out.startswith("simcse ")


# ------------------------------------------------------------------ retrieval, pair classification, specs
@pytest.fixture(scope="module")
def beir_folder(tmp_path_factory: pytest.TempPathFactory) -> str:
    from simcse.evaluation.retrieval_data import RetrievalData, write_beir

    corpus = {"d1": "a man plays the guitar", "d2": "the cat sits", "d3": "a dog runs in the park"}
    data = RetrievalData({"q1": "a man plays", "q2": "a dog runs"}, corpus, {})
    return write_beir(tmp_path_factory.mktemp("beir") / "mini", data, {"dev": {"q1": {"d1": 1}, "q2": {"d3": 1}}})


def test_retrieval_and_pair_classification_run_alone(tiny_model_dir: str, beir_folder: str, tmp_path, capsys) -> None:
    pairs = tmp_path / "dup.csv"
    pairs.write_text("sentence1,sentence2,label\na man plays,a man plays music,1\nthe cat,a dog,0\n", encoding="utf-8")
    spec = tmp_path / "evals.yaml"
    spec.write_text(f"- {{type: retrieval, name: mine, path: {beir_folder}, split: dev, cutoffs: {{ndcg: [1, 2]}}}}\n")
    out = tmp_path / "r.json"
    rc = main(["eval", "--model", tiny_model_dir, "--retrieval", beir_folder, "--retrieval-split", "dev",
               "--pair-classification", str(pairs), "--evaluators", str(spec), "--output", str(out),
               "--no-progress"])  # fmt: skip
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert "STS-B" not in captured.out  # no STS table unless --tasks names tasks
    assert [line.split(":")[0] for line in captured.out.splitlines()[1:4]] == ["mini", "dup", "mine"]
    report = json.loads(out.read_text(encoding="utf-8"))
    [record] = report["models"]
    assert "tasks" not in record and report["settings"]["tasks"] == []
    assert set(record["evaluators"]) >= {"mini/ndcg@10", "mini/recall@100", "dup/cosine_ap", "mine/ndcg@2"}
    assert [s["name"] for s in report["settings"]["evaluators"]] == ["mini", "dup", "mine"]


def test_bad_retrieval_data_is_one_line_before_any_model(beir_folder: str, tmp_path, capsys) -> None:
    import shutil

    folder = shutil.copytree(beir_folder, tmp_path / "bad")
    (folder / "qrels" / "dev.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td7\t1\n", encoding="utf-8")
    assert (
        main(["eval", "--model", str(tmp_path / "no-model"), "--retrieval", str(folder), "--retrieval-split", "dev"])
        == 1
    )
    expected = f"simcse eval: error: {folder}/qrels/dev.tsv:2: document id 'd7' is not in corpus.jsonl"
    assert _error_lines(capsys.readouterr().err) == [expected]  # the data fails first: no model was loaded
    assert main(["eval", "--model", "x", "--retrieval", beir_folder, "--plot", "p.png"]) == 1
    assert "--plot draws the STS table" in capsys.readouterr().err
