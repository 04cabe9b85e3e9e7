"""Every pooling mode against a hand computation that loops over tokens."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcse import POOLERS, Encoder
from simcse.encoder.pooling import pool, validate_pooler

SENTENCES = ["a man is playing a guitar .", "dogs", "the old woman reads the news in the park today", ""]


def _mean_over_tokens(layer: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    rows = []
    for b in range(layer.shape[0]):
        total, count = torch.zeros(layer.shape[-1], dtype=torch.float64), 0
        for t in range(layer.shape[1]):
            if mask[b, t]:
                total += layer[b, t].double()
                count += 1
        rows.append(total / count)
    return torch.stack(rows)


def hand_pool(mode: str, mask: torch.Tensor, hidden: tuple[torch.Tensor, ...], hf_pooler=None) -> torch.Tensor:
    """The SimCSE paper's pooling modes, written out token by token (``hidden[0]`` = embeddings)."""
    last = hidden[-1]
    if mode == "cls_before_pooler":
        return torch.stack([last[b, 0].double() for b in range(last.shape[0])])
    if mode == "cls":  # the checkpoint's pooler (Linear + Tanh) on the first token
        w, bias = hf_pooler.dense.weight.double(), hf_pooler.dense.bias.double()
        return torch.stack([torch.tanh(w @ last[b, 0].double() + bias) for b in range(last.shape[0])])
    if mode in ("avg", "mean"):
        return _mean_over_tokens(last, mask)
    if mode == "last_token":  # the last position whose mask is 1
        return torch.stack([last[b, max(t for t in range(last.shape[1]) if mask[b, t])].double()
                            for b in range(last.shape[0])])  # fmt: skip
    if mode == "avg_top2":
        return _mean_over_tokens((hidden[-1] + hidden[-2]) / 2, mask)
    if mode == "avg_first_last":
        return _mean_over_tokens((hidden[1] + hidden[-1]) / 2, mask)
    raise AssertionError(mode)


HAND_MODES = ("cls", "cls_before_pooler", "avg", "avg_top2", "avg_first_last", "mean", "last_token")


def test_every_registered_pooler_has_a_hand_computation() -> None:
    assert set(HAND_MODES) == set(POOLERS)


@pytest.fixture(scope="module")
def reference(tiny_model_dir: str):
    """An independent AutoModel (with its BERT pooler) and its outputs on a padded batch."""
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_model_dir).eval()
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    assert (batch["attention_mask"] == 0).any(), "the batch must contain padding"
    with torch.no_grad():
        out = model(**batch, output_hidden_states=True)
    return model, batch, out


@pytest.mark.parametrize("mode", HAND_MODES)
def test_encoder_pooling_equals_hand_computation(mode: str, tiny_model_dir: str, reference) -> None:
    model, batch, out = reference
    with torch.no_grad():
        expected = hand_pool(mode, batch["attention_mask"], out.hidden_states, model.pooler).numpy()
    encoder = Encoder.from_pretrained(tiny_model_dir, pooler=mode)
    got = encoder.encode(SENTENCES, batch_size=2)
    np.testing.assert_allclose(got, expected, atol=1e-5, rtol=1e-4)


def test_cls_uses_the_checkpoint_pooler_and_cls_before_pooler_does_not(tiny_model_dir: str, reference) -> None:
    _, _, out = reference
    with_head = Encoder.from_pretrained(tiny_model_dir, pooler="cls")
    without = Encoder.from_pretrained(tiny_model_dir, pooler="cls_before_pooler")
    assert with_head.head is not None
    np.testing.assert_allclose(with_head.encode(SENTENCES), out.pooler_output.numpy(), atol=1e-5)
    np.testing.assert_allclose(without.encode(SENTENCES), out.last_hidden_state[:, 0].numpy(), atol=1e-5)
    assert not np.allclose(with_head.encode(SENTENCES), without.encode(SENTENCES), atol=1e-3)


@pytest.mark.parametrize("mode", HAND_MODES)
def test_pool_function_on_random_states(mode: str) -> None:
    """``pool`` alone (no head) on random states with ragged masks, including a 1-token row."""
    gen = torch.Generator().manual_seed(0)
    hidden = tuple(torch.randn(3, 6, 5, generator=gen) for _ in range(4))  # embeddings + 3 layers
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0]])
    got = pool(mode, mask, hidden[-1], hidden)
    hand_mode = "cls_before_pooler" if mode == "cls" else mode  # pool() returns the pre-head vector for cls
    torch.testing.assert_close(got.double(), hand_pool(hand_mode, mask, hidden), atol=1e-6, rtol=1e-6)


def test_layer_modes_need_hidden_states_and_unknown_mode_fails() -> None:
    states = torch.zeros(1, 2, 3)
    mask = torch.ones(1, 2, dtype=torch.long)
    with pytest.raises(ValueError, match="hidden_states"):
        pool("avg_top2", mask, states)
    with pytest.raises(ValueError, match="unknown pooler"):
        pool("max", mask, states, (states, states))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown pooler"):
        validate_pooler("max")
