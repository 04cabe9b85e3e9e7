"""STS task registry and loaders, faithful to SentEval's input handling.

SentEval splits every sentence on whitespace and re-joins it with single spaces, and skips pairs
whose gold line is empty (STS16 has many). The loaders below do the same, so scores compare with
the SimCSE paper. Data lives in SentEval's "downloaded" layout under the data directory.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from simcse.data_dir import DOWNLOAD_HINT, senteval_dir
from simcse.evaluation.tables import FORMATS, number_value, read_columns, text_value
from simcse.io import StrPath

STS_SUBSETS: dict[str, tuple[str, ...]] = {
    "STS12": ("MSRpar", "MSRvid", "SMTeuroparl", "surprise.OnWN", "surprise.SMTnews"),
    "STS13": ("FNWN", "headlines", "OnWN"),
    "STS14": ("deft-forum", "deft-news", "headlines", "images", "OnWN", "tweet-news"),
    "STS15": ("answers-forums", "answers-students", "belief", "headlines", "images"),
    "STS16": ("answer-answer", "headlines", "plagiarism", "postediting", "question-question"),
}
TASKS: tuple[str, ...] = (*STS_SUBSETS, "STSBenchmark", "SICKRelatedness")
# the SimCSE paper's table columns, in order
PAPER_COLUMNS: dict[str, str] = {
    "STS12": "STS12", "STS13": "STS13", "STS14": "STS14", "STS15": "STS15", "STS16": "STS16",
    "STSBenchmark": "STS-B", "SICKRelatedness": "SICK-R",
}  # fmt: skip
SICK_FILES = {"train": "SICK_train.txt", "dev": "SICK_trial.txt", "test": "SICK_test_annotated.txt"}
STSB_FILES = {"train": "sts-train.csv", "dev": "sts-dev.csv", "test": "sts-test.csv"}


class STSDataError(ValueError):
    """A malformed STS file; the message names the file, line and problem."""


@dataclass(frozen=True)
class STSPairs:
    """Scored sentence pairs of one subset (or split)."""

    name: str
    sentences1: tuple[str, ...]
    sentences2: tuple[str, ...]
    scores: np.ndarray  # (n,) gold similarity

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class STSTask:
    """A task scored on one or more subsets (STS12-16 have several; the rest have one)."""

    name: str
    subsets: tuple[STSPairs, ...]


def _senteval_text(sentence: str) -> str:
    return " ".join(sentence.split())


def _read_lines(path: str) -> list[str]:
    if not os.path.isfile(path):
        hint = "" if os.path.exists(path) else f"; {DOWNLOAD_HINT}"
        kind = "is not a file" if os.path.exists(path) else "not found"
        raise FileNotFoundError(f"{path}: {kind}{hint}")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise STSDataError(f"{path}:{line}: invalid UTF-8 ({err.reason})") from None
    return text.splitlines()


def _score(text: str, path: str, line: int, low: float = 0.0, high: float = 5.0) -> float:
    try:
        value = float(text)
    except ValueError:
        raise STSDataError(f"{path}:{line}: score {text!r} is not a number") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise STSDataError(f"{path}:{line}: score {value} is outside [{low}, {high}]")
    return value


def _pairs(name: str, s1: list[str], s2: list[str], scores: list[float]) -> STSPairs:
    return STSPairs(
        name,
        tuple(_senteval_text(s) for s in s1),
        tuple(_senteval_text(s) for s in s2),
        np.asarray(scores, dtype=np.float64),
    )


def load_sts_year(task: str, root: StrPath) -> STSTask:
    """Load STS12-16: ``STS.input.<subset>.txt`` pairs, ``STS.gs.<subset>.txt`` gold (empty = skipped)."""
    folder = os.path.join(root, "STS", f"{task}-en-test")
    subsets = []
    for subset in STS_SUBSETS[task]:
        in_path = os.path.join(folder, f"STS.input.{subset}.txt")
        gs_path = os.path.join(folder, f"STS.gs.{subset}.txt")
        inputs, golds = _read_lines(in_path), _read_lines(gs_path)
        if len(inputs) != len(golds):
            raise STSDataError(f"{gs_path}: {len(golds)} gold lines for {len(inputs)} pairs in {in_path}")
        s1, s2, scores = [], [], []
        for i, (pair, gold) in enumerate(zip(inputs, golds), start=1):
            if gold.strip() == "":
                continue
            cols = pair.split("\t")
            if len(cols) < 2:
                raise STSDataError(f"{in_path}:{i}: expected 2 tab-separated sentences, found {len(cols)}")
            s1.append(cols[0])
            s2.append(cols[1])
            scores.append(_score(gold.strip(), gs_path, i))
        subsets.append(_pairs(subset, s1, s2, scores))
    return STSTask(task, tuple(subsets))


def load_stsb(root: StrPath, split: str = "test") -> STSTask:
    """Load STS-B (``sts-<split>.csv``, tab-separated; columns 5-7 are score, sentence1, sentence2)."""
    path = os.path.join(root, "STS", "STSBenchmark", STSB_FILES[split])
    s1, s2, scores = [], [], []
    for i, line in enumerate(_read_lines(path), start=1):
        cols = line.strip().split("\t")
        if len(cols) < 7:
            raise STSDataError(f"{path}:{i}: expected at least 7 tab-separated columns, found {len(cols)}")
        s1.append(cols[5])
        s2.append(cols[6])
        scores.append(_score(cols[4], path, i))
    return STSTask("STSBenchmark", (_pairs(split, s1, s2, scores),))


def load_sick(root: StrPath, split: str = "test") -> STSTask:
    """Load SICK relatedness (header line skipped; columns 2-4: sentence_A, sentence_B, score 1-5).

    ``split="full"`` concatenates train, trial and test (9,927 pairs), as MTEB scores SICK-R.
    """
    splits = ("train", "dev", "test") if split == "full" else (split,)
    s1, s2, scores = [], [], []
    for part in splits:
        path = os.path.join(root, "SICK", SICK_FILES[part])
        for i, line in enumerate(_read_lines(path)[1:], start=2):
            cols = line.strip().split("\t")
            if len(cols) < 4:
                raise STSDataError(f"{path}:{i}: expected at least 4 tab-separated columns, found {len(cols)}")
            s1.append(cols[1])
            s2.append(cols[2])
            scores.append(_score(cols[3], path, i, 1.0, 5.0))
    return STSTask("SICKRelatedness", (_pairs(split, s1, s2, scores),))


def load_custom(path: StrPath, low: float = 0.0, high: float = 5.0) -> STSTask:
    """Load a custom file of ``sentence1<TAB>sentence2<TAB>score`` lines (no header; blank lines skipped)."""
    path = os.fspath(path)
    if not os.path.isfile(path):  # checked here: _read_lines' hint about downloading data would mislead
        kind = "STS file not found" if not os.path.exists(path) else "not a file"
        kind = "is a directory, expected a file" if os.path.isdir(path) else kind
        raise FileNotFoundError(f"{path}: {kind}")
    s1, s2, scores = [], [], []
    for i, line in enumerate(_read_lines(path), start=1):
        if not line.strip():
            continue
        cols = line.split("\t")
        if len(cols) != 3:
            raise STSDataError(f"{path}:{i}: expected 3 tab-separated columns, found {len(cols)}")
        if not cols[0].strip() or not cols[1].strip():
            raise STSDataError(f"{path}:{i}: empty sentence")
        s1.append(cols[0])
        s2.append(cols[1])
        scores.append(_score(cols[2].strip(), path, i, low, high))
    if not scores:
        raise STSDataError(f"{path}: no scored pairs (file is empty or blank)")
    name = os.path.splitext(os.path.basename(path))[0]
    return STSTask(name, (_pairs(name, s1, s2, scores),))


def load_scored_pairs(
    path: StrPath | None = None, *, columns: Mapping[str, str] | None = None, **source: Any
) -> STSTask:
    """Scored pairs from a custom ``.tsv``/``.txt`` file (:func:`load_custom`), or from named columns.

    Args:
        path: The file: ``.tsv``/``.txt`` without ``columns`` is the headerless custom format; otherwise
            ``sentence1``, ``sentence2``, ``score`` columns (any finite scores) of a CSV, TSV, JSON lines or
            Parquet file (see :func:`~simcse.evaluation.tables.read_columns`).
        columns: The file's names for ``sentence1``, ``sentence2``, ``score``, where they differ.
        **source: ``dataset``, ``config``, ``split``: a hub dataset instead of ``path``.
    """
    if path is not None and os.fspath(path).endswith((".tsv", ".txt")) and columns is None:
        return load_custom(os.fspath(path))
    s1, s2, scores = [], [], []
    for where, row in read_columns(path, ("sentence1", "sentence2", "score"), columns=columns, **source):
        s1.append(text_value(where, "sentence1", row["sentence1"]))
        s2.append(text_value(where, "sentence2", row["sentence2"]))
        scores.append(number_value(where, "score", row["score"]))
    name = source.get("dataset") or os.path.splitext(os.path.basename(os.fspath(path or "")))[0]
    return STSTask(name, (_pairs(name, s1, s2, scores),))


def load_task(
    task: StrPath, data_dir: StrPath | None = None, stsb_split: str = "test", sick_mode: str = "test"
) -> STSTask:
    """Load a task by name (see :data:`TASKS`) or a custom STS file path.

    Args:
        task: ``STS12``...``STS16``, ``STSBenchmark``, ``SICKRelatedness`` or a file path (see
            :func:`load_scored_pairs`).
        data_dir: Data directory (see :func:`simcse.data_dir.resolve_data_dir`).
        stsb_split: ``dev`` or ``test`` (or ``train``) for STS-B.
        sick_mode: ``test`` (SentEval), ``dev`` (the trial split) or ``full`` (MTEB: all 9,927 pairs).
    """
    task = os.fspath(task)
    if task in STS_SUBSETS:
        return load_sts_year(task, senteval_dir(data_dir))
    if task == "STSBenchmark":
        if stsb_split not in STSB_FILES:
            raise ValueError(f"STS-B split must be one of {sorted(STSB_FILES)}, got {stsb_split!r}")
        return load_stsb(senteval_dir(data_dir), stsb_split)
    if task == "SICKRelatedness":
        if sick_mode not in (*SICK_FILES, "full"):
            raise ValueError(f"SICK mode must be one of train, dev, test, full; got {sick_mode!r}")
        return load_sick(senteval_dir(data_dir), sick_mode)
    if task.endswith(tuple(FORMATS)):
        return load_scored_pairs(task)
    if os.path.exists(task) or os.sep in task or task.endswith((".tsv", ".txt")):
        return load_custom(task)
    raise ValueError(f"unknown task {task!r}; choose from {', '.join(TASKS)} or give an STS file path")
