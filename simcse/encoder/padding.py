"""Right padding of token ids into a batch: the one implementation behind ``Encoder.collate`` and training.

Sequences arrive ragged, as ``(lengths, flat values)`` pairs (:func:`ragged`): token-id lists from a
tokenizer, or an Arrow list column read without copying (``simcse.data``). :func:`pad_ragged` pads them
in one vectorised assignment per feature and adds the attention mask.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence

import numpy as np
import torch

Ragged = tuple[np.ndarray, np.ndarray]  # (lengths (rows,), every row's values one after the other)


def ragged(sequences: Sequence[Sequence[int]]) -> Ragged:
    """``(lengths, flat values)`` of token-id lists."""
    lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
    flat = np.fromiter(itertools.chain.from_iterable(sequences), dtype=np.int64, count=int(lengths.sum()))
    return lengths, flat


def pad_ragged(features: Mapping[str, Sequence[Ragged]], pad_id: int) -> dict[str, torch.Tensor]:
    """Pad ``{feature: [ragged part, ...]}`` into ``(rows, longest)`` int64 tensors, the parts' rows one after
    the other (training: one part per view, view-major); right padding, ``pad_id`` for ``input_ids``, 0 elsewhere.

    ``attention_mask`` is built from the lengths of ``input_ids`` unless it is one of the features.
    """
    lengths = np.concatenate([lens for lens, _ in features["input_ids"]])  # (rows,)
    mask = np.arange(int(lengths.max(initial=0))) < lengths[:, None]  # (rows, width)
    batch = {}
    for key, parts in features.items():
        arr = np.full(mask.shape, pad_id if key == "input_ids" else 0, dtype=np.int64)
        arr[mask] = np.concatenate([values for _, values in parts])  # row-major: each row's ids, in order
        batch[key] = torch.from_numpy(arr)
    if "attention_mask" not in batch:
        batch["attention_mask"] = torch.from_numpy(mask.astype(np.int64))
    return batch
