"""Training-time prompts: a prompt per data column, put before each sentence at tokenization.

See :mod:`simcse.encoder.prompts` for the encode-time side (the same tokenization and ``prompt_mask``).
Both the Arrow cache (:mod:`simcse.train.data`) and the stream (:mod:`simcse.train.stream`) tokenize a
column through :func:`encode_column`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simcse.config import TrainConfig
from simcse.encoder.prompts import PROMPT_MASK, tokenize_with_prompt


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
