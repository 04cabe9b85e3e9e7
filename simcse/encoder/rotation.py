"""Rotate an encoder's vectors so that every prefix is its best truncation, with no training.

Cosine similarity is unchanged by an orthogonal rotation, so the full-size vectors score exactly as before;
what changes is what a cut keeps. Rotated onto the principal directions of the model's own unit vectors
(eigenvectors of their uncentered second moment, by decreasing eigenvalue), the first ``k`` dimensions
hold the largest share of the vectors' energy any ``k``-dimensional subspace can (Eckart-Young), which is
the truncation that best keeps the Gram matrix of cosines, so search and STS at ``truncate_dim=k``.

The rotation becomes a linear head (sentence-transformers' ``Dense`` with the identity activation, so the
saved folder loads there too), folded into the encoder's own linear head when it has one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from simcse.encoder.heads import DenseHead

IDENTITY = "torch.nn.modules.linear.Identity"


def principal_rotation(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The rotation onto the principal directions of ``vectors`` (rows; each is normalised first).

    Returns:
        ``(rotation, energy)``: ``rotation`` is ``(dim, dim)`` and orthogonal, its rows the directions by
        decreasing energy (``rotated = vectors @ rotation.T``), each row's sign fixed so its largest
        coordinate is positive; ``energy[k - 1]`` is the mean share of a unit vector's squared length its
        first ``k`` rotated coordinates keep.
    """
    x = np.asarray(vectors, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"need at least 2 vectors as rows of a matrix, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if not np.all(norms > 0):
        raise ValueError("a vector of length 0 has no direction to fit")
    unit = x / norms
    values, directions = np.linalg.eigh(unit.T @ unit / len(unit))  # ascending
    order = np.argsort(values)[::-1]
    values, rotation = np.clip(values[order], 0.0, None), directions[:, order].T
    signs = np.sign(rotation[np.arange(len(rotation)), np.abs(rotation).argmax(axis=1)])
    rotation *= signs[:, None]
    return rotation, np.cumsum(values) / values.sum()


def rotate_head(encoder: Any, rotation: np.ndarray) -> None:
    """Make ``encoder``'s output ``rotation @ output``: a new linear head, or its linear head folded with it.

    Raises:
        ValueError: The encoder's output does not go through a head that can take it: a non-linear head
            (SimCSE's Tanh MLP), ``cls_before_pooler`` pooling (no head at inference), or a size mismatch.
    """
    dim = encoder.dim
    if rotation.shape != (dim, dim):
        raise ValueError(f"rotation of shape {rotation.shape} for vectors of size {dim}")
    if encoder.pooler == "cls_before_pooler":
        raise ValueError("pooler cls_before_pooler uses no head at inference, so it cannot hold a rotation")
    r = torch.as_tensor(rotation, dtype=torch.float64)
    head = encoder.head
    if head is None:
        weight, bias = r, torch.zeros(dim, dtype=torch.float64)
        head = DenseHead(dim, dim, IDENTITY)
    elif head.activation_name == IDENTITY:
        weight, bias = r @ head.dense.weight.double(), r @ head.dense.bias.double()  # r (W x + b)
    else:
        raise ValueError(
            f"the encoder's head ends in {head.activation_name.rsplit('.', 1)[-1]}, not linear, so a rotation "
            "after it would be a second head; rotate a model without a head or with a linear one"
        )
    reference = next(encoder.parameters())
    with torch.no_grad():
        head.dense.weight.copy_(weight.to(head.dense.weight.dtype))
        head.dense.bias.copy_(bias.to(head.dense.bias.dtype))
    encoder.head = head.to(device=reference.device)


def prefix_energy(vectors: np.ndarray) -> np.ndarray:
    """``out[k - 1]``: the mean share of a unit vector's squared length its first ``k`` coordinates hold."""
    x = np.asarray(vectors, dtype=np.float64)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    return np.cumsum((unit**2).mean(axis=0))


def rotate_for_truncation(
    encoder: Any, sentences: Sequence[str], batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Fit :func:`principal_rotation` on ``encoder``'s vectors of ``sentences`` and put it in the head.

    Use sentences like the ones the model will encode (a sample of the corpus to search): the directions
    are those of their vectors. Full-size cosines do not change (up to float noise).

    Returns:
        :func:`prefix_energy` of the sentences' vectors before and after the rotation.
    """
    vectors = encoder.encode(list(sentences), batch_size=batch_size, normalize=True)
    rotation, energy = principal_rotation(vectors)
    rotate_head(encoder, rotation)
    return prefix_energy(vectors), energy
