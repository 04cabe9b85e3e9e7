"""Sentence pooling: the single implementation used by training, evaluation and ``encode``.

The mode names follow the SimCSE paper and code; ``mean`` (the same as ``avg``) and ``last_token`` are the
names decoder embedders (llm2vec, E5-mistral, GritLM) use. Every mode reads the attention mask, never the
padding side: left- and right-padded batches pool to the same vectors.
"""

from __future__ import annotations

from typing import Literal, get_args

import torch

Pooler = Literal["cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last", "mean", "last_token"]
POOLERS: tuple[str, ...] = get_args(Pooler)


def validate_pooler(pooler: str) -> Pooler:
    """Return ``pooler`` if it names a pooling mode, else raise ``ValueError`` listing the modes."""
    if pooler not in POOLERS:
        raise ValueError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")
    return pooler  # type: ignore[return-value]


def needs_hidden_states(pooler: str) -> bool:
    """Whether ``pooler`` reads intermediate layers (so the model must return ``hidden_states``)."""
    return pooler in ("avg_top2", "avg_first_last")


def _at(hidden: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, index.to(hidden.device)]  # (batch, hidden)


def _masked_mean(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (batch, seq, 1)
    # clamp: an all-padding row (cannot come from a tokenizer, but may from a caller) gives 0, not NaN
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (batch, hidden)


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's last real token, for left or right padding: ``(batch, seq)`` -> ``(batch,)``."""
    seq = attention_mask.shape[1]
    # flip: the first 1 from the right is the last real token; argmax returns the first maximum
    return seq - 1 - attention_mask.flip(1).int().argmax(dim=1)  # (batch,)


def first_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position of each row's first real token (0 unless left-padded): ``(batch, seq)`` -> ``(batch,)``."""
    return attention_mask.int().argmax(dim=1)  # (batch,)


def pool(
    pooler: Pooler,
    attention_mask: torch.Tensor,
    last_hidden_state: torch.Tensor,
    hidden_states: tuple[torch.Tensor, ...] | None = None,
) -> torch.Tensor:
    """Pool token states into one vector per sentence.

    Modes (``hidden_states[0]`` is the embedding layer output, ``hidden_states[-1]`` the last layer):

    - ``cls`` / ``cls_before_pooler``: the first token's last-layer state. Both return the same vector
      here; ``cls`` additionally goes through the MLP head, which :class:`simcse.Encoder` applies.
    - ``avg`` / ``mean``: masked mean of the last layer.
    - ``last_token``: the last real token's last-layer state (the EOS token when the tokenizer appends
      it, see :func:`simcse.encoder.decoder.ensure_eos`); ``cls`` reads the first real token.
    - ``avg_top2``: masked mean of the average of the last two layers (``hidden_states[-1]`` and
      ``hidden_states[-2]``).
    - ``avg_first_last``: masked mean of the average of ``hidden_states[1]`` (the first transformer
      layer, not the embeddings) and ``hidden_states[-1]``, as in SimCSE's current code.

    Args:
        pooler: One of :data:`POOLERS`.
        attention_mask: ``(batch, seq)``, 1 for real tokens.
        last_hidden_state: ``(batch, seq, hidden)``.
        hidden_states: All layers' states; required for ``avg_top2`` and ``avg_first_last``.

    Returns:
        ``(batch, hidden)`` sentence vectors.
    """
    if pooler in ("cls", "cls_before_pooler"):
        return _at(last_hidden_state, first_token_index(attention_mask))
    if pooler == "last_token":
        return _at(last_hidden_state, last_token_index(attention_mask))
    if pooler in ("avg", "mean"):
        return _masked_mean(last_hidden_state, attention_mask)
    if hidden_states is None:
        raise ValueError(f"pooler {pooler!r} needs the model's hidden_states (output_hidden_states=True)")
    if pooler == "avg_top2":
        return _masked_mean((hidden_states[-1] + hidden_states[-2]) / 2.0, attention_mask)
    if pooler == "avg_first_last":
        return _masked_mean((hidden_states[1] + hidden_states[-1]) / 2.0, attention_mask)
    raise ValueError(f"unknown pooler {pooler!r}; choose one of {', '.join(POOLERS)}")
