"""The training source's text columns: their validated rows, and their token ids with each column's prompt.

Both the Arrow cache (:mod:`simcse.data.cache`) and the stream (:mod:`simcse.data.stream`) read rows with
:func:`source_rows` and tokenize a column with :func:`encode_column`, so the two give the same batches.
See :mod:`simcse.encoder.prompts` for the encode-time side (the same tokenization and ``prompt_mask``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from typing import Any

from simcse.config import TrainConfig
from simcse.data.readers import ReadReport, file_format, iter_hub_rows, iter_rows
from simcse.data_dir import data_path
from simcse.encoder.prompts import PROMPT_MASK, tokenize_with_prompt


def source_name(cfg: TrainConfig) -> str:
    """The hub dataset's name, or the training file's path (resolved against ``data_dir``)."""
    return cfg.dataset_name or data_path(cfg.train_file or "", cfg.data_dir)


def source_rows(
    cfg: TrainConfig, source: str, report: ReadReport, streaming: bool = False
) -> Iterator[tuple[str, ...]]:
    """The config's validated rows (one text per column the mode reads), counted in ``report``.

    ``source`` is :func:`source_name`'s: the hub dataset, or the training file's resolved path.
    """
    columns = cfg.text_columns
    if cfg.dataset_name:
        rows = iter_hub_rows(source, cfg.dataset_config, cfg.dataset_split, columns, cfg.on_bad_line, report, streaming)
    else:
        rows = iter_rows(source, file_format(source, cfg.mode, cfg.data_format), columns, cfg.on_bad_line, report)
    for i, row in enumerate(rows):
        if cfg.max_train_samples and i >= cfg.max_train_samples:
            return
        yield row


def text_hash(text: str) -> int:
    """A text's 64-bit identity (blake2b), as stored in the cache for ``no_duplicates``."""
    digest = hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def tokenized_keys(tokenizer: Any) -> list[str]:
    """The tokenizer's outputs kept per text (the attention mask is rebuilt from the lengths)."""
    probe = tokenizer(["a"], truncation=True, max_length=8)
    return [k for k in tokenizer.model_input_names if k in probe and k != "attention_mask"]


def prompt_keys(cfg: TrainConfig, keys: Sequence[str]) -> list[str]:
    """The per-token features a batch carries: the tokenizer's ``keys``, plus ``prompt_mask`` when needed."""
    return [*keys, PROMPT_MASK] if cfg.masks_prompts else list(keys)


def encode_column(tokenizer: Any, texts: Sequence[str], column: str, cfg: TrainConfig) -> dict[str, list[list[int]]]:
    """Tokenize one column's ``texts`` with its prompt before each (truncated at ``max_seq_len``, unpadded).

    With ``include_prompt`` off and a prompt on some column, every column carries ``prompt_mask`` (zeros for
    a column without a prompt), which the collated batch passes to :meth:`simcse.Encoder.forward`.
    """
    prompt = cfg.column_prompts.get(column)
    features = tokenize_with_prompt(tokenizer, texts, prompt, cfg.max_seq_len, cfg.include_prompt)
    if cfg.masks_prompts:
        features.setdefault(PROMPT_MASK, [[0] * len(ids) for ids in features["input_ids"]])
    return features
