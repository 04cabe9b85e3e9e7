"""The dev evaluators that select the best model during training, and how a metric is compared.

By default training scores the paper's dev sets (:class:`DevEvaluator`: STS-B dev and SICK-R dev Spearman,
alignment and uniformity, named ``stsb_dev``, ``sickr_dev``, ``alignment``, ``uniformity`` in
``metrics.jsonl``) and keeps the model with the best ``stsb_dev``. A config may list its own evaluators
instead (the specs of :func:`simcse.evaluation.evaluators.build_evaluators`) and name the metric that selects
(``metric_for_best``, e.g. ``retrieval/ndcg@10``); :func:`dev_evaluators` builds them and refuses a metric
that none of them reports, before any training. Every evaluator splits its encoding across processes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from simcse.data_dir import senteval_dir
from simcse.evaluation.base import Evaluator, encode_texts
from simcse.evaluation.evaluators import build_evaluators
from simcse.evaluation.scoring import evaluate_sts
from simcse.evaluation.sizes import TruncatingEncoder
from simcse.evaluation.tasks import load_sick, load_stsb
from simcse.io import StrPath

DEV_METRICS = ("stsb_dev", "sickr_dev", "alignment", "uniformity")  # the default's, in metrics.jsonl
LOWER_IS_BETTER = ("alignment", "uniformity")  # metric names (the part after the last '/') where lower wins


class DevEvaluator:
    """STS-B dev (and SICK-R dev) Spearman with alignment/uniformity, files read once; the training default.

    An :class:`~simcse.evaluation.base.Evaluator` whose metric names carry no prefix (as the paper's runs
    record them). Under several processes each encodes a share of the sentences.

    Args:
        data_dir: The data directory (``None``: ``$SIMCSE_DATA_DIR``, else ``./data``).
        batch_size: Sentences per encoding batch (when the call gives none).
        truncate_dims: Also score STS-B dev on the first ``d`` dimensions of the vectors, for each ``d``
            (``stsb_dev@<d>``: a Matryoshka run's trained sizes); the sentences are encoded once.
    """

    name = "dev"

    def __init__(
        self, data_dir: StrPath | None, batch_size: int = 128, truncate_dims: Sequence[int] | None = None
    ) -> None:
        root = senteval_dir(data_dir)  # resolved once: both tasks read the same SentEval folder
        self.tasks = {"STSBenchmark": load_stsb(root, "dev"), "SICKRelatedness": load_sick(root, "dev")}
        self.batch_size, self.truncate_dims = batch_size, [int(d) for d in truncate_dims or ()]

    def metric_names(self) -> list[str]:
        """Every key the call returns."""
        return list(DEV_METRICS) + [f"stsb_dev@{d}" for d in self.truncate_dims]

    def __call__(self, encoder: Any, batch_size: int | None = None, **encode_kwargs: Any) -> dict[str, float]:
        """Score ``encoder`` (left in its previous train/eval mode); ``encode_kwargs`` such as ``use_head``."""
        size = batch_size or self.batch_size
        memo: dict = {}
        # with sizes to score, the full vectors are kept for them (each sentence encoded once)
        full = TruncatingEncoder(encoder, encoder.dim, memo) if self.truncate_dims else encoder
        result = evaluate_sts(
            lambda s: encode_texts(full, s, size, encode_kwargs),
            tasks=list(self.tasks),
            loaded=self.tasks,
            stsb_split="dev",
        )
        out = {
            "stsb_dev": result["tasks"]["STSBenchmark"]["score"],
            "sickr_dev": result["tasks"]["SICKRelatedness"]["score"],
            "alignment": result["alignment"],
            "uniformity": result["uniformity"],
        }
        for dim in self.truncate_dims:
            cut = TruncatingEncoder(encoder, dim, memo)
            sized = evaluate_sts(
                lambda s, cut=cut: encode_texts(cut, s, size, encode_kwargs),
                tasks=["STSBenchmark"], loaded=self.tasks, stsb_split="dev", align_uniform=False,
            )  # fmt: skip
            out[f"stsb_dev@{dim}"] = sized["tasks"]["STSBenchmark"]["score"]
        return out


def dev_evaluators(
    specs: Sequence[Mapping[str, Any]] | None,
    metric: str,
    data_dir: StrPath | None = None,
    batch_size: int = 128,
    truncate_dims: Sequence[int] | None = None,
) -> list[Evaluator]:
    """The evaluators a run scores at each evaluation; their data read and checked now.

    Args:
        specs: Evaluator specs (see :mod:`simcse.evaluation.evaluators`); None: :class:`DevEvaluator`.
        metric: The metric that selects the best model; one of the evaluators must report it.
        data_dir: The data directory (built-in STS tasks).
        batch_size: The default's encoding batch size.
        truncate_dims: The default's extra sizes (``stsb_dev@<d>``, a Matryoshka run's).

    Raises:
        ValueError: A bad spec, bad data (one line naming the file and line), or ``metric`` reported by none.
    """
    data_dir = None if data_dir is None else str(data_dir)
    evaluators: list[Evaluator] = (
        [DevEvaluator(data_dir, batch_size, truncate_dims)] if specs is None else build_evaluators(specs, data_dir)
    )
    known = [name for e in evaluators for name in e.metric_names()]
    if metric not in known:
        raise ValueError(
            f"metric_for_best {metric!r} is reported by no dev evaluator; "
            f"choose one of {', '.join(known)}" + (" (or give dev_evaluators)" if specs is None else "")
        )
    return evaluators


def metric_label(metric: str) -> str:
    """How logs and summaries name the selecting metric: the paper's "STS-B dev" for ``stsb_dev``, else as is."""
    return "STS-B dev" if metric == "stsb_dev" else metric


def best_text(metric: str, value: float) -> str:
    """``"STS-B dev 81.23"`` (Spearman x 100, 2 decimals) or ``"<metric> 0.9341"`` (4 significant digits)."""
    return f"{metric_label(metric)} {value:.2f}" if metric == "stsb_dev" else f"{metric} {value:.4g}"


def lower_is_better(metric: str) -> bool:
    """Whether a lower value of ``metric`` is better (alignment and uniformity); higher wins otherwise."""
    return metric.rsplit("/", 1)[-1] in LOWER_IS_BETTER


def improves(value: float, best: float | None, metric: str) -> bool:
    """Whether ``value`` of ``metric`` beats ``best`` (None: nothing kept yet); NaN never does, ties keep the old."""
    if math.isnan(value):
        return False
    lower = lower_is_better(metric)
    if best is None:
        best = math.inf if lower else -math.inf
    return value < best if lower else value > best
