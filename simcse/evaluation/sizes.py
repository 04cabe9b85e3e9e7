"""Scoring an encoder at several vector sizes (Matryoshka): the first ``d`` dimensions, re-normalised.

:class:`AtSizes` wraps any evaluator: the texts are encoded once at full size, and the evaluator runs once
per size on the vectors cut to it, its metrics named ``<name>@<d>/<metric>``. An evaluator spec asks for it
with ``truncate_dims: [384, 128, 64]`` (see :mod:`simcse.evaluation.evaluators`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simcse.quantize import truncate_embeddings

_NOT_KEYED = ("batch_size", "show_progress_bar")  # encode's options that do not change a vector


class TruncatingEncoder:
    """``encode`` of ``encoder`` cut to ``dim``, from full-size vectors shared by every size (encoded once).

    Args:
        encoder: Anything with ``encode(texts, **kwargs) -> array``.
        dim: The size kept (re-normalised when the encoder normalises, as ``encode(truncate_dim=)`` does).
        memo: Full-size vectors by (options, text), shared by the sizes of one evaluation.
    """

    def __init__(self, encoder: Any, dim: int, memo: dict[Any, np.ndarray]) -> None:
        self.encoder, self.dim, self.memo = encoder, dim, memo
        self.prompts = getattr(encoder, "prompts", None)  # read by the evaluators' prompt choice

    def eval(self) -> TruncatingEncoder:
        """The wrapped encoder in eval mode (what scoring functions call first)."""
        self.encoder.eval()
        return self

    def encode(self, texts: Sequence[str], **kwargs: Any) -> np.ndarray:
        """The first ``dim`` dimensions of each text's vector."""
        texts = list(texts)
        options = repr(sorted((k, v) for k, v in kwargs.items() if k not in _NOT_KEYED))
        missing = list(dict.fromkeys(t for t in texts if (options, t) not in self.memo))
        if missing:
            vectors = np.asarray(self.encoder.encode(missing, **kwargs), dtype=np.float32)  # (missing, dim)
            self.memo.update({(options, t): v for t, v in zip(missing, vectors)})
        full = np.stack([self.memo[(options, t)] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)
        normalize = kwargs.get("normalize")
        normalize = bool(getattr(self.encoder, "normalize", False)) if normalize is None else normalize
        return truncate_embeddings(full, self.dim, normalize=normalize)  # (n, dim)


class AtSizes:
    """An evaluator run at each of ``dims``: metrics ``<name>@<d>/<metric>``.

    Args:
        evaluator: Any evaluator of :mod:`simcse.evaluation` (a ``name``, ``metric_names()`` and a call).
        dims: The sizes, each at most the encoder's.
    """

    def __init__(self, evaluator: Any, dims: Sequence[int]) -> None:
        if not dims or any(int(d) < 1 for d in dims):
            raise ValueError(f"{evaluator.name}: truncate_dims must be sizes >= 1, got {list(dims)}")
        self.evaluator, self.dims, self.name = evaluator, [int(d) for d in dims], evaluator.name

    def _renamed(self, metrics: Sequence[str], dim: int) -> list[str]:
        prefix = f"{self.name}/"
        return [f"{self.name}@{dim}/{m[len(prefix):]}" if m.startswith(prefix) else f"{m}@{dim}" for m in metrics]

    def metric_names(self) -> list[str]:
        """Every key the call returns."""
        return [n for d in self.dims for n in self._renamed(self.evaluator.metric_names(), d)]

    def __call__(self, encoder: Any, batch_size: int = 128, **encode_kwargs: Any) -> dict[str, float]:
        """Score ``encoder`` at every size (each text encoded once); every process of a run calls this together."""
        memo: dict[Any, np.ndarray] = {}
        out: dict[str, float] = {}
        for dim in self.dims:
            metrics = self.evaluator(TruncatingEncoder(encoder, dim, memo), batch_size, **encode_kwargs)
            out.update(zip(self._renamed(list(metrics), dim), metrics.values()))
        return out
