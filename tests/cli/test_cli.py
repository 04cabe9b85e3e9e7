"""The ``simcse`` command end to end on a tiny model: train (+ --test-tasks, --seeds), eval, encode, search.

Each command runs as a user runs it (a subprocess); one bad input per command must give one line on
stderr, ``simcse <command>: error: ...``, a non-zero exit and no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from simcse.cli import main
from tests.helpers.cli import simcse
from tests.helpers.data import write_corpus, write_triplets
from tests.helpers.paths import REPO

CUSTOM_STS = "a man plays a guitar\ta man plays\t4.5\nthe cat sits\ta dog runs\t0.5\nthe boy eats\tthe girl\t2.5\n"
SENTENCES = ["a man is playing the guitar", "a woman eats bread", "the dog runs in the park", "an old red car"]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("cli_files")
    paths = {name: str(root / name) for name in ("sentences.txt", "sts.tsv", "corpus.txt", "empty_line.txt")}
    with open(paths["sentences.txt"], "w", encoding="utf-8") as f:
        f.write("\n".join(SENTENCES) + "\n")
    with open(paths["sts.tsv"], "w", encoding="utf-8") as f:
        f.write(CUSTOM_STS)
    with open(paths["empty_line.txt"], "w", encoding="utf-8") as f:
        f.write("a man plays\n\nthe cat sits\n")
    write_corpus(paths["corpus.txt"], n=48)
    return paths


def train_args(model: str, corpus: str, data_dir: str, out: str) -> list[str]:
    return [
        "train", "--model_name_or_path", model, "--train_file", corpus, "--data_dir", data_dir, "--output_dir", out,
        "--batch_size", "8", "--max_seq_len", "16", "--max_steps", "4", "--eval_steps", "2", "--learning_rate", "1e-3",
        "--eval_batch_size", "64",
    ]  # fmt: skip


@pytest.mark.slow
def test_train_with_test_tasks(tiny_model_dir, small_dev_data, files, tmp_path) -> None:
    out = str(tmp_path / "run")
    proc = simcse(
        *train_args(tiny_model_dir, files["corpus.txt"], small_dev_data, out), "--test-tasks", files["sts.tsv"]
    )
    assert proc.returncode == 0, proc.stderr
    for line in ("model:  ", "card:   ", "curves: ", "STS test (", "sts |", "Avg."):
        assert line in proc.stdout, line
    for path in ("model/README.md", "model/training_curves.png", "training_curves.png", "sts_test.json"):
        assert os.path.isfile(os.path.join(out, path)), path
    with open(os.path.join(out, "sts_test.json"), encoding="utf-8") as f:
        result = json.load(f)
    assert result["tasks"]["sts"]["n_pairs"] == 3
    with open(os.path.join(out, "model", "README.md"), encoding="utf-8") as f:
        assert "| sts | Avg. |" in f.read()  # the test table is in the card


def test_train_seeds_writes_mean_and_std(tiny_model_dir, small_dev_data, files, tmp_path, capsys) -> None:
    out = str(tmp_path / "seeds")
    args = train_args(tiny_model_dir, files["corpus.txt"], small_dev_data, out)
    rc = main([*args, "--max_steps", "2", "--seeds", "1", "2", "--test-tasks", files["sts.tsv"]])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    with open(os.path.join(out, "seeds.json"), encoding="utf-8") as f:
        summary = json.load(f)
    assert summary["seeds"] == [1, 2] and set(summary["mean"]) == {"sts", "avg"}
    # a tiny random model on 3 pairs may score NaN (all cosines equal): check the bookkeeping, not the values
    assert len(summary["scores"]["sts"]) == 2
    assert summary["mean"]["avg"] == pytest.approx(np.mean(summary["scores"]["avg"]), nan_ok=True)
    with open(os.path.join(out, "seeds.md"), encoding="utf-8") as f:
        table = f.read()
    assert table.startswith("| seed | sts | Avg. |") and "mean ± std (2)" in table and "mean ± std" in captured.out
    for seed in (1, 2):
        run = os.path.join(out, f"seed-{seed}")
        assert os.path.isfile(os.path.join(run, "model", "README.md"))
        with open(os.path.join(run, "config.yaml"), encoding="utf-8") as f:
            assert f"seed: {seed}" in f.read()


@pytest.mark.slow  # subprocesses
@pytest.mark.parametrize("script", ["run_unsup_example.sh", "run_sup_example.sh"])
def test_gpu_example_scripts_run_their_recipe(script, tiny_model_dir, shared_data, files, tmp_path) -> None:
    """The GPU example scripts launch the paper recipe through ``accelerate launch``; here on the tiny model."""
    out = str(tmp_path / "run")
    train_file = files["corpus.txt"]
    if script == "run_sup_example.sh":
        train_file = str(tmp_path / "triplets.csv")
        write_triplets(train_file)
    env = {
        **os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "SIMCSE_DATA_DIR": shared_data,
        "NUM_GPUS": "1", "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}{os.environ.get('PATH', '')}",
    }  # fmt: skip
    overrides = [
        "--model_name_or_path", tiny_model_dir, "--train_file", train_file, "--output_dir", out, "--batch_size", "8",
        "--max_steps", "2", "--eval_steps", "2", "--eval_batch_size", "256",
    ]  # fmt: skip
    proc = subprocess.run(
        ["bash", os.path.join(REPO, "scripts", "demos", script), *overrides], capture_output=True, text=True, cwd=REPO,
        env=env, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(os.path.join(out, "config.yaml"), encoding="utf-8") as f:
        config = f.read()
    recipe = "mode: unsup" if script == "run_unsup_example.sh" else "mode: triplets"
    assert recipe in config and "temperature: 0.05" in config and "max_steps: 2" in config
    with open(os.path.join(out, "sts_test.json"), encoding="utf-8") as f:
        scored = set(json.load(f)["tasks"])
    assert {"STS12", "STSBenchmark", "SICKRelatedness"} <= scored  # --test-tasks: the whole suite


@pytest.mark.slow
def test_eval(tiny_model_dir, files) -> None:
    proc = simcse("eval", "--model", tiny_model_dir, "--tasks", files["sts.tsv"], "--no-align-uniform", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "sts |" in proc.stdout and "Avg." in proc.stdout


@pytest.mark.slow  # subprocesses
def test_encode_file_to_npy_and_stdin_to_jsonl(tiny_model_dir, tiny_encoder, files, tmp_path) -> None:
    out = tmp_path / "vectors" / "v.npy"
    model = ["--model", tiny_model_dir, "--pooler", "avg"]
    proc = simcse("encode", *model, "--batch-size", "3", files["sentences.txt"], "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    emb = np.load(out)
    assert emb.dtype == np.float32 and emb.shape == (len(SENTENCES), tiny_encoder.dim)
    np.testing.assert_allclose(emb, tiny_encoder.encode(SENTENCES), rtol=1e-4, atol=1e-5)

    proc = simcse("encode", *model, "--normalize", stdin="\n".join(SENTENCES[:2]))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == SENTENCES[:2]
    vectors = np.array([r["embedding"] for r in rows])
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow  # subprocesses
def test_search_text_jsonl_and_stored_embeddings(tiny_model_dir, tiny_encoder, files, tmp_path) -> None:
    model = ["--model", tiny_model_dir, "--pooler", "avg"]
    proc = simcse("search", *model, "--corpus", files["sentences.txt"], "--top-k", "2", "--format", "jsonl",
                  SENTENCES[2], "a woman eats")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    results = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [r["query"] for r in results] == [SENTENCES[2], "a woman eats"]
    top = results[0]["hits"][0]
    assert (top["rank"], top["line"], top["text"]) == (1, 3, SENTENCES[2])  # a sentence finds itself
    assert top["score"] == pytest.approx(1.0, abs=1e-4) and len(results[0]["hits"]) == 2

    stored = tmp_path / "corpus.npy"
    np.save(stored, tiny_encoder.encode(SENTENCES))
    proc = simcse("search", *model, "--corpus", files["sentences.txt"], "--corpus-embeddings", str(stored),
                  "-k", "1", stdin=SENTENCES[0] + "\n")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[:2] == [f"query: {SENTENCES[0]}", f"   1. 1.0000  [line 1] {SENTENCES[0]}"]


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("train", ["--max_steps", "many"], "command line: max_steps='many': "),
        ("eval", ["--tasks", "MISSING.tsv"], "missing.tsv: STS file not found"),
        ("encode", ["EMPTY_LINE"], "empty_line.txt:2: empty line"),
        ("search", ["--corpus", "MISSING.txt", "a query"], "missing.txt: not found"),
    ],
)
@pytest.mark.slow
def test_bad_input_is_one_line_on_stderr(command, args, message, tiny_model_dir, files, tmp_path) -> None:
    args = [
        a.replace("EMPTY_LINE", files["empty_line.txt"]).replace("MISSING", str(tmp_path / "missing")) for a in args
    ]
    model = (
        ["--config", "training/configs/demo_unsup_minilm.yaml"] if command == "train" else ["--model", tiny_model_dir]
    )
    proc = simcse(command, *model, *args)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode != 0
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"simcse {command}: error: ") and message in lines[0].replace(str(tmp_path) + "/", "")
