"""What the evaluators share: their protocol, how they call an encoder, alignment and uniformity.

An evaluator is built once (its data read and checked at construction, so bad data fails before any
training) and called with an encoder: anything with ``encode(texts, batch_size=..., prompt=...,
prompt_name=..., show_progress_bar=...) -> array``, such as :class:`simcse.Encoder` or a
``SentenceTransformer``. It returns a flat dict ``{"<name>/<metric>": float}``. Under several processes
every process calls it with the same data; the texts are split between them (see
:mod:`simcse.evaluation.sharding`) and every process gets the same metrics.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch

from simcse.distributed import rank_and_world
from simcse.evaluation.metrics import alignment, uniformity
from simcse.evaluation.sharding import encode_split

# uniformity is over all pairs of texts (n^2 / 2): at most this many texts, evenly spaced, are used
UNIFORMITY_TEXTS = 10_000


@runtime_checkable
class Evaluator(Protocol):
    """An evaluator: a name, the metrics it reports, and a call that scores an encoder."""

    name: str

    def metric_names(self) -> list[str]:
        """Every key the call returns (``<name>/<metric>``), known before any encoding."""
        ...

    def __call__(self, encoder: Any, batch_size: int = 128, **encode_kwargs: Any) -> dict[str, float]:
        """Score ``encoder``; every process of a run calls this together."""
        ...


def encode_fn(encoder: Any, batch_size: int, encode_kwargs: dict[str, Any], **prompt: Any) -> Callable:
    """``texts -> array`` for ``encoder``: the batch size, the caller's keywords, a prompt; a bar on process 0 only."""
    kwargs = {**encode_kwargs, **prompt, "batch_size": batch_size}
    if rank_and_world()[0] != 0:
        kwargs["show_progress_bar"] = False
    return lambda texts: encoder.encode(texts, **kwargs)


def encode_texts(
    encoder: Any, texts: list[str], batch_size: int, encode_kwargs: dict[str, Any], **prompt: Any
) -> np.ndarray:
    """Every vector of ``texts`` on every process, the encoding split between processes."""
    return encode_split(encode_fn(encoder, batch_size, encode_kwargs, **prompt), texts)


def side_prompt(encoder: Any, side: str, prompt: str | None = None, prompt_name: str | None = None) -> dict[str, str]:
    """The prompt keyword for one side (``query`` / ``document``): the spec's own, else the model's prompt
    of that name if it has one (as sentence-transformers' ``encode_query`` / ``encode_document`` choose)."""
    if prompt is not None and prompt_name is not None:
        raise ValueError(f"{side}: give a prompt or a prompt name, not both")
    if prompt is not None:
        return {"prompt": prompt}
    if prompt_name is not None:
        return {"prompt_name": prompt_name}
    prompts = getattr(encoder, "prompts", None)
    prompts = getattr(prompts, "prompts", prompts)  # an Encoder's PromptSettings, or sentence-transformers' dict
    return {"prompt_name": side} if isinstance(prompts, dict) and prompts.get(side) else {}


def align_uniform(first: np.ndarray, second: np.ndarray, texts: np.ndarray) -> dict[str, float]:
    """Alignment of the positive pairs ``(first[i], second[i])`` and uniformity of ``texts`` (Wang & Isola).

    Uniformity uses at most :data:`UNIFORMITY_TEXTS` texts, evenly spaced. NaN where there is no pair.
    """
    if len(texts) > UNIFORMITY_TEXTS:
        texts = texts[np.linspace(0, len(texts) - 1, UNIFORMITY_TEXTS).astype(np.int64)]
    return {
        "alignment": alignment(torch.from_numpy(first), torch.from_numpy(second)) if len(first) else float("nan"),
        "uniformity": uniformity(torch.from_numpy(texts)) if len(texts) > 1 else float("nan"),
    }


def prefixed(name: str, metrics: dict[str, float]) -> dict[str, float]:
    """``{"<name>/<metric>": value}``."""
    return {f"{name}/{k}": float(v) for k, v in metrics.items()}
