"""Scoring at several vector sizes: the same as scoring ``encode(truncate_dim=d)`` one size at a time."""

from __future__ import annotations

import pytest

from simcse.evaluation.dev import DevEvaluator
from simcse.evaluation.evaluators import build_evaluator


class _Cut:
    """The reference: every call encodes again, cut by the encoder's own ``truncate_dim``."""

    def __init__(self, encoder, dim):
        self.encoder, self.dim, self.prompts = encoder, dim, encoder.prompts

    def encode(self, texts, **kwargs):
        return self.encoder.encode(texts, truncate_dim=self.dim, **kwargs)


def test_an_evaluator_at_sizes_scores_what_encode_truncate_dim_gives(spread_model_dir, small_dev_data):
    from simcse import Encoder

    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    spec = {"type": "sts", "task": "STSBenchmark", "split": "dev"}
    sized = build_evaluator({**spec, "truncate_dims": [32, 8]}, small_dev_data)
    got = sized(encoder, 64)
    assert sized.metric_names() == list(got) and "stsb_dev@8/spearman" in got
    plain = build_evaluator(spec, small_dev_data)
    for d in (32, 8):
        want = plain(_Cut(encoder, d), 64)
        assert {k.replace("stsb_dev/", f"stsb_dev@{d}/"): v for k, v in want.items()} == pytest.approx(
            {k: v for k, v in got.items() if k.startswith(f"stsb_dev@{d}/")}, abs=1e-6
        )
    assert got["stsb_dev@8/spearman"] != got["stsb_dev@32/spearman"]


def test_the_training_dev_evaluator_scores_each_trained_size(spread_model_dir, small_dev_data):
    from simcse import Encoder

    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    result = DevEvaluator(small_dev_data, 64, truncate_dims=[32, 4])(encoder, use_head=True)
    assert result["stsb_dev@32"] == pytest.approx(result["stsb_dev"], abs=1e-9)
    plain = DevEvaluator(small_dev_data, 64)(_Cut(encoder, 4), use_head=True)
    assert result["stsb_dev@4"] == pytest.approx(plain["stsb_dev"], abs=1e-9)


def test_a_matryoshka_run_may_select_by_a_trained_size(spread_model_dir, small_dev_data):
    """The default dev evaluator names its sizes' metrics, so ``metric_for_best: stsb_dev@4`` is accepted at
    start (and a size that was not trained is refused, naming the ones there are)."""
    from simcse import Encoder
    from simcse.evaluation.dev import dev_evaluators

    (dev,) = dev_evaluators(None, "stsb_dev@4", small_dev_data, 64, truncate_dims=[32, 4])
    assert dev.metric_names() == ["stsb_dev", "sickr_dev", "alignment", "uniformity", "stsb_dev@32", "stsb_dev@4"]
    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    assert list(dev(encoder, use_head=True)) == dev.metric_names()
    with pytest.raises(ValueError, match="'stsb_dev@8' is reported by no dev evaluator; choose one of .*stsb_dev@4"):
        dev_evaluators(None, "stsb_dev@8", small_dev_data, 64, truncate_dims=[32, 4])
