"""The package layout: a small public surface, one-way imports, scripts that import the library (no copies)."""

from __future__ import annotations

import ast
import json
import os
import struct
from typing import Any

import pytest

import simcse
from simcse.config import load_config
from simcse.evaluation import evaluate_sts, score_suite
from simcse.experiments import RESULT_FILE, run_experiment
from simcse.plots import plot_align_uniform
from tests.helpers.paths import REPO


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def test_public_surface_is_small_and_resolves() -> None:
    assert 10 <= len(simcse.__all__) <= 20
    for name in simcse.__all__:
        assert getattr(simcse, name) is not None
    assert "contrastive_loss" not in simcse.__all__  # Hadsell's loss is objectives.pair_contrastive_loss


LIBRARY = os.path.join(REPO, "simcse")
# the floors, bottom up: a package (or top-level module) imports only from the floors below it; on the
# ground floor the small helper modules may import each other, on every other floor no two units do
FLOORS = [
    ("io", "distributed", "search", "quantize", "data_dir", "plots", "mining", "publish", "install_check"),
    ("encoder", "objectives", "augment"),
    ("config",),
    ("data",),
    ("evaluation", "corpus"),
    ("runs",),
    ("train",),
    ("experiments",),
    ("cli",),
]
FLOOR = {unit: i for i, units in enumerate(FLOORS) for unit in units}
LIBRARY_FILES = sorted(
    os.path.relpath(os.path.join(d, f), LIBRARY) for d, _, names in os.walk(LIBRARY) for f in names if f.endswith(".py")
)


def _unit(relpath: str) -> str:
    """``encoder`` for ``encoder/pooling.py``, ``io`` for ``io.py``."""
    return relpath.split(os.sep)[0].removesuffix(".py")


def _simcse_imports(path: str) -> set[str]:
    """Every ``simcse.*`` module ``path`` imports, at the top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(_read(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simcse"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("simcse."))
    return found


def test_every_package_and_module_has_a_floor() -> None:
    units = {_unit(f) for f in LIBRARY_FILES} - {"__init__", "py.typed"}
    assert units <= set(FLOOR), f"no floor for {sorted(units - set(FLOOR))}: add it to FLOORS"


@pytest.mark.parametrize("relpath", [f for f in LIBRARY_FILES if _unit(f) != "__init__"])
def test_imports_go_one_way(relpath: str) -> None:
    own = _unit(relpath)
    for module in _simcse_imports(os.path.join(LIBRARY, relpath)):
        if module == "simcse":  # the facade (``from simcse import Encoder``): resolved by name, at call time
            continue
        other = module.split(".")[1]
        if other == own:
            continue
        assert FLOOR[other] < FLOOR[own] or FLOOR[other] == FLOOR[own] == 0, (
            f"simcse/{relpath} (floor {FLOOR[own]}) imports {module} (floor {FLOOR[other]})"
        )


def test_no_import_circle() -> None:
    """Between files, with the imports inside functions too."""
    modules = {f.removesuffix(".py").removesuffix("/__init__").replace(os.sep, "."): f for f in LIBRARY_FILES}
    graph: dict[str, set[str]] = {}
    for name, relpath in modules.items():
        targets = set()
        for node in ast.walk(ast.parse(_read(os.path.join(LIBRARY, relpath)))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simcse."):
                base = node.module.removeprefix("simcse.")
                targets.update(f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names)
        graph[name] = {t for t in targets if t in modules and t != name}
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            assert state.get(target) != 1, "import circle: " + " -> ".join([*path[path.index(target):], target])
            if target not in state:
                visit(target, [*path, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_library_modules_stay_under_300_lines() -> None:
    sizes = {f: len(_read(os.path.join(LIBRARY, f)).splitlines()) for f in LIBRARY_FILES}
    assert {f: n for f, n in sizes.items() if n > 300} == {}


# each script's work is done by calling these library functions (imported from simcse), never by a copy
SCRIPT_CALLS = {
    "findings/compare_objectives.py": {"run_experiment", "score_suite", "plot_align_uniform"},
    "findings/reproduce_findings.py": {"run_experiment", "score_suite"},
    "findings/findings_report.py": {"plot_align_uniform", "smooth"},
    "bench/bench_eval.py": {"score_suite"},
    "bench/bench_quality_cpu.py": {"train", "score_suite", "score_run"},
    "bench/bench_train.py": {"prepare", "to_device"},
    "bench/bench_data.py": {"prepare", "load_training_views"},
    "bench/bench_views.py": {"load_training_views", "build_model", "compute_loss"},
    "demos/demo_mining.py": {"train", "mine_hard_negatives", "write_triplets", "score_suite", "score_run"},
    "bench/bench_retrieval.py": {"load_beir", "search", "decode"},
    "bench/build_retrieval_dev.py": {"load_stsb", "write_beir", "senteval_dir"},
}


def _library_calls(tree: ast.AST) -> set[str]:
    """The names of the simcse functions ``tree`` calls (through an import of simcse, aliases resolved)."""
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("simcse"):
            imported.update({a.asname or a.name: a.name for a in node.names})
    called = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported:
            called.add(imported[node.func.id])
    return called


@pytest.mark.parametrize("script", sorted(SCRIPT_CALLS))
def test_scripts_use_the_library_not_copies(script: str) -> None:
    tree = ast.parse(_read(os.path.join(REPO, "scripts", script)))
    defined = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    assigned = {t.id for n in ast.walk(tree) if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert not defined & {"score_suite", "read_metrics", "_read_metrics", "_smooth", "list_checkpoints"}
    assert "TASK_COLUMNS" not in assigned
    assert "evaluate_sts(" not in _read(os.path.join(REPO, "scripts", script))
    assert SCRIPT_CALLS[script] <= _library_calls(tree), f"scripts/{script} does not call the library's own"


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


def _script(monkeypatch: pytest.MonkeyPatch, path: str) -> Any:
    """A script of ``scripts/`` imported as a module (its ``main`` is not run)."""
    import importlib.util

    monkeypatch.syspath_prepend(os.path.dirname(path))  # the scripts of one folder import each other by name
    spec = importlib.util.spec_from_file_location(os.path.basename(path).removesuffix(".py"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _count_prepare(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count the calls of :func:`simcse.train.prepare`, from the scripts (``from simcse.train import prepare``)
    and from the loop alike."""
    import simcse.train
    import simcse.train.loop

    calls: list[int] = []
    real = simcse.train.prepare

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(simcse.train, "prepare", counted)
    monkeypatch.setattr(simcse.train.loop, "prepare", counted)
    return calls


