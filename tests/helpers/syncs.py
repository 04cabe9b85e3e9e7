"""Counting, on any device, the operations that make a CUDA device wait for the host (a sync)."""

from __future__ import annotations

import os
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

SYNC_OPS = ("aten.nonzero", "aten.masked_select", "aten._local_scalar_dense", "aten.unique", "aten._unique2")


class WouldSync(TorchDispatchMode):
    """Ops that make a CUDA device sync with the host, issued by simcse's own code (not by transformers').

    On the CPU nothing waits, so the ops themselves are counted: a value read to the host, an output whose
    size depends on the data (boolean indexing runs ``nonzero``), and tensors built from Python data on the
    device (``torch.tensor(..., device=...)``: a blocking copy from pageable host memory).
    """

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    @staticmethod
    def _ours() -> str | None:
        """``file:line`` of the first caller outside torch when it is simcse's code, else None."""
        frame = sys._getframe(2)
        while frame is not None:
            path = frame.f_code.co_filename
            if os.sep + "torch" + os.sep not in path and "_python_dispatch" not in path:
                ours = os.sep + "simcse" + os.sep in path
                return f"{os.path.basename(path)}:{frame.f_lineno}" if ours else None
            frame = frame.f_back
        return None

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = str(func).rsplit(".", 1)[0]
        bool_index = name in ("aten.index", "aten.index_put", "aten.index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] if len(args) > 1 else ()) or ()
        )
        if (name in SYNC_OPS or bool_index or name == "aten.lift_fresh") and (where := self._ours()):
            self.found.append(f"{name} at {where}")
        return func(*args, **(kwargs or {}))
