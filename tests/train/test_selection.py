"""Training selects the best model by the user's metric: the chosen step checked by hand, the default unchanged,
``eval_on_start``'s step 0, and bad dev data or metric names refused before any training."""

from __future__ import annotations

import json
import math
import os

import pytest
import yaml

from simcse.config import load_config, to_yaml
from simcse.evaluation.dev import improves, lower_is_better
from simcse.evaluation.evaluators import build_evaluators, run_evaluators
from simcse.runs.folder import RunFolder
from simcse.train import train
from tests.helpers.data import cfg_for, write_corpus
from tests.helpers.retrieval import write_small_sets

METRIC = "mini/ndcg@10"


@pytest.fixture(scope="module")
def sets(tmp_path_factory: pytest.TempPathFactory, small_dev_data: str) -> dict[str, str]:
    root = tmp_path_factory.mktemp("selection")
    write_corpus(root / "corpus.txt", n=96)
    return {**write_small_sets(root, small_dev_data), "corpus": str(root / "corpus.txt")}


def _specs(sets: dict[str, str]) -> list[dict]:
    return [
        {"type": "retrieval", "name": "mini", "path": sets["beir"], "split": "dev"},
        {"type": "pair_classification", "name": "pairs", "path": sets["pairs"]},
    ]


def _evaluations(run: str, key: str) -> list[dict]:
    return [r for r in RunFolder(run).read_metrics() if key in r]


def _running_best(values: list[float]) -> list[bool]:
    """By hand: a value is saved when it beats every earlier one (ties keep the earlier)."""
    flags, best = [], -math.inf
    for v in values:
        flags.append(v > best)
        best = max(best, v)
    return flags


@pytest.fixture(scope="module")
def retrieval_run(spread_model_dir, sets, small_dev_data, tmp_path_factory) -> tuple:
    root = tmp_path_factory.mktemp("retrieval_run")
    cfg = cfg_for(
        spread_model_dir, sets["corpus"], root, pooler="avg", data_dir=small_dev_data, max_steps=8, eval_steps=2,
        learning_rate=3e-3, dropout=0.0, dev_evaluators=_specs(sets), metric_for_best=METRIC, eval_on_start=True,
    )  # fmt: skip
    return cfg, train(cfg)


@pytest.mark.slow  # a short training run
def test_metric_for_best_saves_the_step_with_the_best_retrieval_score(retrieval_run, sets) -> None:
    from simcse import Encoder

    cfg, state = retrieval_run
    run = RunFolder(cfg.output_dir)
    evals = _evaluations(run.root, METRIC)
    assert [r["step"] for r in evals] == [0, 2, 4, 6, 8] and "loss" not in evals[0]  # eval_on_start: step 0
    names = sorted(n for e in build_evaluators(_specs(sets)) for n in e.metric_names())
    assert all(sorted(k for k in r if "/" in k) == names for r in evals)  # every metric of every evaluator
    values = [r[METRIC] for r in evals]
    assert len(set(values)) > 1  # training moved the score: the choice means something
    chosen = values.index(max(values))  # the first step holding the best score
    assert [bool(r.get("new_best")) for r in evals] == _running_best(values)
    assert (state["best_step"], state["best_metric"]) == (evals[chosen]["step"], values[chosen])
    with open(run.best, encoding="utf-8") as f:
        assert json.load(f) == {"step": evals[chosen]["step"], "metric": METRIC, "value": values[chosen]}
    # the saved folder holds the weights that scored it: scored again, independently of the run
    rescored = run_evaluators(build_evaluators(_specs(sets)[:1]), Encoder.from_pretrained(run.model), 16)
    assert rescored[METRIC] == pytest.approx(values[chosen], abs=1e-6)
    # the card's model-index names the user's data sets and their scores at the saved step
    with open(run.card, encoding="utf-8") as f:
        header = yaml.safe_load(f.read().split("---")[1])
    results = {r["dataset"]["name"]: r for r in header["model-index"][0]["results"]}
    assert results["mini"]["dataset"] == {"name": "mini", "type": "beir", "split": "dev"}
    assert results["mini"]["task"]["type"] == "retrieval" and results["pairs"]["task"]["type"] == "pair-classification"
    ndcg = next(m for m in results["mini"]["metrics"] if m["type"] == "ndcg@10")
    assert ndcg["value"] == round(values[chosen], 4)
    assert os.path.isfile(run.curves) and os.path.isfile(run.model_curves)


