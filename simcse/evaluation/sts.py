"""STS as an evaluator: a built-in task (SentEval's protocol) or the user's own scored pairs.

Scored pairs come from the custom file ``simcse eval --tasks`` reads (``.tsv`` / ``.txt``: ``sentence1<TAB>
sentence2<TAB>score`` lines, no header, scores 0-5) or from named columns ``sentence1``, ``sentence2``,
``score`` in a CSV, JSON lines or Parquet file or a hub dataset (any finite scores). The metric is
Spearman x 100 of the cosine (the paper's headline: STS12-16 pool their subsets). Alignment is over the
pairs scored in the top fifth of the scale (above 4 of 0-5, as Gao et al. take STS-B's positives),
uniformity over every distinct sentence of the task.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from simcse.evaluation.base import align_uniform, encode_texts, prefixed
from simcse.evaluation.metrics import aggregate, cosine_pairs
from simcse.evaluation.scoring import headline
from simcse.evaluation.tasks import STS_SUBSETS, TASKS, STSPairs, STSTask, load_task

# the scale of each built-in task's gold scores
SCALES: dict[str, tuple[float, float]] = {**{t: (0.0, 5.0) for t in TASKS}, "SICKRelatedness": (1.0, 5.0)}
SHORT_NAMES = {"STSBenchmark": "stsb", "SICKRelatedness": "sickr", **{t: t.lower() for t in STS_SUBSETS}}


def builtin_name(task: str, split: str | None = None) -> str:
    """The evaluator name of a built-in task (the prefix of its metrics): ``stsb_dev``, ``sickr``, ``sts12``."""
    return SHORT_NAMES.get(task, str(task).lower()) + (f"_{split}" if split else "")


class STSEvaluator:
    """Spearman x 100 of cosine similarity against gold scores, with alignment and uniformity.

    Args:
        task: The pairs (from :func:`~simcse.evaluation.tasks.load_task` or ``load_scored_pairs``).
        name: Prefix of the metric names (``<name>/spearman``).
        scale: ``(lowest, highest)`` possible score: pairs above 80% of it are the positives of alignment.
            Default: the task's known scale, else the lowest and highest score found.
    """

    def __init__(self, task: STSTask, name: str = "sts", *, scale: tuple[float, float] | None = None) -> None:
        self.task, self.name = task, name
        gold = np.concatenate([s.scores for s in task.subsets])
        low, high = scale or SCALES.get(task.name, (float(gold.min()), float(gold.max())))
        self.positive_above = low + 0.8 * (high - low)
        self.texts = list(dict.fromkeys(t for s in task.subsets for t in (*s.sentences1, *s.sentences2)))

    @classmethod
    def builtin(
        cls, task: str, split: str | None = None, data_dir: str | None = None, name: str | None = None
    ) -> STSEvaluator:
        """A built-in task (:data:`~simcse.evaluation.tasks.TASKS`); ``split``: STS-B's ``dev``/``test``/``train``,
        SICK-R's ``dev``/``test``/``train``/``full`` (default ``test``; STS12-16 have only test)."""
        if task not in TASKS:
            raise ValueError(f"unknown STS task {task!r}; choose from {', '.join(TASKS)} (or give a path)")
        if task in STS_SUBSETS and split not in (None, "test"):
            raise ValueError(f"{task} has only a test split, got {split!r}")
        loaded = load_task(task, data_dir, stsb_split=split or "test", sick_mode=split or "test")
        return cls(loaded, name or builtin_name(task, split))

    def metric_names(self) -> list[str]:
        """Every key the call returns."""
        return [f"{self.name}/{k}" for k in ("spearman", "alignment", "uniformity")]

    def __call__(self, encoder: Any, batch_size: int = 128, **encode_kwargs: Any) -> dict[str, float]:
        """Encode each distinct sentence once (split between processes) and score every subset."""
        vectors = encode_texts(encoder, self.texts, batch_size, encode_kwargs)  # (n_texts, dim)
        where = {t: i for i, t in enumerate(self.texts)}
        per_subset: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        first, second = [], []
        for sub in self.task.subsets:
            i1, i2 = _indices(sub, where)
            cos = np.where(i1 == i2, 1.0, cosine_pairs(vectors[i1], vectors[i2]))  # identical sentences: exactly 1
            per_subset[sub.name] = (sub.scores, cos)
            keep = sub.scores > self.positive_above
            first.append(i1[keep])
            second.append(i2[keep])
        scores = aggregate(per_subset)
        out = {"spearman": headline(self.task, scores)}
        out.update(align_uniform(vectors[np.concatenate(first)], vectors[np.concatenate(second)], vectors))
        return prefixed(self.name, out)


def _indices(sub: STSPairs, where: Mapping[str, int]) -> tuple[np.ndarray, np.ndarray]:
    return np.array([where[s] for s in sub.sentences1]), np.array([where[s] for s in sub.sentences2])
