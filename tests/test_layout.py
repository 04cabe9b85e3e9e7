"""The package layout: a small public surface, one-way imports, scripts that import the library (no copies)."""

from __future__ import annotations

import ast
import json
import os
import struct

import pytest

import simcse
from simcse.evaluation import evaluate_sts, score_suite
from simcse.experiments import RESULT_FILE, run_experiment
from simcse.plots import plot_align_uniform
from simcse.train.config import load_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_public_surface_is_small_and_resolves() -> None:
    assert 10 <= len(simcse.__all__) <= 20
    for name in simcse.__all__:
        assert getattr(simcse, name) is not None
    assert "contrastive_loss" not in simcse.__all__  # Hadsell's loss is objectives.pair_contrastive_loss


def _simcse_imports(path: str) -> set[str]:
    tree = ast.parse(_read(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simcse"):
            found.add(node.module)
    return found


FLOORS = [("encoder", "objectives"), ("train", "evaluation"), ("cli",)]  # each floor imports only floors below


@pytest.mark.parametrize(
    "low, high",
    [(low, high) for i, floor in enumerate(FLOORS) for low in floor for upper in FLOORS[i + 1 :] for high in upper]
    + [("encoder", "objectives"), ("objectives", "encoder"), ("evaluation", "train")],
)
def test_imports_go_one_way(low: str, high: str) -> None:
    root = os.path.join(REPO, "simcse", low)
    for name in os.listdir(root):
        if name.endswith(".py"):
            for module in _simcse_imports(os.path.join(root, name)):
                assert not module.startswith(f"simcse.{high}"), f"simcse/{low}/{name} imports {module}"


@pytest.mark.parametrize(
    "script", ["compare_objectives.py", "reproduce_findings.py", "findings_report.py", "bench_eval.py",
               "bench_quality_cpu.py", "bench_retrieval.py", "build_retrieval_dev.py"],
)  # fmt: skip
def test_scripts_use_the_library_not_copies(script: str) -> None:
    tree = ast.parse(_read(os.path.join(REPO, "scripts", script)))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not defined & {"score_suite", "read_metrics", "_read_metrics", "_smooth", "list_checkpoints"}
    assert "TASK_COLUMNS" not in assigned
    assert "evaluate_sts(" not in _read(os.path.join(REPO, "scripts", script))


def test_score_suite_equals_evaluate_sts(tiny_encoder, small_dev_data: str) -> None:
    tasks = ["STSBenchmark", "SICKRelatedness"]
    ours = score_suite(tiny_encoder, tasks, small_dev_data, batch_size=16, stsb_split="dev", sick_mode="dev")
    ref = evaluate_sts(lambda s: tiny_encoder.encode(s, batch_size=16), tasks, small_dev_data, stsb_split="dev",
                       sick_mode="dev")  # fmt: skip
    assert ours["avg"] == pytest.approx(ref["avg"], abs=1e-6)
    assert ours["uniformity"] == pytest.approx(ref["uniformity"], abs=1e-6)


def test_run_experiment_returns_the_cached_result_without_training(tmp_path) -> None:
    cfg = load_config(None, {"model_name_or_path": "unused", "output_dir": str(tmp_path / "run")})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / RESULT_FILE).write_text(json.dumps({"suite": {"avg": 1.0}}), encoding="utf-8")

    def no_training(*args, **kwargs):
        raise AssertionError("a cached experiment must not train")

    assert run_experiment(cfg, train_fn=no_training) == {"suite": {"avg": 1.0}}


def test_align_uniform_plot_is_a_png(tmp_path) -> None:
    path = str(tmp_path / "au.png")
    points = [{"uniformity": -2.0, "alignment": 0.3, "label": "a", "group": "x", "color": 50.0},
              {"uniformity": -2.02, "alignment": 0.31, "label": "b", "group": "y", "color": 60.0}]  # fmt: skip
    trajectory = {"run": [{"uniformity": -1.0, "alignment": 0.1, "step": 0}, {"uniformity": -2, "alignment": 0.2}]}
    assert plot_align_uniform(path, points, trajectory, color_label="STS avg") == path
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24])[0] > 100


def test_the_benchmark_times_the_loops_own_step(monkeypatch, tiny_model_dir, small_dev_data, tmp_path) -> None:
    """``scripts/bench_train.py`` and ``train()`` both run :class:`simcse.train.step.TrainStep` (no copy)."""
    import argparse
    import importlib.util

    from simcse.train import train
    from simcse.train.step import TrainStep

    calls: list[int] = []
    real = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    spec = importlib.util.spec_from_file_location("bench_train", os.path.join(REPO, "scripts", "bench_train.py"))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a man is playing the guitar {i}" for i in range(32)) + "\n", encoding="utf-8")
    monkeypatch.setattr(bench, "CORPUS", str(corpus))
    args = argparse.Namespace(model=tiny_model_dir, data_dir=small_dev_data, max_seq_len=16, device="cpu")
    step, rows = bench.simcse_step(args, batch_size=8, chunk=0, n_batches=2)
    step(rows(0))
    assert calls == [1]
    cfg = load_config(None, dict(model_name_or_path=tiny_model_dir, train_file=str(corpus), data_dir=small_dev_data,
                                 batch_size=8, max_steps=2, eval_steps=2, output_dir=str(tmp_path / "run")))
    train(cfg)
    assert calls == [1, 1, 1]
