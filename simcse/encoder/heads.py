"""Projection heads applied after pooling: SimCSE's MLP and sentence-transformers' Dense."""

from __future__ import annotations

import torch
from torch import nn

# activation names as they appear in sentence-transformers' Dense config
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "torch.nn.modules.activation.Tanh": nn.Tanh,
    "torch.nn.modules.linear.Identity": nn.Identity,
    "torch.nn.modules.activation.ReLU": nn.ReLU,
    "torch.nn.modules.activation.GELU": nn.GELU,
    "torch.nn.modules.activation.Sigmoid": nn.Sigmoid,
}


class DenseHead(nn.Module):
    """``activation(linear(x))``: SimCSE's MLP head when square with ``Tanh`` (Gao et al., 2021, Sec. 3).

    Args:
        in_features: Input size (the encoder's hidden size).
        out_features: Output size.
        activation: Full class path of a ``torch.nn`` activation, as sentence-transformers stores it.
    """

    def __init__(
        self, in_features: int, out_features: int, activation: str = "torch.nn.modules.activation.Tanh"
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unsupported head activation {activation!r}; known: {sorted(_ACTIVATIONS)}")
        self.activation_name = activation
        self.dense = nn.Linear(in_features, out_features)
        self.activation = _ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``(batch, in_features)`` to ``(batch, out_features)``."""
        return self.activation(self.dense(x))

    @property
    def is_simcse_mlp(self) -> bool:
        """True for the square Linear + Tanh head that BERT-style poolers can hold."""
        return self.dense.in_features == self.dense.out_features and isinstance(self.activation, nn.Tanh)


def head_from_hf_pooler(pooler: nn.Module) -> DenseHead | None:
    """Copy a BERT/RoBERTa-style pooler (``dense`` + Tanh on the first token) into a :class:`DenseHead`."""
    dense = getattr(pooler, "dense", None)
    activation = getattr(pooler, "activation", None)
    if not isinstance(dense, nn.Linear) or not isinstance(activation, nn.Tanh):
        return None
    head = DenseHead(dense.in_features, dense.out_features)
    head.dense.load_state_dict(dense.state_dict())
    return head