@pytest.mark.slow  # a short training run
def test_eval_on_start_leaves_the_training_as_it_was(retrieval_run, tmp_path) -> None:
    """Evaluating draws no random numbers and leaves the model in training mode: the same run without it
    has the same losses and the same scores at every later evaluation."""
    cfg, _ = retrieval_run
    plain = load_config(None, {**yaml.safe_load(to_yaml(cfg)), "eval_on_start": False, "output_dir": str(tmp_path)})
    train(plain)
    with_start, without = RunFolder(cfg.output_dir).read_metrics(), RunFolder(plain.output_dir).read_metrics()
    def scores(records: list[dict]) -> list[dict]:  # which step is a new best depends on step 0's score
        return [{k: v for k, v in r.items() if k != "new_best"} for r in records]

    assert with_start[0]["step"] == 0 and scores(with_start[1:]) == scores(without)


@pytest.mark.slow  # a short training run
def test_the_default_selects_by_stsb_dev_as_the_paper_does(tiny_model_dir, sets, small_dev_data, tmp_path) -> None:
    """No dev_evaluators: the records hold the four metrics the runs always recorded, the saved step is the
    first best STS-B dev, and its scores are those of the pre-sharding path (one process, ``evaluate_sts``)."""
    from simcse import Encoder
    from simcse.evaluation.scoring import evaluate_sts

    cfg = cfg_for(tiny_model_dir, sets["corpus"], tmp_path, data_dir=small_dev_data, max_steps=6, eval_steps=2)
    state = train(cfg)
    run = RunFolder(cfg.output_dir)
    evals = _evaluations(run.root, "stsb_dev")
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert all(set(r) - {"new_best"} == {"step", "loss", "lr", "stsb_dev", "sickr_dev", "alignment", "uniformity"}
               for r in evals)  # fmt: skip
    values = [r["stsb_dev"] for r in evals]
    chosen = values.index(max(values))
    assert [bool(r.get("new_best")) for r in evals] == _running_best(values)
    assert state["best_step"] == evals[chosen]["step"]
    with open(run.best, encoding="utf-8") as f:
        assert json.load(f)["metric"] == "stsb_dev"
    encoder = Encoder.from_pretrained(run.model)
    old = evaluate_sts(lambda s: encoder.encode(s, batch_size=cfg.eval_batch_size), ["STSBenchmark", "SICKRelatedness"],
                       small_dev_data, stsb_split="dev", sick_mode="dev")  # fmt: skip
    assert old["tasks"]["STSBenchmark"]["score"] == pytest.approx(values[chosen], abs=1e-9)
    assert old["tasks"]["SICKRelatedness"]["score"] == pytest.approx(evals[chosen]["sickr_dev"], abs=1e-9)
    assert old["alignment"] == pytest.approx(evals[chosen]["alignment"], rel=1e-6)


def _bad_beir(root, qrels: str = "q1\td9\t1\n", corpus: str = '{"_id": "d1", "text": "a cat"}\n') -> str:
    os.makedirs(os.path.join(root, "qrels"), exist_ok=True)
    with open(os.path.join(root, "corpus.jsonl"), "w", encoding="utf-8") as f:
        f.write(corpus)
    with open(os.path.join(root, "queries.jsonl"), "w", encoding="utf-8") as f:
        f.write('{"_id": "q1", "text": "a kitten"}\n')
    with open(os.path.join(root, "qrels", "dev.tsv"), "w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n" + qrels)
    return str(root)


