"""A fixed-size FIFO of past embeddings: MoCo's key queue and the storage of cross-batch memory."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

Gather = Callable[[torch.Tensor], torch.Tensor]


class KeyQueue(nn.Module):
    """FIFO of the last ``size`` keys (He et al., 2020, "Momentum Contrast", Sec. 3.2).

    A circular buffer: :meth:`enqueue` writes at the pointer and the oldest rows are overwritten.
    Stored keys are detached. The buffer moves with ``.to(device)``; the buffer, pointer and fill
    count are all in ``state_dict``, so a resumed run continues with the same queue.

    Args:
        size: Capacity ``K`` (number of keys).
        dim: Key dimension ``D``.

    Example:
        >>> queue = KeyQueue(size=4, dim=2)
        >>> queue.enqueue(torch.ones(3, 2))
        >>> queue.enqueue(torch.zeros(3, 2))  # overwrites the two oldest
        >>> queue.ordered()[:, 0].tolist()  # oldest first
        [1.0, 0.0, 0.0, 0.0]
    """

    keys: torch.Tensor

    def __init__(self, size: int, dim: int) -> None:
        super().__init__()
        if size <= 0 or dim <= 0:
            raise ValueError(f"size and dim must be positive, got size={size}, dim={dim}")
        self.size, self.dim = size, dim
        self.register_buffer("keys", torch.zeros(size, dim))  # (K, D)
        self.ptr = 0  # next row to write
        self.filled = 0  # valid rows, <= size

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor, gather: Gather | None = None) -> None:
        """Append ``keys`` ``(b, D)``, overwriting the oldest rows once full.

        Args:
            keys: This process's new keys (detached here).
            gather: Optional function concatenating a tensor over processes in rank order (e.g.
                ``simcse.distributed.gather_no_grad`` or ``accelerator.gather``); then every process
                enqueues the keys of all ranks, rank 0 first, and all queues stay identical.
        """
        keys = keys.detach()
        if gather is not None:
            keys = gather(keys)  # (world * b, D), rank order
        if keys.ndim != 2 or keys.shape[1] != self.dim:
            raise ValueError(f"expected keys of shape (b, {self.dim}), got {tuple(keys.shape)}")
        keys = keys[-self.size :]  # a batch larger than the queue keeps only its newest rows
        n = keys.shape[0]
        rows = (self.ptr + torch.arange(n, device=self.keys.device)) % self.size  # (n,)
        self.keys.index_copy_(0, rows, keys.to(self.keys.dtype))
        self.ptr = (self.ptr + n) % self.size
        self.filled = min(self.size, self.filled + n)

    def get(self) -> torch.Tensor:
        """The valid keys ``(filled, D)`` in storage order (a view, no copy; order is irrelevant to a loss)."""
        return self.keys[: self.filled]  # (filled, D)

    def ordered(self) -> torch.Tensor:
        """The valid keys ``(filled, D)`` oldest first (a copy)."""
        if self.filled < self.size:
            return self.keys[: self.filled].clone()
        return torch.cat([self.keys[self.ptr :], self.keys[: self.ptr]])  # (K, D)

    def __len__(self) -> int:
        return self.filled

    def get_extra_state(self) -> dict[str, Any]:
        return {"ptr": self.ptr, "filled": self.filled}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self.ptr, self.filled = int(state["ptr"]), int(state["filled"])

    def extra_repr(self) -> str:
        return f"size={self.size}, dim={self.dim}, filled={self.filled}"
