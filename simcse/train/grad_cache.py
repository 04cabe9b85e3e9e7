"""Gradient caching: a large contrastive batch in the memory of one chunk (GradCache, Gao et al., 2021).

A contrastive loss couples every row of the batch, so it cannot be split into independent
micro-batches; but its gradient factorises through the embeddings. Phase 1 embeds the batch in row
chunks without a graph, computes the loss and its gradient with respect to the embeddings (a small
``(rows, dim)`` matrix). Phase 2 re-forwards each chunk with a graph and backpropagates the cached
embedding gradients into the parameters. Each row's embedding depends only on its own tokens and
dropout mask, so chunking rows is exact as long as phase 2 draws the same masks as phase 1: the RNG
state (CPU and CUDA) is saved before each chunk of phase 1 and restored before its re-forward.

Reference: Gao, Zhang, Han & Callan, "Scaling Deep Contrastive Learning Batch Size under Memory
Limited Setup", RepL4NLP 2021.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import torch


class RngState:
    """The torch RNG state of the CPU and of ``device`` (when CUDA), captured now, restored later."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.cpu = torch.get_rng_state()
        self.cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None

    def restore(self) -> None:
        """Put the captured state back, so the next random draws repeat."""
        torch.set_rng_state(self.cpu)
        if self.cuda is not None:
            torch.cuda.set_rng_state(self.cuda, self.device)


class GradCache:
    """A training step in two phases: ``loss = cache.loss(model, batch)``, then ``cache.backward(loss)``.

    The parameter gradients equal those of ``loss_fn(model(**batch))`` with one backward (for the
    same dropout masks), while activations are held for ``chunk_size`` rows at a time. The split lets
    a caller inspect the loss (skip a non-finite one) before paying for phase 2.

    Args:
        chunk_size: Rows per forward pass.
        loss_fn: Scalar loss of the embeddings arranged ``(views, batch, dim)``.
        views: Views per example; the batch's rows are view-major (all first views, then all second ...). A
            function of the batch's rows when batches differ (several sources).
        accelerator: An ``accelerate.Accelerator``: its ``backward`` (loss scaling), ``autocast`` and
            ``no_sync`` (one gradient all-reduce per step under DDP) are used. ``None``: plain PyTorch.

    Example:
        >>> cache = GradCache(32, lambda z: info_nce(z[0], z[1]), views=2)  # doctest: +SKIP
        >>> loss = cache.loss(model, batch)  # doctest: +SKIP
        >>> cache.backward(loss)  # .grad as from loss_fn(model(**batch)).backward()  # doctest: +SKIP
    """

    def __init__(
        self,
        chunk_size: int,
        loss_fn: Callable[[torch.Tensor], torch.Tensor],
        views: int | Callable[[int], int],
        accelerator: Any = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.chunk_size, self.loss_fn, self.views, self.accelerator = chunk_size, loss_fn, views, accelerator
        self._pending: tuple[Any, list[dict[str, torch.Tensor]], list[RngState], torch.Tensor] | None = None

    def loss(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Phase 1: embed ``batch`` chunk by chunk without a graph; the loss, differentiable in the embeddings."""
        rows = batch["input_ids"].shape[0]
        chunks = [{k: v[s : s + self.chunk_size] for k, v in batch.items()} for s in range(0, rows, self.chunk_size)]
        states, parts = [], []
        with torch.no_grad():
            for chunk in chunks:
                states.append(RngState(chunk["input_ids"].device))
                parts.append(model(**chunk))  # (chunk, dim)
        z = torch.cat(parts).requires_grad_()  # (views * batch, dim), a leaf: its .grad is the cache
        self._pending = (model, chunks, states, z)
        views = self.views(rows) if callable(self.views) else self.views
        return self.loss_fn(z.view(views, -1, z.shape[-1]))  # z viewed (views, batch, dim)

    def backward(self, loss: torch.Tensor) -> None:
        """Phase 2: gradients of ``loss`` into the model's parameters (accumulated into ``.grad``)."""
        if self._pending is None:
            raise RuntimeError("GradCache.backward needs a loss from GradCache.loss first")
        model, chunks, states, z = self._pending
        self._pending = None
        acc = self.accelerator
        if acc is not None:
            acc.backward(loss)  # the embedding gradients -> z.grad (scaled, under fp16, like any backward)
        else:
            loss.backward()
        grads = z.grad.split(self.chunk_size)  # type: ignore[union-attr]
        after = RngState(z.device)
        autocast = acc.autocast if acc is not None else contextlib.nullcontext
        for i, (chunk, state, grad) in enumerate(zip(chunks, states, grads)):
            # under DDP, gradients accumulate locally and are all-reduced once, in the last backward
            last = i == len(chunks) - 1
            sync = contextlib.nullcontext() if last or acc is None else acc.no_sync(model)
            state.restore()  # phase 1's dropout masks for this chunk
            with sync:
                with autocast():
                    part = model(**chunk)  # (chunk, dim)
                part.backward(grad)
        after.restore()  # the RNG continues as if phase 1 alone had run
