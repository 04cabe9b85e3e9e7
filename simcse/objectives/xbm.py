"""Cross-batch memory: past embeddings of the same encoder as extra negatives (XBM)."""

from __future__ import annotations

import torch
from torch import nn

from simcse.objectives.infonce import info_nce
from simcse.objectives.inputs import StepInputs
from simcse.objectives.queue import Gather, KeyQueue


class CrossBatchMemory(nn.Module):
    """FIFO of recent embeddings, used as negatives once the encoder has warmed up (Wang et al.,
    2020, "Cross-Batch Memory for Embedding Learning", Sec. 4).

    Embeddings drift fast early in training, so stale ones are harmful then: :meth:`negatives` returns
    ``None`` until :meth:`enqueue` has been called ``warmup_steps`` times (the paper starts XBM after
    1k iterations), then the stored embeddings. Storage is a :class:`KeyQueue`, so order, device,
    checkpointing and cross-process gathering behave the same.

    Args:
        size: Capacity (number of embeddings).
        dim: Embedding dimension.
        warmup_steps: Number of :meth:`enqueue` calls before the memory is used.

    Example:
        >>> memory = CrossBatchMemory(size=1024, dim=8, warmup_steps=100)
        >>> z1, z2 = torch.randn(4, 8), torch.randn(4, 8)
        >>> loss = xbm_loss(z1, z2, memory.negatives())  # plain InfoNCE while warming up
        >>> memory.enqueue(z2)  # after the loss: a batch is never its own memory
    """

    def __init__(self, size: int, dim: int, warmup_steps: int = 1000) -> None:
        super().__init__()
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.queue = KeyQueue(size, dim)
        self.warmup_steps = warmup_steps
        self.steps = 0

    @property
    def active(self) -> bool:
        """Whether the warm-up is over and :meth:`negatives` returns the memory."""
        return self.steps >= self.warmup_steps

    def enqueue(self, embeddings: torch.Tensor, gather: Gather | None = None) -> None:
        """Store ``embeddings`` ``(b, dim)`` (detached) and count one training step."""
        self.queue.enqueue(embeddings, gather)
        self.steps += 1

    def negatives(self) -> torch.Tensor | None:
        """The memory ``(filled, dim)`` once active, else ``None``."""
        return self.queue.get() if self.active else None

    def get_extra_state(self) -> dict[str, int]:
        return {"steps": self.steps}

    def set_extra_state(self, state: dict[str, int]) -> None:
        self.steps = int(state["steps"])


def xbm_loss(
    anchors: torch.Tensor,
    positives: torch.Tensor,
    memory: torch.Tensor | None = None,
    *,
    temperature: float = 0.05,
    label_offset: int = 0,
) -> torch.Tensor:
    """SimCSE's InfoNCE with a cross-batch memory as extra negatives (Wang et al., 2020, Eq. 8).

    Logits ``(n, m + M)``: anchor ``i`` against all ``positives`` then all memory rows, label
    ``label_offset + i``. With ``memory=None`` (warm-up) this is exactly :func:`~simcse.objectives.info_nce`.

    Args:
        anchors: ``(n, dim)``.
        positives: ``(m, dim)``; anchor ``i``'s positive is row ``label_offset + i``.
        memory: ``(M, dim)`` from :meth:`CrossBatchMemory.negatives`, or ``None``.
        temperature: Softmax temperature tau.
        label_offset: Where this process's anchors start among gathered positives (rank x n).

    Returns:
        Mean cross-entropy over anchors (a scalar).
    """
    if memory is not None:
        positives = torch.cat([positives, memory.to(positives.dtype)], dim=0)  # (m + M, dim)
    return info_nce(anchors, positives, temperature=temperature, label_offset=label_offset)


def xbm_step(x: StepInputs) -> torch.Tensor:
    """InfoNCE plus the memory of past positives; this step's positives join the memory after the step."""
    x.enqueue = x.z[1].detach()
    return x.loss(x.z[0], x.gather(x.z[1]), x.state.negatives(), label_offset=x.offset)
