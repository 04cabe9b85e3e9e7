"""Turn a config's data source (file or hub dataset) into pre-tokenized training views."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from simcse.data_dir import data_path
from simcse.train.config import TrainConfig
from simcse.train.prompts import tokenize_prompted_views
from simcse.train.readers import (
    MAX_LINE_CHARS,
    DataError,
    ReadReport,
    load_hf_examples,
    read_csv_examples,
    read_sentences,
)

logger = logging.getLogger(__name__)


def load_training_views(cfg: TrainConfig, tokenizer: Any, verbose: bool = True) -> TokenizedViews:
    """Read, validate and tokenize the training data named by ``cfg``.

    Unsupervised: one column (a sentence), used for both views. Pairs: ``sent0, sent1``.
    Triplets: ``sent0, sent1, hard_neg``. Column names come from ``cfg.columns``.
    """
    needed = {"unsup": 1, "pairs": 2, "triplets": 3}[cfg.mode]
    if len(cfg.columns) < needed:
        raise ValueError(f"mode {cfg.mode} needs {needed} column names, got {cfg.columns}")
    columns = cfg.columns[:needed]
    report = ReadReport()
    if cfg.dataset_name:
        rows = load_hf_examples(cfg.dataset_name, cfg.dataset_config, cfg.dataset_split, columns)
        source = cfg.dataset_name
    else:
        assert cfg.train_file is not None
        source = data_path(cfg.train_file, cfg.data_dir)
        if cfg.mode == "unsup":
            sentences, report = read_sentences(source, cfg.on_bad_line)
            rows = [(s,) for s in sentences]
        else:
            rows, report = read_csv_examples(source, columns, cfg.on_bad_line)
        if verbose and (report.blank_lines or report.bad_lines or report.truncated_lines):
            logger.warning(
                "%s: skipped %d blank and %d bad line(s), cut %d line(s) at %d characters%s",
                source, report.blank_lines, len(report.bad_lines), report.truncated_lines, MAX_LINE_CHARS,
                f"; first bad: {report.bad_lines[0]}" if report.bad_lines else "",
            )  # fmt: skip
    if cfg.max_train_samples:
        rows = rows[: cfg.max_train_samples]
    if cfg.mode == "unsup":
        sentences = [r[0] for r in rows]
        views = [sentences, sentences]
    else:
        views = [[r[v] for r in rows] for v in range(needed)]
    if verbose:
        logger.info("%s: %d training examples (%s)", source, len(rows), cfg.mode)
    tokenized = tokenize_prompted_views(tokenizer, views, columns, cfg)  # tokenize_views, with cfg's prompts
    tokenized.report = report.counts()
    return tokenized


@dataclass
class TokenizedViews:
    """Pre-tokenized views: ``features[v][key][i]`` is example ``i``'s view ``v`` token ids."""

    features: list[dict[str, list[list[int]]]]
    pad_id: int
    report: dict[str, int] = field(default_factory=dict)  # what reading skipped (ReadReport.counts)

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