def test_the_benchmark_times_the_loops_own_step(monkeypatch, tiny_model_dir, small_dev_data, tmp_path) -> None:
    """``scripts/bench/bench_train.py`` and ``train()`` both build with :func:`simcse.train.prepare` and run
    :class:`simcse.train.step.TrainStep` (no copy of either)."""
    import argparse

    from simcse.train import train
    from simcse.train.step import TrainStep

    calls: list[int] = []
    real = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    prepared = _count_prepare(monkeypatch)
    bench = _script(monkeypatch, os.path.join(REPO, "scripts", "bench", "bench_train.py"))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a man is playing the guitar {i}" for i in range(32)) + "\n", encoding="utf-8")
    monkeypatch.setattr(bench, "CORPUS", str(corpus))
    args = argparse.Namespace(model=tiny_model_dir, data_dir=small_dev_data, max_seq_len=16, device="cpu")
    step, rows = bench.simcse_step(args, batch_size=8, chunk=0, n_batches=2)
    step(rows(0))
    assert calls == [1] and prepared == [1]
    cfg = load_config(None, dict(model_name_or_path=tiny_model_dir, train_file=str(corpus), data_dir=small_dev_data,
                                 batch_size=8, max_steps=2, eval_steps=2, output_dir=str(tmp_path / "run")))
    train(cfg)
    assert calls == [1, 1, 1] and prepared == [1, 1]


@pytest.mark.slow
def test_the_data_benchmark_times_the_loops_own_step(monkeypatch, tiny_model_dir, tmp_path) -> None:
    """``scripts/bench/bench_data.py`` times the steps of :func:`simcse.train.prepare`'s objects, fed three ways."""
    from simcse.train.step import TrainStep

    calls: list[int] = []
    real = TrainStep.__call__
    monkeypatch.setattr(TrainStep, "__call__", lambda self, *a, **k: calls.append(1) or real(self, *a, **k))
    prepared = _count_prepare(monkeypatch)
    bench = _script(monkeypatch, os.path.join(REPO, "scripts", "bench", "bench_data.py"))
    monkeypatch.setattr(bench, "minilm", lambda: tiny_model_dir)
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"a man is playing the guitar {i}" for i in range(64)) + "\n", encoding="utf-8")
    speeds = bench.worker_steps(str(corpus), str(tmp_path / "cache"), steps=1)
    assert set(speeds) == {"precollated", "loader_0_workers", "loader_2_workers"}
    assert prepared == [1, 1, 1] and len(calls) == 3 * (2 + 1)  # 2 warm-up steps and 1 timed, three feeds


def test_findings_tables_1_and_2_are_runs_of_the_grid_with_the_papers_numbers(monkeypatch, tmp_path) -> None:
    grid = _script(monkeypatch, os.path.join(REPO, "scripts", "findings", "reproduce_findings.py"))
    report = _script(monkeypatch, os.path.join(REPO, "scripts", "findings", "findings_report.py"))
    args = grid.parse_args(["--lr", "3e-4", "--tables", "augmentations,objectives_t2", "--out", str(tmp_path)])
    jobs = grid.grid_jobs(args, 3e-4, 3e-4)
    tables = report.selected_tables(args.tables)
    assert {j["id"] for j in jobs} == {rid for t in tables for _, rid in t.rows}  # no run left out, none extra
    for job in jobs:  # every row is a valid config (the checks run when it is built)
        cfg = load_config(None, {**job["overrides"], "output_dir": job["dir"]})
        assert cfg.augments or cfg.two_encoders or job["id"] == "unsup"
    assert all(len(t.paper_dev) == len(t.rows) for t in tables)
    fake = {"unsup": {"kind": "train", "dev": {"stsb_dev": 41.0}, "test": dict.fromkeys(report.PAPER_COLUMNS, 30.0),
                      "avg": 30.0}}  # fmt: skip
    text = report.table_markdown(tables[0], fake)
    assert "| dropout alone (unsup SimCSE) | 82.5 | 41.00 |" in text and "| crop 10% | 77.8 | not run |" in text
