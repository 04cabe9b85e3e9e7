"""Training data: read and validate rows, tokenize once, batch views for one forward pass.

Unsupervised data is a text file, one sentence per line (blank lines skipped and counted).
Supervised data is a CSV whose header names ``sent0,sent1`` (pairs) or ``sent0,sent1,hard_neg``
(triplets); the mode comes from the config and is checked against the header.
"""

from __future__ import annotations

import csv
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

logger = logging.getLogger(__name__)

# a line longer than this is cut before tokenization (the tokenizer truncates at max_seq_len anyway)
MAX_LINE_CHARS = 10_000


class DataError(ValueError):
    """A malformed training file; the message names the file, line and problem."""


@dataclass
class ReadReport:
    """Counts of what reading skipped."""

    blank_lines: int = 0
    bad_lines: list[str] = field(default_factory=list)


def _open_text(path: str) -> str:
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: invalid UTF-8 ({err.reason})") from None


def _bad(path: str, line: int, problem: str, on_bad_line: str, report: ReadReport) -> None:
    message = f"{path}:{line}: {problem}"
    if on_bad_line == "error":
        raise DataError(message)
    report.bad_lines.append(message)


def read_sentences(path: str, on_bad_line: str = "error") -> tuple[list[str], ReadReport]:
    """Read one sentence per line; blank lines are skipped and counted."""
    report = ReadReport()
    sentences = []
    for i, line in enumerate(_open_text(path).splitlines(), start=1):
        text = line.strip()
        if not text:
            report.blank_lines += 1
            continue
        if "\x00" in text:
            _bad(path, i, "contains a NUL byte", on_bad_line, report)
            continue
        sentences.append(text[:MAX_LINE_CHARS])
    if not sentences:
        raise DataError(f"{path}: no sentences (file is empty or blank)")
    return sentences, report


def read_csv_examples(
    path: str, columns: Sequence[str], on_bad_line: str = "error"
) -> tuple[list[tuple[str, ...]], ReadReport]:
    """Read the named columns of a CSV with a header; every field must be non-empty."""
    report = ReadReport()
    reader = csv.reader(io.StringIO(_open_text(path), newline=""))
    header = next(reader, None)
    if header is None:
        raise DataError(f"{path}: file is empty (expected a header naming {','.join(columns)})")
    header = [h.strip() for h in header]
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{path}:1: header {','.join(header)!r} lacks column(s) {','.join(missing)} (needs {','.join(columns)})"
        )
    index = [header.index(c) for c in columns]
    rows = []
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            report.blank_lines += 1
            continue
        if len(row) != len(header):
            _bad(path, line, f"expected {len(header)} fields, found {len(row)}", on_bad_line, report)
            continue
        values = tuple(row[i].strip()[:MAX_LINE_CHARS] for i in index)
        empty = [c for c, v in zip(columns, values) if not v]
        if empty:
            _bad(path, line, f"empty field(s) {','.join(empty)}", on_bad_line, report)
            continue
        rows.append(values)
    if not rows:
        raise DataError(f"{path}: no data rows after the header")
    return rows, report


def load_hf_examples(name: str, config: str | None, split: str, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Read the named columns of a Hugging Face dataset (for users who are online)."""
    from datasets import load_dataset

    ds = load_dataset(name, config, split=split)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"dataset {name}: missing column(s) {missing}; has {ds.column_names}")
    return list(zip(*(ds[c] for c in columns)))


@dataclass
class TokenizedViews:
    """Pre-tokenized views: ``features[v][key][i]`` is example ``i``'s view ``v`` token ids."""

    features: list[dict[str, list[list[int]]]]
    pad_id: int

    def __len__(self) -> int:
        return len(self.features[0]["input_ids"])

    def collate(self, rows: Sequence[int]) -> dict[str, torch.Tensor]:
        """Pad views of ``rows`` to their longest length, view-major: ``(views * len(rows), seq)``."""
        keys = self.features[0].keys()
        seqs = {k: [view[k][i] for view in self.features for i in rows] for k in keys}
        width = max(len(s) for s in seqs["input_ids"])
        batch = {}
        for key, values in seqs.items():
            arr = np.full((len(values), width), self.pad_id if key == "input_ids" else 0, dtype=np.int64)
            for r, s in enumerate(values):
                arr[r, : len(s)] = s
            batch[key] = torch.from_numpy(arr)
        if "attention_mask" not in batch:
            batch["attention_mask"] = (batch["input_ids"] != self.pad_id).long()
        return batch


def tokenize_views(tokenizer, views: Sequence[Sequence[str]], max_seq_len: int) -> TokenizedViews:
    """Tokenize each view's sentences once (truncated at ``max_seq_len``, no padding)."""
    names = tokenizer.model_input_names
    features: list[dict[str, list[list[int]]]] = []
    for v, sentences in enumerate(views):
        if v > 0 and sentences is views[0]:  # unsupervised: the same sentences twice, tokenized once
            features.append(features[0])
            continue
        enc = tokenizer(list(sentences), truncation=True, max_length=max_seq_len, padding=False)
        features.append({k: enc[k] for k in names if k in enc})
    return TokenizedViews(features, tokenizer.pad_token_id or 0)


class BatchSchedule:
    """Deterministic shuffled batches: step ``s`` of any run with the same seed sees the same rows.

    The global batch of ``batch_size * world_size`` examples is split by rank, so the union over
    processes equals the single-process batch (labels offset by rank reconstruct it). Incomplete
    final batches are dropped so every process takes the same number of steps.
    """

    def __init__(self, n_examples: int, batch_size: int, world_size: int, seed: int) -> None:
        self.n, self.batch_size, self.world_size, self.seed = n_examples, batch_size, world_size, seed
        self.steps_per_epoch = n_examples // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{n_examples} training examples are fewer than one global batch ({batch_size} x {world_size})"
            )
        self._epoch, self._perm = -1, np.arange(0)

    def rows(self, step: int, rank: int) -> np.ndarray:
        """Example indices of ``rank``'s share of global step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
        start = (within * self.world_size + rank) * self.batch_size
        return self._perm[start : start + self.batch_size]