@pytest.mark.parametrize(
    "case, message",
    [
        ("no such metric", "metric_for_best 'retrieval/ndcg@10' is reported by no dev evaluator; choose one of "
                           "stsb_dev, sickr_dev, alignment, uniformity (or give dev_evaluators)"),
        ("metric typo", "metric_for_best 'mini/ndcg@5' is reported by no dev evaluator; choose one of mini/ndcg@10,"),
        ("qrels id missing", "qrels/dev.tsv:2: document id 'd9' is not in corpus.jsonl"),
        ("empty corpus", "corpus.jsonl: no documents (the file is empty)"),
        ("label not 0/1", "pairs.csv:3: label '2' is not 0 or 1"),
    ],
)  # fmt: skip
def test_bad_dev_data_or_metric_is_refused_before_training_in_one_line(
    case, message, tiny_model_dir, sets, small_dev_data, tmp_path, capsys
) -> None:
    from simcse.cli import main

    overrides = {"metric_for_best": "mini/ndcg@10"}
    if case == "no such metric":
        overrides = {"metric_for_best": "retrieval/ndcg@10"}
    elif case == "metric typo":
        overrides = {"metric_for_best": "mini/ndcg@5", "dev_evaluators": _specs(sets)}
    elif case == "label not 0/1":
        (tmp_path / "pairs.csv").write_text("sentence1,sentence2,label\na,b,1\nc,d,2\n", encoding="utf-8")
        overrides["dev_evaluators"] = [{"type": "pair_classification", "path": str(tmp_path / "pairs.csv")}]
    else:
        beir = _bad_beir(tmp_path / "beir", **({"corpus": ""} if case == "empty corpus" else {}))
        overrides["dev_evaluators"] = [{"type": "retrieval", "name": "mini", "path": beir, "split": "dev"}]
    out = tmp_path / "run"
    args = {"model_name_or_path": tiny_model_dir, "train_file": sets["corpus"], "data_dir": small_dev_data,
            "output_dir": str(out), "max_steps": 2, **overrides}  # fmt: skip
    argv = [f"--{k}={json.dumps(v) if isinstance(v, list) else v}" for k, v in args.items()]
    assert main(["train", *argv]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("simcse train: error: ") and message in err[0], err
    assert not os.path.exists(out / "metrics.jsonl") and not os.path.exists(out / "config.yaml")  # nothing ran


def test_dev_evaluators_read_from_yaml_and_the_command_line_and_round_trip(tmp_path) -> None:
    specs = [{"type": "retrieval", "path": "beir", "split": "dev", "cutoffs": {"ndcg": [5, 10]}}]
    recipe = tmp_path / "r.yaml"
    recipe.write_text(yaml.safe_dump({"dev_evaluators": specs, "metric_for_best": "retrieval/ndcg@5"}))
    from_file = load_config(recipe)
    from_line = load_config(None, {"dev_evaluators": json.dumps(specs), "metric_for_best": "retrieval/ndcg@5"})
    assert from_file.dev_evaluators == from_line.dev_evaluators == specs
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(from_file))
    assert load_config(saved) == from_file  # config.yaml reads back
    for bad in ('{"type": "sts"}', "[1, 2]", "[]"):
        with pytest.raises(ValueError, match="dev_evaluators"):
            load_config(None, {"dev_evaluators": bad})


def test_lower_is_better_for_alignment_and_uniformity_and_nan_never_wins() -> None:
    assert lower_is_better("mini/alignment") and lower_is_better("uniformity") and not lower_is_better("stsb_dev")
    assert improves(-2.0, None, "mini/uniformity") and improves(-3.0, -2.0, "mini/uniformity")
    assert not improves(-1.0, -2.0, "mini/uniformity") and not improves(0.5, 0.5, METRIC)  # ties keep the earlier
    assert improves(0.6, 0.5, METRIC) and not improves(float("nan"), None, METRIC)


def test_the_bar_shows_the_selected_metric() -> None:
    from tqdm import tqdm

    from simcse.train.loop import _show

    with open(os.devnull, "w") as sink, tqdm(total=4, disable=False, file=sink) as bar:
        _show(bar, {"step": 0, METRIC: 0.51234}, 0, METRIC)
        assert bar.postfix == f"{METRIC}=0.5123"
        _show(bar, {"step": 2, "loss": 1.5, "stsb_dev": 70.0, METRIC: 0.6}, 2, METRIC)
        assert bar.postfix == f"loss=1.5, {METRIC}=0.6"
