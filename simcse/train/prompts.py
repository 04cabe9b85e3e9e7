"""Training-time prompts: a prompt per data column, put before each sentence at tokenization.

See :mod:`simcse.encoder.prompts` for the encode-time side (the same tokenization and ``prompt_mask``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from simcse.encoder.prompts import PROMPT_MASK, tokenize_with_prompt
from simcse.train.config import TrainConfig

if TYPE_CHECKING:
    from simcse.train.data import TokenizedViews


def column_prompts(cfg: TrainConfig) -> dict[str, str]:
    """``{column: prompt}`` from ``cfg.prompt`` (every column) or ``cfg.prompts``; empty without prompts."""
    if cfg.prompt is not None:
        return {c: cfg.prompt for c in cfg.columns}
    return dict(cfg.prompts or {})


def tokenize_prompted_views(
    tokenizer: Any, views: Sequence[Sequence[str]], columns: Sequence[str], cfg: TrainConfig
) -> TokenizedViews:
    """:func:`simcse.train.data.tokenize_views` with each view's column prompt before its sentences.

    With ``include_prompt`` off, every view carries a ``prompt_mask`` feature (zeros for a view without a
    prompt), which the collated batch passes to :meth:`simcse.Encoder.forward`.
    """
    from simcse.train.data import TokenizedViews, tokenize_views

    prompts = column_prompts(cfg)
    if not any(prompts.get(c) for c in columns):
        return tokenize_views(tokenizer, views, cfg.max_seq_len)
    features: list[dict[str, list[list[int]]]] = []
    for v, sentences in enumerate(views):
        if v > 0 and sentences is views[0]:  # unsupervised: one column, tokenized once for both views
            features.append(features[0])
            continue
        prompt = prompts.get(columns[v])
        features.append(tokenize_with_prompt(tokenizer, sentences, prompt, cfg.max_seq_len, cfg.include_prompt))
    if any(PROMPT_MASK in f for f in features):  # collate reads every view's keys alike
        for f in features:
            f.setdefault(PROMPT_MASK, [[0] * len(ids) for ids in f["input_ids"]])
    return TokenizedViews(features, tokenizer.pad_token_id or 0)
