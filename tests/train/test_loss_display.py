"""The training loss is shown with significant digits (issue 27): a strong model's contrastive loss is often
below 5e-5, which ``loss=0.0000`` hid for whole runs, in the progress bar and on the curves' axis."""

from __future__ import annotations

import io
import json
import os
import re

import pytest

from simcse import plots
from simcse.config import load_config
from tests.helpers.data import write_corpus


def test_bar_postfix_has_four_significant_digits() -> None:
    from tqdm import tqdm

    from simcse.train.loop import _show

    out = io.StringIO()
    bar = tqdm(total=10, file=out, mininterval=0)
    for loss, shown in ((3e-5, "3e-05"), (2.302585, "2.303"), (1.23456e-7, "1.235e-07"), (0.012341, "0.01234")):
        _show(bar, {"loss": loss, "stsb_dev": 81.234}, 1)
        assert bar.postfix == f"loss={shown}, stsb_dev=81.23"
        assert f"loss={shown}" in out.getvalue()  # what the terminal (or a captured log) shows
    bar.close()


def test_a_tiny_training_loss_shows_its_digits_in_the_bar(
    tiny_model_dir, small_dev_data, tmp_path, capsys, monkeypatch
) -> None:
    """End to end: identical views (no dropout) at temperature 0.003 drive the loss below 5e-5 in 3 steps."""
    from simcse.train import train

    corpus = str(tmp_path / "corpus.txt")
    write_corpus(corpus, n=64)
    cfg = load_config(None, {
        "model_name_or_path": tiny_model_dir, "train_file": corpus, "batch_size": 8, "max_seq_len": 16,
        "output_dir": str(tmp_path / "run"), "max_steps": 3, "eval_steps": 3, "learning_rate": 1e-5, "dropout": 0.0,
        "temperature": 0.003, "pooler": "avg", "data_dir": small_dev_data, "eval_batch_size": 64,
    })  # fmt: skip
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the bar on, as a user sees it
    train(cfg)
    with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
        last = [json.loads(line) for line in f][-1]
    assert 0 < last["loss"] < 5e-5, "the run must reach a loss that four decimals show as 0.0000"
    shown = re.findall(r"loss=([^,\s\]]+)", capsys.readouterr().err)
    assert shown, "no progress bar on stderr"
    assert shown[-1] == f"{last['loss']:.4g}" and float(shown[-1]) == pytest.approx(last["loss"], rel=5e-4)


def _loss_axes(monkeypatch: pytest.MonkeyPatch, losses: list[float]):
    figures = []
    monkeypatch.setattr(plots, "_save", lambda fig, path: figures.append(fig))
    plots.plot_training_curves([{"step": i + 1, "loss": v} for i, v in enumerate(losses)], "unused.png")
    ax = figures[0].axes[0]
    assert ax.get_title().startswith("training loss")
    return ax


def test_loss_axis_is_logarithmic_when_the_loss_falls_by_decades(monkeypatch) -> None:
    losses = [2.3 * 0.7**i for i in range(30)] + [3e-5] * 3  # 2.3 down to 3e-5
    ax = _loss_axes(monkeypatch, losses)
    low, high = ax.get_ylim()
    assert ax.get_yscale() == "log" and low <= 3e-5 < 1e-4 < 2.3 <= high  # 3e-5 has its own decade
    assert "3e-05" in [t.get_text() for t in ax.texts]  # the last value, written out


def test_loss_axis_stays_linear_within_a_decade_and_for_negative_losses(monkeypatch) -> None:
    ax = _loss_axes(monkeypatch, [4e-5, 3.5e-5, 3e-5])
    ax.figure.canvas.draw()
    assert ax.get_yscale() == "linear" and ax.get_ylim()[0] <= 3e-5 <= ax.get_ylim()[1]
    assert ax.yaxis.get_offset_text().get_text().replace("\N{MINUS SIGN}", "-") == "1e-5"  # ticks x 1e-5
    assert "3e-05" in [t.get_text() for t in ax.texts]
    assert _loss_axes(monkeypatch, [-0.5, -0.9]).get_yscale() == "linear"  # simsiam's negative cosine
