"""The trainer's state: typed bookkeeping of a run, saved with every checkpoint and returned by ``train()``."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

_OPTIONAL = ("fp16_overflow_skipped", "no_duplicates", "stream")  # recorded only by the runs that have them


@dataclasses.dataclass
class TrainerState:
    """What a run has done so far: written into each checkpoint (``trainer_state.json``) and restored from it.

    :meth:`as_dict` is the form ``train()`` returns and the checkpoint stores; a field of
    ``_OPTIONAL`` that is None (the run has no such thing) is left out of it.
    """

    step: int = 0  # optimizer steps taken
    best_metric: float = -math.inf  # STS-B dev of the saved model (the best so far)
    best_step: int = -1  # its step; -1: no model saved yet
    nonfinite_skipped: int = 0  # updates skipped for a non-finite loss
    mixed_precision: str = "no"  # the precision the run trains in (the launcher's when the recipe leaves it)
    fp16_overflow_skipped: int | None = None  # fp16: updates skipped because the scaled gradients overflowed
    data: dict[str, int] = dataclasses.field(default_factory=dict)  # what reading skipped (ReadReport.counts)
    no_duplicates: dict[str, int] | None = None  # no_duplicates: global batches with a repeated text
    stream: dict[str, int] | None = None  # streaming: the position (examples each process has read, epoch)

    def update(self, values: Mapping[str, Any]) -> None:
        """Take the fields named in ``values`` (a restored checkpoint's state, the data's position)."""
        for field in dataclasses.fields(self):
            if field.name in values:
                setattr(self, field.name, values[field.name])

    def as_dict(self) -> dict[str, Any]:
        """The state as a plain dict (what ``train()`` returns and ``trainer_state.json`` holds)."""
        values = dataclasses.asdict(self)
        return {k: v for k, v in values.items() if k not in _OPTIONAL or v is not None}
