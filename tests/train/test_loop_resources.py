"""A ``train()`` that raises gives back what it took: SIGTERM's previous handler, the progress bar, the batches.

A second ``train()`` in the same process (a notebook, ``--seeds``) must not inherit the first one's SIGTERM
handler, which would swallow a pre-emption; a stream's reading thread must stop with its run.
"""

from __future__ import annotations

import signal
import threading
import time

import pytest

from simcse.train import load_config, train
from simcse.train.step import TrainStep
from tests.helpers.data import write_corpus


@pytest.mark.parametrize("streaming", [False, True], ids=["map", "stream"])
def test_a_failed_train_gives_back_sigterm_its_bar_and_its_batches(
    tiny_model_dir, small_dev_data, tmp_path, monkeypatch, streaming
) -> None:
    from tqdm import auto

    bars = []

    class Recorded(auto.tqdm):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            bars.append(self)

    monkeypatch.setattr(auto, "tqdm", Recorded)
    monkeypatch.delenv("TQDM_DISABLE", raising=False)  # the bar on, as a user sees it

    def failing_step(self, *args, **kwargs):
        raise RuntimeError("the step failed")

    monkeypatch.setattr(TrainStep, "__call__", failing_step)
    corpus = str(tmp_path / "corpus.txt")
    write_corpus(corpus, n=64)
    cfg = load_config(None, {
        "model_name_or_path": tiny_model_dir, "train_file": corpus, "data_dir": small_dev_data, "batch_size": 8,
        "max_seq_len": 16, "max_steps": 4, "eval_steps": 4, "streaming": streaming, "output_dir": str(tmp_path / "run"),
    })  # fmt: skip

    def own_handler(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, own_handler)
    try:
        with pytest.raises(RuntimeError, match="the step failed"):
            train(cfg)
        assert signal.getsignal(signal.SIGTERM) is own_handler  # given back, not train()'s
    finally:
        signal.signal(signal.SIGTERM, previous)
    train_bars = [bar for bar in bars if getattr(bar, "desc", None) == "train"]
    assert len(train_bars) == 1 and train_bars[0].disable  # closed (tqdm.close() disables the bar)
    deadline = time.monotonic() + 5
    while any(t.name == "simcse-stream" for t in threading.enumerate()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(t.name == "simcse-stream" for t in threading.enumerate())  # the stream's reader stopped
