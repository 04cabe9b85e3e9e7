"""Device flags read on the host one step late, so that reading them never stalls the GPU."""

from __future__ import annotations

from typing import Any

import torch


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
