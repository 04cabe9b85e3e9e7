"""Several training sources in one run (``datasets:``): each step's batch from one source, chosen by the step.

Each source is opened as a single-source run of its config would open it (its own Arrow cache, or its own
stream, its own :class:`~simcse.data.sampler.BatchSchedule`), so its batches are the ones that run would
train on. :class:`SourceSchedule` says which source step ``s`` reads, and how many batches that source has
given before it: a function of the step and the seed alone, so a resumed run continues exactly and 2
processes take the same batches as 1 (every process reads the same source at each step, its own share of
that source's global batch). A batch never mixes sources: their modes and columns may differ.

- ``proportional`` (the default): each source's share of the steps is its share of the batches of one
  pass over all sources (``sum`` of their batches per epoch: the run's epoch); the order within each pass
  is a seeded shuffle.
- ``round_robin``: step ``s`` reads source ``s mod k``; a small source repeats its epochs more often.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)


class SourceSchedule:
    """Which source each step reads, and that source's own step: ``(source, source_step)`` of step ``s``.

    Args:
        batches: Each source's batches per epoch (``proportional``); round robin reads only their number.
        rule: ``proportional`` or ``round_robin``.
        seed: The run's seed (pass ``e`` of ``proportional`` shuffles with ``(seed, e)``).
    """

    def __init__(self, batches: Sequence[int | None], rule: str, seed: int) -> None:
        self.k, self.rule, self.seed = len(batches), rule, seed
        if rule == "proportional":
            if any(b is None or b < 1 for b in batches):
                raise ValueError("dataset_sampling proportional needs every source's number of batches")
            self.batches = [int(b) for b in batches]  # type: ignore[arg-type]
            self.per_pass = sum(self.batches)
        elif rule == "round_robin":
            self.batches, self.per_pass = [], self.k
        else:
            raise ValueError(f"dataset_sampling must be proportional or round_robin, got {rule!r}")
        self._pass, self._order, self._before = -1, np.arange(0), np.zeros((0, self.k), dtype=np.int64)

    def _plan(self, p: int) -> None:
        """Pass ``p``'s order of sources, and how many steps of each came before every position."""
        if p != self._pass:
            sources = np.repeat(np.arange(self.k), self.batches)  # (per_pass,)
            self._order = np.random.default_rng([self.seed, p]).permutation(sources)
            seen = np.eye(self.k, dtype=np.int64)[self._order]  # (per_pass, k) one-hot
            self._before = np.cumsum(seen, axis=0) - seen  # (per_pass, k): counts before each position
            self._pass = p

    def __call__(self, step: int) -> tuple[int, int]:
        """``(source, source_step)``: the source step ``step`` reads and that source's own step counter."""
        if self.rule == "round_robin":
            return step % self.k, step // self.k
        p, within = divmod(step, self.per_pass)
        self._plan(p)
        source = int(self._order[within])
        return source, p * self.batches[source] + int(self._before[within, source])

    def counts(self, steps: int) -> list[int]:
        """How many of the first ``steps`` steps each source gave (its next source step)."""
        if steps <= 0:
            return [0] * self.k
        if self.rule == "round_robin":
            return [(steps - i + self.k - 1) // self.k for i in range(self.k)]
        p, within = divmod(steps, self.per_pass)
        self._plan(p)
        done = self._before[within] if within < self.per_pass else np.zeros(self.k, dtype=np.int64)
        return [p * b + int(c) for b, c in zip(self.batches, done)]


class MixedData:
    """The batches of several sources, each step's from the one :class:`SourceSchedule` picks.

    Args:
        sources: Each source's data (:class:`~simcse.data.loader.MapData` or
            :class:`~simcse.data.stream.StreamData`), opened from its own config.
        names: The sources' names (for the per-source counts).
        rule: ``proportional`` or ``round_robin``.
        seed: The run's seed.
    """

    def __init__(self, sources: Sequence[Any], names: Sequence[str], rule: str, seed: int) -> None:
        self.sources, self.names = list(sources), list(names)
        self.schedule = SourceSchedule([s.steps_per_epoch for s in self.sources], rule, seed)
        known = all(s.steps_per_epoch for s in self.sources)
        self.steps_per_epoch: int | None = self.schedule.per_pass if known else None  # a stream's is unknown
        for name, source in zip(self.names, self.sources):
            logger.info("source %s: %s batches per epoch", name, source.steps_per_epoch or "unknown (streamed)")

    @property
    def report(self) -> dict[str, int]:
        """What reading skipped, summed over the sources (each source's own is in :meth:`state`)."""
        total: dict[str, int] = {}
        for source in self.sources:
            for key, n in source.report.items():
                total[key] = total.get(key, 0) + n
        return total

    @property
    def error(self) -> BaseException | None:
        """A bad row a stream met during training (the loop stops every process), else None."""
        return next((s.error for s in self.sources if s.error is not None), None)

    def batches(self, start: int, total: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of steps ``start .. total - 1``: each source's own batches, in the order the schedule picks.

        A source's steps within the range are consecutive source steps, so each source gives them from one
        iterator (its loader collating ahead, or its stream) started at its count of the steps before ``start``.
        """
        first, last = self.schedule.counts(start), self.schedule.counts(total)
        iters = [s.batches(a, b, device) if b > a else iter(()) for s, a, b in zip(self.sources, first, last)]
        try:
            for step in range(start, total):
                yield next(iters[self.schedule(step)[0]])
        finally:
            for it in iters:
                close = getattr(it, "close", None)
                if close is not None:
                    close()

    def state(self, step: int) -> dict[str, Any]:
        """Per source: the batches it gave in the first ``step`` steps, and its own state (stream position...)."""
        counts = self.schedule.counts(step)
        per_source = {}
        for name, source, n in zip(self.names, self.sources, counts):
            per_source[name] = {"batches": n, "skipped": source.report, **source.state(n)}
        return {"sources": per_source}
