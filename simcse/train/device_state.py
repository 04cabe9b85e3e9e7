"""What the training step keeps on the device, so that it never waits for the host: fp16's loss scale
(:class:`LossScale`) and flags read one step late (:class:`LaggedFlags`).

fp16's dynamic loss scaling is kept on the device and told apart from a non-finite loss.

``torch.amp.GradScaler`` cannot tell a gradient overflow (a finite loss whose scaled gradients exceed
fp16's range: the scale is too large, so halve it and skip the step) from a loss that is itself not
finite (bad data, a diverging run: the scale is not the cause). With a fused optimizer it also sets
the optimizer's ``found_inf`` from its own check, overwriting the step's decision. :class:`LossScale`
does the scaler's job inside :class:`simcse.train.step.TrainStep`: the step skips on either cause, the
scale backs off only on an overflow, and overflows are counted apart, so they can be logged.
Everything stays on the device (no host sync); the state is checkpointed with the run.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch


class LossScale:
    """A dynamic loss scale on ``device`` (GradScaler's defaults: 2**16, x2 every 2,000 good steps, /2 on overflow).

    Args:
        device: Where the scale lives (the gradients' device).
        init_scale: The first scale.
        growth_factor: Multiplies the scale after ``growth_interval`` steps in a row without an overflow.
        backoff_factor: Multiplies the scale after an overflow.
        growth_interval: Good steps before the scale grows.

    Example:
        >>> scale = LossScale(torch.device("cpu"))
        >>> scaled = scale.scale(loss); scaled.backward(); scale.unscale_(params)  # doctest: +SKIP
        >>> overflow = scale.update(grad_norm, nonfinite_loss)  # device flags  # doctest: +SKIP
    """

    def __init__(
        self,
        device: torch.device,
        init_scale: float = 2.0**16,
        growth_factor: float = 2.0,
        backoff_factor: float = 0.5,
        growth_interval: int = 2000,
    ) -> None:
        self.value = torch.full((), init_scale, dtype=torch.float32, device=device)
        self.good_steps = torch.zeros((), dtype=torch.float32, device=device)  # since the last change
        self.growth_factor, self.backoff_factor, self.growth_interval = growth_factor, backoff_factor, growth_interval

    def scale(self, loss: torch.Tensor) -> torch.Tensor:
        """``loss * scale`` (backward of it gives scaled gradients)."""
        return loss * self.value.to(loss.dtype)

    @torch.no_grad()
    def unscale_(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Divide every gradient by the scale, in place (before clipping and the optimizer step)."""
        grads = [p.grad for p in params if p.grad is not None]
        inverse = self.value.double().reciprocal().float()
        for dtype_grads in _by_dtype(grads).values():
            torch._foreach_mul_(dtype_grads, inverse.to(dtype_grads[0].dtype))

    @torch.no_grad()
    def update(self, grad_norm: torch.Tensor, nonfinite_loss: torch.Tensor) -> torch.Tensor:
        """Adjust the scale after a step; return the overflow flag (a bool tensor on the device).

        Args:
            grad_norm: The unscaled gradients' total norm (non-finite: they overflowed, or the loss did).
            nonfinite_loss: Whether any process's loss was not finite (that step is skipped, the scale kept).
        """
        overflow = ~torch.isfinite(grad_norm) & ~nonfinite_loss  # (): the scale's fault, not the loss's
        grow = (self.good_steps + 1 >= self.growth_interval) & ~overflow & ~nonfinite_loss
        factor = torch.where(overflow, self.backoff_factor, torch.where(grow, self.growth_factor, 1.0))
        self.value.mul_(factor)
        counted = torch.where(nonfinite_loss, self.good_steps, self.good_steps + 1)  # a skipped loss is no step
        self.good_steps.copy_(torch.where(overflow | grow, 0.0, counted))
        return overflow

    def state_dict(self) -> dict[str, Any]:
        """The scale and its good-step count (saved with every checkpoint)."""
        return {"value": self.value.detach().cpu(), "good_steps": self.good_steps.detach().cpu()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`'s values on this scale's device."""
        self.value.copy_(state["value"])
        self.good_steps.copy_(state["good_steps"])


def _by_dtype(tensors: list[torch.Tensor]) -> dict[tuple[torch.device, torch.dtype], list[torch.Tensor]]:
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    return groups


class LaggedFlags:
    """A device flag per step, copied to the host without blocking and read one step later.

    On a GPU each step's value goes into a pinned host buffer (two, used in turn) with an event; reading
    the previous step's value waits for that event only, while the current step keeps the GPU busy.
    """

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self._slots: list[tuple[torch.Tensor, Any] | None] = [None, None]
        self._turn = 0

    def push(self, value: torch.Tensor) -> None:
        """Start copying this step's ``value`` (a 0-d tensor) to the host."""
        if self.cuda:
            host = torch.empty((), dtype=value.dtype, pin_memory=True)
            host.copy_(value, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            self._slots[self._turn] = (host, event)
        else:
            self._slots[self._turn] = (value, None)
        self._turn ^= 1

    def previous(self) -> float:
        """The value pushed before the last push (0 when there is none yet)."""
        slot = self._slots[self._turn]  # the older of the two
        if slot is None:
            return 0.0
        value, event = slot
        if event is not None:
            event.synchronize()
        return float(value)
