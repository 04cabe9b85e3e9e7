"""Every public function that takes a file or folder accepts ``os.PathLike`` as well as ``str`` (issue 27).

Each case calls the function with ``pathlib.Path`` objects wherever a path goes in and compares the
result with the same call made with plain strings (the reference): same vectors, same scores, same
files, and plain ``str`` paths out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

SENTENCES = ["a man is playing the guitar", "the dog runs in the park", "an old red car"]


@dataclass
class Ctx:
    model: str  # a tiny plain Hugging Face folder
    data: str  # a data dir with STS-B dev and SICK-R dev
    tmp: Path
    encoder: object


CASES: dict[str, Callable[[Ctx], None]] = {}


def case(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
    CASES[fn.__name__] = fn
    return fn


def _custom_sts(ctx: Ctx) -> Path:
    path = ctx.tmp / "pairs.tsv"
    rows = [(SENTENCES[i % 3], SENTENCES[(i + 1) % 3] + " " + str(i), i % 6) for i in range(12)]
    path.write_text("".join(f"{a}\t{b}\t{s}\n" for a, b, s in rows), encoding="utf-8")
    return path


# ---------------------------------------------------------------- encoder
@case
def encoder_from_pretrained(ctx: Ctx) -> None:
    from simcse import Encoder

    ref = Encoder.from_pretrained(ctx.model, pooler="avg", device="cpu").encode(SENTENCES)
    got = Encoder.from_pretrained(Path(ctx.model), pooler="avg", device="cpu").encode(SENTENCES)
    np.testing.assert_array_equal(got, ref)


@case
def encoder_save(ctx: Ctx) -> None:
    from simcse import Encoder

    ctx.encoder.save(ctx.tmp / "saved")
    assert not any(p.name.startswith(".") for p in ctx.tmp.iterdir())  # renamed into place, nothing left over
    again = Encoder.from_pretrained(ctx.tmp / "saved", device="cpu")
    np.testing.assert_allclose(again.encode(SENTENCES), ctx.encoder.encode(SENTENCES), atol=1e-6)


@case
def onnx_file_argument(ctx: Ctx) -> None:
    from simcse.encoder.onnx import find_onnx_file

    (ctx.tmp / "m" / "onnx").mkdir(parents=True)
    (ctx.tmp / "m" / "onnx" / "model.onnx").write_bytes(b"")
    got = find_onnx_file(ctx.tmp / "m", Path("onnx") / "model.onnx")
    assert isinstance(got, str) and got == find_onnx_file(str(ctx.tmp / "m"), "onnx/model.onnx")


@case
def hub_helpers(ctx: Ctx) -> None:
    from simcse.encoder import resolve_model_name
    from simcse.encoder.hub import resolve_file

    assert resolve_model_name(Path(ctx.model)) == ctx.model
    assert resolve_file(Path(ctx.model), "config.json") == resolve_file(ctx.model, "config.json")


@case
def folder_checks(ctx: Ctx) -> None:
    from simcse.encoder.checks import check_model_path, check_transformer_folder

    check_model_path(Path(ctx.model))
    check_transformer_folder(Path(ctx.model))
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        check_model_path(ctx.tmp / "missing")


@case
def prompt_settings(ctx: Ctx) -> None:
    from simcse.encoder.prompts import PromptSettings, read_prompt_settings, write_prompt_settings

    folder = ctx.tmp / "prompts"
    folder.mkdir()
    write_prompt_settings(folder, PromptSettings({"query": "q: "}, "query", True))
    assert read_prompt_settings(folder) == read_prompt_settings(str(folder))
    assert read_prompt_settings(folder).prompts == {"query": "q: "}


# ---------------------------------------------------------------- evaluation
@case
def load_tasks(ctx: Ctx) -> None:
    from simcse import load_task
    from simcse.evaluation import load_custom

    custom = _custom_sts(ctx)
    for got, ref in (
        (load_task(custom), load_task(str(custom))),
        (load_custom(custom), load_custom(str(custom))),
        (load_task("STSBenchmark", Path(ctx.data), stsb_split="dev"), load_task("STSBenchmark", ctx.data, "dev")),
    ):
        assert got.name == ref.name and isinstance(got.name, str)
        assert got.subsets[0].sentences1 == ref.subsets[0].sentences1
        np.testing.assert_array_equal(got.subsets[0].scores, ref.subsets[0].scores)


@case
def scoring(ctx: Ctx) -> None:
    from simcse import evaluate_sts, score_suite

    custom = _custom_sts(ctx)
    kw = {"stsb_split": "dev", "align_uniform": True}
    ref = score_suite(ctx.encoder, ["STSBenchmark", str(custom)], ctx.data, batch_size=16, **kw)
    got = score_suite(ctx.encoder, ["STSBenchmark", custom], Path(ctx.data), batch_size=16, **kw)
    assert got == ref and "pairs" in got["tasks"]
    got = evaluate_sts(lambda s: ctx.encoder.encode(s), [custom], Path(ctx.data), **kw)
    assert got["tasks"]["pairs"] == ref["tasks"]["pairs"]


@case
def dev_evaluator(ctx: Ctx) -> None:
    from simcse.evaluation import DevEvaluator

    same = DevEvaluator(ctx.data, 16)(ctx.encoder, use_head=True)
    assert DevEvaluator(Path(ctx.data), 16)(ctx.encoder, use_head=True) == same


@case
def data_dir_helpers(ctx: Ctx) -> None:
    from simcse.data_dir import data_path, resolve_data_dir, senteval_dir

    assert resolve_data_dir(Path(ctx.data)) == ctx.data
    assert senteval_dir(Path(ctx.data)) == senteval_dir(ctx.data)
    assert data_path(Path("corpus") / "x.txt", Path(ctx.data)) == os.path.join(ctx.data, "corpus", "x.txt")


# ---------------------------------------------------------------- files, plots, publishing
@case
def atomic_files(ctx: Ctx) -> None:
    from simcse.io import atomic_dir, atomic_write_text, recover

    atomic_write_text(ctx.tmp / "a.txt", "hello")
    assert (ctx.tmp / "a.txt").read_text() == "hello"
    with atomic_dir(ctx.tmp / "folder") as tmp:
        assert isinstance(tmp, str)
        Path(tmp, "f").write_text("x")
    recover(ctx.tmp / "folder")
    assert (ctx.tmp / "folder" / "f").read_text() == "x"


@case
def plots(ctx: Ctx) -> None:
    from simcse.cli.eval_report import plot_align_uniform as eval_plot
    from simcse.plots import plot_align_uniform, plot_training_curves
    from simcse.runs.folder import read_metrics

    metrics = ctx.tmp / "metrics.jsonl"
    metrics.write_text("".join(json.dumps({"step": i, "loss": 1.0 / i}) + "\n" for i in range(1, 5)))
    records = read_metrics(metrics)
    assert records == read_metrics(str(metrics))
    assert plot_training_curves(records, ctx.tmp / "c.png") == str(ctx.tmp / "c.png")
    point = {"uniformity": -2.0, "alignment": 0.3, "label": "a"}
    assert plot_align_uniform(ctx.tmp / "au.png", [point]) == str(ctx.tmp / "au.png")
    eval_plot([{**point, "model": "m", "pooler": "avg", "avg": 50.0, "align_uniform_split": "dev"}], ctx.tmp / "e.png")
    assert all((ctx.tmp / name).stat().st_size > 1000 for name in ("c.png", "au.png", "e.png"))


@case
def publish(ctx: Ctx) -> None:
    from simcse.publish import files_to_upload, push_to_hub

    folder = ctx.tmp / "model"
    ctx.encoder.save(folder)

    class Api:
        def create_repo(self, repo_id: str, **kw: object) -> str:
            return f"https://huggingface.co/{repo_id}"

        def create_commit(self, **kw: object) -> None:
            self.paths = sorted(op.path_in_repo for op in kw["operations"])

    api = Api()
    assert files_to_upload(folder) == files_to_upload(str(folder))
    assert push_to_hub(folder, "me/model", api=api) == "https://huggingface.co/me/model"
    assert api.paths == files_to_upload(str(folder))


# ---------------------------------------------------------------- training
PATH_FIELDS = ("model_name_or_path", "train_file", "data_dir", "data_cache_dir", "output_dir")


def _path_config(ctx: Ctx) -> dict[str, Path]:
    corpus = ctx.tmp / "corpus.txt"
    corpus.write_text("".join(f"{s} {i}\n" for i in range(8) for s in SENTENCES), encoding="utf-8")
    folders = {"data_dir": Path(ctx.data), "data_cache_dir": ctx.tmp / "cache", "output_dir": ctx.tmp / "run"}
    return {"model_name_or_path": Path(ctx.model), "train_file": corpus, **folders}


@case
def train_config(ctx: Ctx) -> None:
    import yaml

    from simcse.config import TrainConfig, load_config, to_yaml

    paths = _path_config(ctx)
    cfg = TrainConfig(**paths)
    assert all(type(getattr(cfg, k)) is str and getattr(cfg, k) == str(v) for k, v in paths.items())
    assert yaml.safe_load(to_yaml(cfg))["output_dir"] == str(paths["output_dir"])
    (ctx.tmp / "c.yaml").write_text(to_yaml(cfg), encoding="utf-8")
    assert load_config(ctx.tmp / "c.yaml", {"output_dir": ctx.tmp / "other"}) == TrainConfig(
        **{**paths, "output_dir": ctx.tmp / "other"}
    )


@case
def train_run_and_card(ctx: Ctx) -> None:
    import yaml

    from simcse.runs.card import write_model_card
    from simcse.runs.checkpoints import list_checkpoints, read_best
    from simcse.runs.report import add_test_results
    from simcse.train import TrainConfig, train

    paths = _path_config(ctx)
    cfg = TrainConfig(**paths, batch_size=4, max_seq_len=16, max_steps=1, eval_steps=1, pooler="avg")
    assert train(cfg)["step"] == 1
    run = paths["output_dir"]
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert {k: saved[k] for k in PATH_FIELDS} == {k: str(v) for k, v in paths.items()}  # plain strings
    assert list_checkpoints(run) == list_checkpoints(str(run)) != []
    assert read_best(run) == read_best(str(run)) is not None
    card = add_test_results(run, {"tasks": {"STSBenchmark": {"score": 12.5}}, "avg": 12.5})
    assert card == write_model_card(str(run)) == str(run / "model" / "README.md")
    assert "| 12.50 |" in Path(card).read_text(encoding="utf-8")


@case
def readers(ctx: Ctx) -> None:
    from simcse.data.readers import file_format, read_csv_examples, read_sentences

    text = ctx.tmp / "s.txt"
    text.write_text("one\ntwo\n", encoding="utf-8")
    table = ctx.tmp / "p.csv"
    table.write_text("sent0,sent1\na,b\n", encoding="utf-8")
    assert read_sentences(text)[0] == read_sentences(str(text))[0] == ["one", "two"]
    assert read_csv_examples(table, ("sent0", "sent1"))[0] == [("a", "b")]
    assert file_format(table, "pairs") == "csv"


@case
def experiment_cache(ctx: Ctx) -> None:
    from simcse.config import TrainConfig
    from simcse.experiments import RESULT_FILE, run_experiment

    (ctx.tmp / "cache").mkdir()
    (ctx.tmp / "cache" / RESULT_FILE).write_text(json.dumps({"suite": {"avg": 1.0}}), encoding="utf-8")
    cfg = TrainConfig(model_name_or_path="unused", output_dir=ctx.tmp / "run")
    assert run_experiment(cfg, ctx.tmp / "cache", train_fn=None) == {"suite": {"avg": 1.0}}


# ---------------------------------------------------------------- the CLI's helpers
@case
def cli_helpers(ctx: Ctx) -> None:
    from simcse.cli.common import load_encoder, read_lines
    from simcse.cli.encode import write_embeddings
    from simcse.mining import write_triplets

    lines = ctx.tmp / "lines.txt"
    lines.write_text("\n".join(SENTENCES) + "\n", encoding="utf-8")
    assert read_lines(lines) == SENTENCES
    encoder = load_encoder(Path(ctx.model), "avg", "cpu")
    emb = encoder.encode(SENTENCES)
    write_embeddings(ctx.tmp / "e.npy", SENTENCES, emb)
    np.testing.assert_array_equal(np.load(ctx.tmp / "e.npy"), emb)
    write_embeddings(ctx.tmp / "e.jsonl", SENTENCES, emb)
    assert [json.loads(r)["text"] for r in (ctx.tmp / "e.jsonl").read_text().splitlines()] == SENTENCES
    write_triplets(ctx.tmp / "t.csv", [("a", "b", "c")])
    assert (ctx.tmp / "t.csv").read_text() == "sent0,sent1,hard_neg\na,b,c\n"


@pytest.fixture(scope="module")
def path_encoder(tiny_model_dir: str):
    from simcse import Encoder

    return Encoder.from_pretrained(tiny_model_dir, pooler="avg", device="cpu").eval()


@pytest.mark.parametrize("name", sorted(CASES))
def test_paths_accept_pathlike(name: str, tiny_model_dir, small_dev_data, tmp_path, path_encoder) -> None:
    CASES[name](Ctx(tiny_model_dir, small_dev_data, tmp_path, path_encoder))
