"""``Encoder`` as an MTEB model: ``encode(sentences, **kwargs)`` with the keywords MTEB passes, checked offline.

MTEB (1.x) calls ``model.encode(sentences, task_name=..., prompt_type=..., **encode_kwargs)`` with
``encode_kwargs`` such as ``batch_size`` and ``show_progress_bar``, expects an ``(n, dim)`` array,
and scores STS pairs with ``model.similarity`` when the model has one. ``mteb`` itself is not needed:
the protocol is checked structurally, without downloading anything.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np
import pytest

SENTENCES = ["a man is playing the guitar", "a woman eats bread", "the dog runs in the park", "a red car"]


@runtime_checkable
class MTEBEncoder(Protocol):
    """The shape of MTEB's ``Encoder`` protocol (mteb.encoder_interface), written out here."""

    def encode(self, sentences: Sequence[str], *, task_name: str, prompt_type: Any = None, **kwargs: Any) -> Any: ...


def test_encoder_satisfies_the_protocol(tiny_encoder) -> None:
    assert isinstance(tiny_encoder, MTEBEncoder)
    params = inspect.signature(tiny_encoder.encode).parameters
    assert any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()), "extra keywords must be accepted"
    inspect.signature(tiny_encoder.encode).bind(SENTENCES, task_name="STSBenchmark", prompt_type=None, batch_size=2)


@pytest.mark.parametrize("prompt_type", [None, "query", "passage"])
def test_encode_with_mteb_keywords_returns_float32_rows(tiny_encoder, prompt_type) -> None:
    plain = tiny_encoder.encode(SENTENCES)
    out = tiny_encoder.encode(
        SENTENCES, task_name="STSBenchmark", prompt_type=prompt_type, batch_size=3, show_progress_bar=False,
        convert_to_numpy=True, request_qid=None, hf_split="test", hf_subset="default",
    )  # fmt: skip
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    assert out.shape == (len(SENTENCES), tiny_encoder.dim)
    np.testing.assert_allclose(out, plain, rtol=1e-5, atol=1e-6)  # the keywords change nothing


def test_encode_accepts_any_sequence_and_empty_input(tiny_encoder) -> None:
    # MTEB hands over lists, tuples or datasets columns; an empty split must not crash
    assert tiny_encoder.encode(tuple(SENTENCES), task_name="t").shape == (4, tiny_encoder.dim)
    assert tiny_encoder.encode([], task_name="t").shape == (0, tiny_encoder.dim)


def test_similarity_on_embeddings_is_cosine(tiny_encoder) -> None:
    emb = tiny_encoder.encode(SENTENCES, task_name="STSBenchmark")
    sims = tiny_encoder.similarity(emb[:2], emb)  # MTEB passes embeddings, not sentences
    unit = emb / np.linalg.norm(emb, axis=1, keepdims=True)
    np.testing.assert_allclose(sims, unit[:2] @ unit.T, rtol=1e-5, atol=1e-6)
    assert float(tiny_encoder.similarity(emb[0], emb[1]).item()) == pytest.approx(float(unit[0] @ unit[1]), abs=1e-6)
