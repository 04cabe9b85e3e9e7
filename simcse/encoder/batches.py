"""The encode loop: length-sorted batches through the backbone, several at once where the runtime can.

A backbone with ``forward_many`` (OpenVINO, :meth:`~simcse.encoder.openvino.OpenVinoBackbone.forward_many`)
keeps one batch in flight per stream, while Python pads the next batch and pools the last; any other
backbone runs one batch at a time through :meth:`Encoder.forward`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from simcse.encoder.pooling import needs_hidden_states
from simcse.encoder.prompts import PROMPT_MASK

Batch = dict[str, torch.Tensor]
Encoder = Any  # simcse.encoder.Encoder (which imports this module)


def check_encode_arguments(items: list[Any], batch_size: int, precision: str) -> None:
    """Refuse non-string items, a batch size below 1 and an unknown precision, naming the first problem."""
    for i, s in enumerate(items):
        if not isinstance(s, str):
            raise TypeError(f"encode: item {i} is {type(s).__name__}, expected str")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if precision not in ("fp32", "bf16"):
        raise ValueError(f"precision must be 'fp32' or 'bf16', got {precision!r}")


def embed_batches(
    encoder: Encoder, batches: Iterable[tuple[np.ndarray, Batch]], use_head: bool
) -> Iterator[tuple[np.ndarray, torch.Tensor]]:
    """``(rows, batch)`` pairs -> ``(rows, (batch, dim) vectors)``, in order."""
    forward_many = getattr(encoder.model, "forward_many", None)
    if forward_many is None:
        for rows, batch in batches:
            yield rows, encoder(use_head=use_head, **batch)
        return
    inputs = (((rows, batch), {k: v for k, v in batch.items() if k != PROMPT_MASK}) for rows, batch in batches)
    for (rows, batch), out in forward_many(inputs, output_hidden_states=needs_hidden_states(encoder.pooler)):
        yield rows, encoder.pool_outputs(out, batch["attention_mask"], batch.get(PROMPT_MASK), use_head)


def encode_into(
    encoder: Encoder, out: np.ndarray, features: dict[str, Any], batch_size: int, use_head: bool, precision: str,
    normalize: bool, show_progress_bar: bool, progress: Callable[[int], None] | None = None,
) -> None:  # fmt: skip
    """Fill ``out`` (rows in input order) with the vectors of pre-tokenized ``features``, longest first."""
    # longest first: a too-large batch fails at once, not at the end
    order = np.argsort([-len(x) for x in features["input_ids"]], kind="stable")
    device = encoder.device
    starts: Iterable[int] = range(0, len(order), batch_size)
    if show_progress_bar:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc="encode", unit="batch")
    batches = (
        (rows, {k: v.to(device) for k, v in encoder.collate(features, rows).items()})
        for rows in (order[start : start + batch_size] for start in starts)
    )
    with torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext():
        for rows, emb in embed_batches(encoder, batches, use_head):
            emb = emb.float()  # (rows, dim)
            if normalize:
                emb = F.normalize(emb, dim=-1)
            out[rows] = emb.cpu().numpy()
            if progress is not None:
                progress(len(rows))
