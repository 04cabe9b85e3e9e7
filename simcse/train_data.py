"""Turn a config's data source (file or hub dataset) into pre-tokenized training views."""

from __future__ import annotations

import logging
from typing import Any

from simcse.config import TrainConfig
from simcse.data import (
    MAX_LINE_CHARS,
    ReadReport,
    TokenizedViews,
    load_hf_examples,
    read_csv_examples,
    read_sentences,
    tokenize_views,
)
from simcse.data_dir import data_path

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
    tokenized = tokenize_views(tokenizer, views, cfg.max_seq_len)
    tokenized.report = report.counts()
    return tokenized
