"""Pair classification: pairs labelled 1 (duplicate, paraphrase) or 0, scored by similarity.

For each similarity (``cosine``; ``dot`` too for encoders whose vectors are not normalised) it reports
average precision (threshold-free), the accuracy at the best threshold, and the F1 at the best threshold
with that threshold's precision and recall: sentence-transformers' BinaryClassificationEvaluator's
definitions (a pair is predicted 1 when its score is at least the threshold; thresholds lie halfway
between consecutive distinct scores; the first best one is kept), so the numbers compare. Alignment is
over the pairs labelled 1, uniformity over every distinct sentence.

Data: columns ``sentence1``, ``sentence2``, ``label`` (0/1) in a CSV, TSV, JSON lines or Parquet file or a
hub dataset (see :func:`~simcse.evaluation.tables.read_columns`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcse.evaluation.base import align_uniform, encode_texts, prefixed
from simcse.evaluation.tables import EvalDataError, label_value, read_columns, text_value

SIMILARITIES = ("cosine", "dot")


@dataclass(frozen=True)
class LabelledPairs:
    """Sentence pairs with 0/1 labels."""

    sentences1: tuple[str, ...]
    sentences2: tuple[str, ...]
    labels: np.ndarray  # (n,) int64, 0 or 1


def load_labelled_pairs(
    path: str | os.PathLike | None = None, *, columns: Mapping[str, str] | None = None, **source: Any
) -> LabelledPairs:
    """Read ``sentence1``, ``sentence2``, ``label`` columns (``columns`` maps other spellings to these).

    Raises:
        EvalDataError: A row lacks a sentence, a label is not 0 or 1, or one label never occurs.
    """
    s1, s2, labels = [], [], []
    for where, row in read_columns(path, ("sentence1", "sentence2", "label"), columns=columns, **source):
        s1.append(text_value(where, "sentence1", row["sentence1"]))
        s2.append(text_value(where, "sentence2", row["sentence2"]))
        labels.append(label_value(where, "label", row["label"]))
    if len(set(labels)) < 2:
        raise EvalDataError(
            f"{source.get('dataset') or path}: every label is {labels[0]}; pairs of both labels are needed"
        )
    return LabelledPairs(tuple(s1), tuple(s2), np.asarray(labels, dtype=np.int64))


def classification_metrics(scores: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """Average precision, best-threshold accuracy and F1 (with precision, recall, thresholds) of ``scores``.

    Args:
        scores: ``(n,)`` similarities, higher meaning more likely label 1.
        labels: ``(n,)`` 0/1, both present.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order].astype(np.float64)
    n, positives = len(y), y.sum()
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # last index of each run of equal scores
    tp, taken = np.cumsum(y)[ends], ends + 1.0  # predicted 1 = every pair down to this run
    nxt = np.r_[s[ends[:-1] + 1], np.nan]
    thresholds = np.where(np.isnan(nxt), s[ends], (s[ends] + np.nan_to_num(nxt)) / 2)  # halfway to the next run
    thresholds = np.where(thresholds == nxt, s[ends], thresholds)  # no float halfway: the run's own score
    accuracy = (tp + (n - positives) - (taken - tp)) / n
    best_acc = int(np.argmax(accuracy))
    precision, recall = tp / taken, tp / positives
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * precision * recall / (precision + recall), 0.0)
    best_f1 = int(np.argmax(f1))
    out = {"accuracy": (n - positives) / n, "accuracy_threshold": float(np.nextafter(s[0], np.inf))}
    if accuracy[best_acc] > out["accuracy"]:  # else: predict 0 for every pair, threshold above every score
        out = {"accuracy": accuracy[best_acc], "accuracy_threshold": thresholds[best_acc]}
    out.update(f1=f1[best_f1], f1_threshold=thresholds[best_f1], precision=precision[best_f1], recall=recall[best_f1])
    if f1[best_f1] == 0:
        out.update(f1_threshold=0.0, precision=0.0, recall=0.0)
    out["ap"] = float(np.sum(np.diff(np.r_[0.0, recall]) * precision))
    return {k: float(v) for k, v in out.items()}


class PairClassificationEvaluator:
    """Average precision, accuracy and F1 at the best threshold (see the module's notes).

    Args:
        pairs: The labelled pairs.
        name: Prefix of the metric names (``<name>/cosine_ap``).
        similarity: Similarities scored, among ``cosine`` and ``dot``.
    """

    def __init__(
        self, pairs: LabelledPairs, name: str = "pair_classification", *, similarity: Sequence[str] = ("cosine",)
    ) -> None:
        unknown = [s for s in similarity if s not in SIMILARITIES]
        if unknown or not similarity:
            raise ValueError(
                f"similarity: {', '.join(unknown) or 'none given'}; choose among {', '.join(SIMILARITIES)}"
            )
        self.pairs, self.name, self.similarity = pairs, name, tuple(dict.fromkeys(similarity))
        self.texts = list(dict.fromkeys((*pairs.sentences1, *pairs.sentences2)))
        where = {t: i for i, t in enumerate(self.texts)}
        self.first = np.array([where[t] for t in pairs.sentences1])
        self.second = np.array([where[t] for t in pairs.sentences2])

    def metric_names(self) -> list[str]:
        """Every key the call returns."""
        keys = ["accuracy", "accuracy_threshold", "f1", "f1_threshold", "precision", "recall", "ap"]
        return [f"{self.name}/{s}_{k}" for s in self.similarity for k in keys] + [
            f"{self.name}/alignment",
            f"{self.name}/uniformity",
        ]

    def __call__(self, encoder: Any, batch_size: int = 128, **encode_kwargs: Any) -> dict[str, float]:
        """Encode each distinct sentence once (split between processes) and score every pair."""
        vectors = encode_texts(encoder, self.texts, batch_size, encode_kwargs).astype(np.float64)  # (n_texts, dim)
        a, b = vectors[self.first], vectors[self.second]  # (n_pairs, dim) each
        out: dict[str, float] = {}
        for sim in self.similarity:
            scores = (a * b).sum(axis=1)
            if sim == "cosine":
                scores = scores / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
            out.update({f"{sim}_{k}": v for k, v in classification_metrics(scores, self.pairs.labels).items()})
        positive = self.pairs.labels == 1
        out.update(
            align_uniform(a[positive].astype(np.float32), b[positive].astype(np.float32), vectors.astype(np.float32))
        )
        return prefixed(self.name, out)
