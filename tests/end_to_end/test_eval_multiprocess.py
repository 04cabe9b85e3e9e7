"""``simcse eval`` on 2 processes (``torchrun``) gives the scores of 1 process; a failure on one ends both.

Each process encodes half of the texts (STS sentences, pair sentences, queries, the corpus) and the vectors
or top-k lists are gathered. The model's vectors are spread out (``spread_model_dir``), so float noise
from other batch compositions cannot reorder a ranking, and every score must agree to 1e-6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO
from tests.helpers.retrieval import write_small_sets

FAULTY = os.path.join(REPO, "tests", "helpers", "eval_entry.py")

pytestmark = pytest.mark.slow


def run(n_proc: int, args: list[str], entry: list[str] | None = None, timeout: int = 300, **extra: str):
    entry = entry or ["-m", "simcse.cli"]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n_proc)]
    command = [*(launcher if n_proc > 1 else [sys.executable]), *entry, "eval", *args]
    env = {**os.environ, "PYTHONPATH": REPO, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", **extra}  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory, small_dev_data: str) -> dict[str, str]:
    """A BEIR folder (STS-B dev sentence pairs as queries and passages), labelled pairs and custom STS pairs."""
    from simcse.evaluation.tasks import load_task

    root = tmp_path_factory.mktemp("mp_eval")
    pairs = load_task("STSBenchmark", small_dev_data, stsb_split="dev").subsets[0]
    s1, s2, scores = pairs.sentences1, pairs.sentences2, pairs.scores
    (root / "mine.tsv").write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in zip(s1[50:], s2[50:], scores[50:])))
    return {**write_small_sets(root, small_dev_data), "sts": str(root / "mine.tsv"), "data_dir": small_dev_data,
            "root": str(root)}  # fmt: skip


def _args(model: str, inputs: dict[str, str], output: str) -> list[str]:
    return ["--model", model, "--pooler", "avg", "--tasks", inputs["sts"], "STSBenchmark", "--stsb-split", "dev",
            "--data-dir", inputs["data_dir"], "--retrieval", inputs["beir"], "--retrieval-split", "dev",
            "--pair-classification", inputs["pairs"], "--batch-size", "8", "--device", "cpu", "--output", output,
            "--no-progress"]  # fmt: skip


def _numbers(record: dict, prefix: str = "") -> dict[str, float]:
    out = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_numbers(value, f"{prefix}{key}/"))
        elif isinstance(value, float) and key != "seconds":
            out[prefix + key] = value
    return out


def test_two_processes_score_like_one(spread_model_dir: str, inputs: dict[str, str]) -> None:
    one, two = os.path.join(inputs["root"], "one.json"), os.path.join(inputs["root"], "two.json")
    for n, out in ((1, one), (2, two)):
        proc = run(n, _args(spread_model_dir, inputs, out))
        assert proc.returncode == 0, proc.stderr[-3000:]
        if n == 2:
            assert proc.stdout.count("(pooler avg)") == 1 and proc.stdout.count("beir: ndcg@10") == 1  # process 0 only
    records = []
    for path in (one, two):
        with open(path, encoding="utf-8") as f:
            records.append(json.load(f)["models"][0])
    numbers_a, numbers_b = _numbers(records[0]), _numbers(records[1])
    assert len(numbers_a) >= 24 and numbers_a.keys() == numbers_b.keys()
    for key in ("evaluators/beir/ndcg@10", "evaluators/pairs/cosine_ap", "tasks/mine/score", "alignment"):
        assert key in numbers_a
    assert 0.0 < numbers_a["evaluators/beir/ndcg@10"] < 1.0  # a real ranking, neither all hits nor all misses
    for key, value in numbers_a.items():
        assert numbers_b[key] == pytest.approx(value, abs=1e-6), key


def test_a_failure_on_one_process_ends_both_without_waiting(spread_model_dir: str, inputs: dict[str, str]) -> None:
    out = os.path.join(inputs["root"], "failed.json")
    proc = run(2, _args(spread_model_dir, inputs, out), entry=[FAULTY], timeout=240, SIMCSE_TEST_ENCODE_FAIL="1")
    assert proc.returncode != 0
    assert "injected failure on process 1" in proc.stderr  # the failing process reports its own error
    # process 0, in one line that names the failing process and its error
    assert "simcse eval: error: process 1 failed while evaluating: injected failure on process 1" in proc.stderr
    assert not os.path.exists(out)
