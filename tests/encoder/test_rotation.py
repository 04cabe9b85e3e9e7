"""``simcse rotate``: the principal rotation against numpy's SVD, full-size cosines unchanged, prefixes better."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from simcse.cli import main
from simcse.encoder import DenseHead, Encoder
from simcse.encoder.rotation import IDENTITY, prefix_energy, principal_rotation, rotate_for_truncation, rotate_head
from tests.helpers.data import write_corpus


def cosines(x: np.ndarray) -> np.ndarray:
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return unit @ unit.T


def anisotropic(n: int = 400, dim: int = 16, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, dim)) * np.geomspace(4.0, 0.1, dim) @ np.linalg.qr(rng.normal(size=(dim, dim)))[0]


def test_principal_rotation_is_orthogonal_and_keeps_what_the_svd_says():
    x = anisotropic()
    rotation, energy = principal_rotation(x)
    np.testing.assert_allclose(rotation @ rotation.T, np.eye(16), atol=1e-10)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    singular = np.linalg.svd(unit, compute_uv=False)  # a second computation: singular values of the unit rows
    np.testing.assert_allclose(energy, np.cumsum(singular**2) / np.sum(singular**2), atol=1e-10)
    np.testing.assert_allclose(prefix_energy(x @ rotation.T), energy, atol=1e-10)
    np.testing.assert_allclose(cosines(x @ rotation.T), cosines(x), atol=1e-10)  # cosines unchanged
    rng = np.random.default_rng(1)
    for _ in range(20):  # no other rotation keeps more in any prefix (Eckart-Young)
        other = np.linalg.qr(rng.normal(size=(16, 16)))[0]
        assert np.all(prefix_energy(x @ other) <= energy + 1e-12)
    assert np.all(rotation[np.arange(16), np.abs(rotation).argmax(axis=1)] > 0)  # signs fixed: largest coord > 0


def test_principal_rotation_refuses_what_has_no_direction():
    with pytest.raises(ValueError, match="at least 2 vectors"):
        principal_rotation(np.ones((1, 4)))
    with pytest.raises(ValueError, match="length 0"):
        principal_rotation(np.array([[1.0, 0.0], [0.0, 0.0]]))


def test_rotated_encoder_keeps_full_size_cosines_and_its_prefixes_keep_more(spread_model_dir, tmp_path):
    sentences = write_corpus(tmp_path / "c.txt", n=200)
    encoder = Encoder.from_pretrained(spread_model_dir, pooler="avg").eval()
    before = encoder.encode(sentences)
    kept_before, kept_after = rotate_for_truncation(encoder, sentences, batch_size=32)
    after = encoder.encode(sentences)
    np.testing.assert_allclose(cosines(after), cosines(before), atol=1e-5)
    np.testing.assert_allclose(prefix_energy(after), kept_after, atol=1e-5)
    np.testing.assert_allclose(prefix_energy(before), kept_before, atol=1e-10)
    assert np.all(kept_after[:-1] > kept_before[:-1])  # every cut keeps more (32 dims: all keep 100%)
    rotation = encoder.head.dense.weight.detach().double().numpy()
    np.testing.assert_allclose(after, before @ rotation.T, atol=1e-5)  # the head is exactly the rotation
    assert encoder.head.activation_name == IDENTITY


def test_a_linear_head_is_folded_and_a_tanh_head_refused(tiny_model_dir):
    torch.manual_seed(0)
    encoder = Encoder.from_pretrained(tiny_model_dir, pooler="avg").eval()
    head = DenseHead(32, 32, IDENTITY)
    encoder.head = head
    x = ["a man is playing the guitar", "the dog runs in the park", "a red car"]
    before = encoder.encode(x)
    rotation = np.linalg.qr(np.random.default_rng(0).normal(size=(32, 32)))[0]
    rotate_head(encoder, rotation)
    assert encoder.head is head  # one head, folded: rotation (W x + b)
    np.testing.assert_allclose(encoder.encode(x), before @ rotation.T, atol=1e-5)
    encoder.head = DenseHead(32, 32)  # SimCSE's Tanh MLP
    with pytest.raises(ValueError, match="Tanh, not linear"):
        rotate_head(encoder, rotation)
    plain = Encoder.from_pretrained(tiny_model_dir, pooler="cls_before_pooler")
    with pytest.raises(ValueError, match="cls_before_pooler"):
        rotate_head(plain, rotation)


@pytest.mark.slow
def test_rotate_command_writes_a_folder_that_we_and_sentence_transformers_read_alike(
    spread_model_dir, tmp_path, capsys
):
    from sentence_transformers import SentenceTransformer

    sentences = write_corpus(tmp_path / "c.txt", n=200)
    out = tmp_path / "rotated"
    args = ["rotate", "--model", spread_model_dir, "--pooler", "avg", "--sentences", str(tmp_path / "c.txt"),
            "--output", str(out), "--max-sentences", "150"]  # fmt: skip
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "rotated on 150 sentences" in printed and "-> " in printed
    ours = Encoder.from_pretrained(str(out)).encode(sentences, normalize=True)
    original = Encoder.from_pretrained(spread_model_dir, pooler="avg").encode(sentences, normalize=True)
    np.testing.assert_allclose(ours @ ours.T, original @ original.T, atol=1e-5)  # full-size cosines unchanged
    theirs = SentenceTransformer(str(out), device="cpu").encode(sentences, normalize_embeddings=True)
    np.testing.assert_allclose(theirs, ours, atol=1e-5)
    assert main(args) == 1  # never over an existing folder
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "empty.txt").write_text("a man\n\nthe dog\n")
    assert main([*args[:6], str(tmp_path / "empty.txt"), "--output", str(tmp_path / "other")]) == 1
    assert "empty.txt:2: empty line" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "other")
