"""The batch sampler: which examples each step trains on, the same on 1 or N processes and after a resume.

:class:`BatchSchedule` is a function of the step: the same seed gives the same global batches on 1 or
N processes, and a resumed run continues exactly (the checkpoint stores only the step). With
``no_duplicates`` each epoch's global batches are rearranged, still from the seed alone, so that no
two rows of a global batch share a text (in-batch negatives would otherwise include a copy of the
anchor's own positive). :mod:`simcse.data.loader` collates the rows in ``DataLoader`` workers.
"""

from __future__ import annotations

import logging
from collections import deque

import numpy as np

logger = logging.getLogger(__name__)


class BatchSchedule:
    """Deterministic shuffled batches: step ``s`` of any run with the same seed sees the same rows.

    The global batch of ``batch_size * world_size`` examples is split by rank, so the union over
    processes equals the single-process batch (labels offset by rank reconstruct it). Incomplete
    final batches are dropped so every process takes the same number of steps.

    Args:
        n_examples: Rows of the training data.
        batch_size: Rows per process per step.
        world_size: Processes.
        seed: The run's seed (epoch ``e`` shuffles with ``(seed, e)``).
        text_hashes: ``(n_examples, text columns)`` text identities; given, no global batch holds one
            text twice (rows are deferred to a later batch of the epoch) wherever the data allows it.
    """

    def __init__(
        self, n_examples: int, batch_size: int, world_size: int, seed: int, text_hashes: np.ndarray | None = None
    ) -> None:
        from simcse.data.readers import DataError

        self.n, self.batch_size, self.world_size, self.seed = n_examples, batch_size, world_size, seed
        self.steps_per_epoch = n_examples // (batch_size * world_size)
        if self.steps_per_epoch == 0:
            raise DataError(
                f"{n_examples} training examples are fewer than one global batch ({batch_size} x {world_size})"
            )
        self.text_hashes = text_hashes
        self._epoch, self._perm = -1, np.arange(0)
        self._plans: dict[int, np.ndarray] = {}
        self.duplicates: dict[int, tuple[int, int]] = {}  # epoch -> (batches with a repeated text before, after)

    def rows(self, step: int, rank: int) -> np.ndarray:
        """Example indices of ``rank``'s share of global step ``step``."""
        epoch, within = divmod(step, self.steps_per_epoch)
        if self.text_hashes is not None:
            return self.plan(epoch)[within, rank * self.batch_size : (rank + 1) * self.batch_size]
        if epoch != self._epoch:
            self._epoch, self._perm = epoch, self._permutation(epoch)
        start = (within * self.world_size + rank) * self.batch_size
        return self._perm[start : start + self.batch_size]

    def plan(self, epoch: int) -> np.ndarray:
        """``(steps_per_epoch, global batch)`` rows of ``epoch`` without repeated texts (``no_duplicates``)."""
        if epoch not in self._plans:
            assert self.text_hashes is not None
            size = self.batch_size * self.world_size
            perm = self._permutation(epoch)
            plain = perm[: self.steps_per_epoch * size].reshape(self.steps_per_epoch, size)  # (steps, global)
            order = _spread(perm, self.text_hashes, self.steps_per_epoch, size)
            plan, left = _unique_batches(order, self.text_hashes, size, self.steps_per_epoch)
            before = sum(_has_repeat(self.text_hashes[b]) for b in plain)
            self._plans[epoch], self.duplicates[epoch] = plan, (before, left)
            logger.info(
                "no_duplicates: epoch %d: %d of %d global batches held a repeated text, %d still do%s",
                epoch, before, self.steps_per_epoch, left, " (the data repeats a text too often)" if left else "",
            )  # fmt: skip
        return self._plans[epoch]

    def duplicate_report(self) -> dict[str, int]:
        """Over the epochs planned: global batches that held a repeated text without and with ``no_duplicates``."""
        return {
            "batches_with_duplicates_before": sum(b for b, _ in self.duplicates.values()),
            "batches_with_duplicates_after": sum(a for _, a in self.duplicates.values()),
        }

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, epoch]).permutation(self.n)


def _has_repeat(hashes: np.ndarray) -> bool:
    """Whether two rows of ``(rows, columns)`` share a text (a text repeated within one row does not count)."""
    seen: set[int] = set()
    for row in hashes.tolist():
        own = set(row)
        if not seen.isdisjoint(own):
            return True
        seen |= own
    return False


def _spread(perm: np.ndarray, hashes: np.ndarray, steps: int, size: int) -> np.ndarray:
    """``perm`` reordered so that the copies of a text fall into different batches (then checked by the greedy).

    Rows are grouped by their most repeated text, groups in order of first appearance in ``perm``, and
    dealt out across the epoch's batches like cards: row ``j`` of the grouped order to batch ``j % steps``.
    """
    n = len(perm)
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    freq = counts[inverse.reshape(hashes.shape)]  # (n, columns): how often each row's texts occur
    key = hashes[np.arange(n), freq.argmax(axis=1)][perm]  # (n,): each row's most repeated text, in perm order
    keys, first = np.unique(key, return_index=True)
    grouped = perm[np.argsort(first[np.searchsorted(keys, key)], kind="stable")]
    dealt = grouped[: steps * size].reshape(size, steps).T  # (steps, size): batch b = grouped[b::steps]
    return np.concatenate([dealt.ravel(), grouped[steps * size :]])


def _unique_batches(perm: np.ndarray, hashes: np.ndarray, size: int, steps: int) -> tuple[np.ndarray, int]:
    """Greedy: take rows in ``perm`` order, deferring a row whose text is already in the batch.

    Deferred rows are tried first for the next batches; when the epoch has no row left that fits, a
    batch is filled with deferred rows anyway (counted). Returns the ``(steps, size)`` plan and that count.
    """
    plan = np.empty((steps, size), dtype=np.int64)
    waiting: deque[int] = deque()
    fresh = iter(perm.tolist())
    left = 0
    for b in range(steps):
        batch: list[int] = []
        seen: set[int] = set()

        def take(i: int, batch: list[int] = batch, seen: set[int] = seen) -> bool:
            own = set(hashes[i].tolist())
            if seen.isdisjoint(own):
                batch.append(i)
                seen.update(own)
                return True
            return False

        for _ in range(len(waiting)):  # each waiting row is tried once per batch
            i = waiting.popleft()
            if len(batch) == size or not take(i):
                waiting.append(i)
        while len(batch) < size and (i := next(fresh, None)) is not None:
            if not take(i):
                waiting.append(i)
        if len(batch) < size:  # nothing fits any more: the repeats stay together in this batch
            left += 1
            while len(batch) < size:
                batch.append(waiting.popleft())
        plan[b] = batch
    return plan, left
