"""Evaluation split across processes: each encodes a share of the texts, the vectors are gathered.

Under ``torchrun`` / ``accelerate launch`` every process calls the same evaluator with the same data.
:func:`shares` deals the texts out by length (longest first, round robin), so every process gets about
the same number of tokens; :func:`encode_split` encodes this process's share and gathers the rows, so
each process ends with every vector, in input order, as one process would have computed them. N
processes encode about N times faster, and none sits in a collective while another works alone.

Every process calls the same collectives in the same order. Work that may fail on one process only (an
out-of-memory error while encoding) runs inside :func:`together`: the processes agree on success before
the next collective, so a failure ends every process with an error instead of leaving the others waiting.
On one process everything here is the plain call.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np
import torch

from simcse.distributed import gather_rows, rank_and_world, share_outcome

T = TypeVar("T")
EncodeFn = Callable[[list[str]], np.ndarray]


def together(work: Callable[[], T], what: str = "evaluating") -> T:
    """``work()`` on every process, or an exception on every process if it failed on any of them.

    Every process must call this (:func:`simcse.distributed.share_outcome`): the process that failed
    re-raises its own error, the others raise :class:`simcse.distributed.PeerFailed` with its message.
    """
    try:
        result, error = work(), None
    except Exception as err:  # an error of any kind must reach the agreement, or the others wait for ever
        result, error = None, err
    share_outcome(error, what)
    return result  # type: ignore[return-value]


def shares(texts: Sequence[str], world: int) -> list[np.ndarray]:
    """The indices of ``texts`` each of ``world`` processes encodes: by length, longest first, round robin."""
    order = np.argsort([-len(t) for t in texts], kind="stable")
    return [order[rank::world] for rank in range(world)]


def encode_split(encode: EncodeFn, texts: Sequence[str]) -> np.ndarray:
    """``encode(texts)`` as one float32 array, the work split over the processes (see the module's notes).

    Args:
        encode: A list of texts -> ``(n, dim)`` array (e.g. ``lambda t: encoder.encode(t, batch_size=64)``).
        texts: The texts, the same on every process.

    Returns:
        ``(len(texts), dim)`` float32, on every process.
    """
    rank, world = rank_and_world()
    if world == 1:
        return _checked(encode(list(texts)), len(texts))
    if len(texts) < world:  # fewer texts than processes: each encodes them all (no share is empty)
        return together(lambda: _checked(encode(list(texts)), len(texts)))
    parts = shares(texts, world)
    mine = [texts[i] for i in parts[rank]]
    local = together(lambda: _checked(encode(mine), len(mine)))
    rows = gather_rows(torch.from_numpy(local)).numpy()  # (len(texts), dim), ranks' shares one after another
    out = np.empty_like(rows)
    out[np.concatenate(parts)] = rows
    return out


def _checked(vectors: Any, n: int) -> np.ndarray:
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2 or array.shape[0] != n:
        raise ValueError(f"encode returned an array of shape {array.shape} for {n} texts")
    return np.ascontiguousarray(array)
