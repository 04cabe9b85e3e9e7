"""Streaming training data (``streaming: true``): read, shuffle with a buffer and tokenize on the fly.

For corpora that do not fit on disk as a tokenized cache, or hub datasets too large to download. Each
epoch is a ``datasets`` ``IterableDataset`` over the validated rows, shuffled with a buffer of
``shuffle_buffer`` examples (seed ``seed + epoch``) and split by process with
``datasets.distributed.split_dataset_by_node``; epochs follow each other without a break, so every
process has a batch at every step. The shuffle is approximate: an example moves at most about a buffer
away from its place in the file. The position is a function of the step (each process has read
``step * batch_size`` of its examples), recorded in the checkpoint; a resumed run reads past that many
(validating, not tokenizing, them) and continues with the same batches as an uninterrupted run.
A background thread tokenizes and collates ahead of the training step.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import torch

from simcse.config import TrainConfig
from simcse.data.columns import encode_column, prompt_keys, source_name, source_rows, tokenized_keys
from simcse.data.readers import DataError, ReadReport
from simcse.distributed import share_outcome
from simcse.encoder.padding import pad_ragged, ragged

logger = logging.getLogger(__name__)

_PREFETCH = 4  # batches ready ahead of the step
_JOIN_TIMEOUT_S = 10.0  # the reader checks for the end between batches (a blocked hub read may not)


class StreamData:
    """A stream of this process's training batches (see the module docstring).

    Args:
        cfg: The run's config (source, ``batch_size``, ``seed``, ``shuffle_buffer``, ``max_seq_len``).
        tokenizer: The encoder's tokenizer.
        rank: This process's index.
        world_size: Processes.
    """

    steps_per_epoch = None  # unknown until read: a streaming run gives max_steps

    def __init__(self, cfg: TrainConfig, tokenizer: Any, rank: int, world_size: int) -> None:
        self.cfg, self.tokenizer, self.rank, self.world_size = cfg, tokenizer, rank, world_size
        self.columns, self.keys = cfg.text_columns, prompt_keys(cfg, tokenized_keys(tokenizer))
        self.view_columns = cfg.view_columns
        self.error: BaseException | None = None  # a bad row met during training (the loop stops every process)
        self._report = ReadReport()  # the first pass over the source (skipped lines are counted once)
        self.epoch = 0

    @property
    def report(self) -> dict[str, int]:
        """What reading has skipped so far (complete once the first epoch has been read)."""
        return self._report.counts()

    def epoch_rows(self, epoch: int) -> Iterator[tuple[str, ...]]:
        """This process's rows of ``epoch``: the whole source shuffled with a buffer, then split by process."""
        from datasets import Features, IterableDataset, Value
        from datasets.distributed import split_dataset_by_node

        report = self._report if epoch == 0 else ReadReport()
        cfg, names = self.cfg, [f"text_{c}" for c in range(len(self.columns))]

        def rows() -> Iterator[dict[str, str]]:
            for row in source_rows(cfg, source_name(cfg), report, streaming=True):
                yield dict(zip(names, row))

        ds = IterableDataset.from_generator(rows, features=Features({n: Value("string") for n in names}))
        ds = ds.shuffle(seed=cfg.seed, buffer_size=cfg.shuffle_buffer)
        ds.set_epoch(epoch)  # epoch e shuffles with seed + e
        ds = split_dataset_by_node(ds, rank=self.rank, world_size=self.world_size)
        for example in ds:
            yield tuple(example[n] for n in names)

    def examples(self, skip: int = 0) -> Iterator[tuple[str, ...]]:
        """This process's rows of every epoch, one after the other, after the first ``skip``."""
        epoch = 0
        while True:
            self.epoch, n = epoch, 0
            for row in self.epoch_rows(epoch):
                n += 1
                if skip:
                    skip -= 1
                    continue
                yield row
            if n == 0:
                raise DataError(f"{source_name(self.cfg)}: no rows for process {self.rank} of {self.world_size}")
            epoch += 1

    def collate(self, rows: list[tuple[str, ...]]) -> dict[str, torch.Tensor]:
        """Tokenize ``rows`` and pad them view-major, as :meth:`simcse.data.loader.TokenizedViews.collate` does."""
        encoded = []
        for c in range(len(self.columns)):
            texts = [row[c] for row in rows]
            encoded.append(encode_column(self.tokenizer, texts, self.columns[c], self.cfg))  # with its prompt
        parts = {k: [ragged(encoded[c][k]) for c in self.view_columns] for k in self.keys}
        return pad_ragged(parts, self.tokenizer.pad_token_id or 0)

    def cpu_batches(self, start: int) -> Iterator[dict[str, torch.Tensor]]:
        """Batches from step ``start`` on (the rows of the earlier steps are read past, not tokenized)."""
        rows: list[tuple[str, ...]] = []
        for row in self.examples(skip=start * self.cfg.batch_size):
            rows.append(row)
            if len(rows) == self.cfg.batch_size:
                yield self.collate(rows)
                rows = []

    def batches(self, start: int, total: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of steps ``start ..`` on ``device``, prepared by a background thread.

        A bad row before the first batch stops every process here (one agreement); one met later sets
        :attr:`error` and repeats the previous batch, so the step's agreement stops every process together.
        """
        ready: queue.Queue = queue.Queue(maxsize=_PREFETCH)
        done = threading.Event()

        def produce() -> None:
            try:
                for batch in self.cpu_batches(start):
                    while not done.is_set():
                        try:
                            ready.put(batch, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if done.is_set():
                        return
            except BaseException as err:  # handed to the training thread
                ready.put(err)

        thread = threading.Thread(target=produce, name="simcse-stream", daemon=True)
        thread.start()
        try:
            first = ready.get()  # the first rows of a hub stream may take a while: the others wait on the long group
            share_outcome(first if isinstance(first, BaseException) else None, f"reading {source_name(self.cfg)}")
            previous = {k: v.to(device) for k, v in first.items()}
            yield previous
            while True:
                item = ready.get() if self.error is None else None
                if isinstance(item, BaseException):
                    self.error = item
                elif item is not None:
                    previous = {k: v.to(device) for k, v in item.items()}
                yield previous
        finally:
            done.set()
            # let the reader leave before the caller goes on (and the process exits): a thread still inside
            # Arrow's or the tokenizer's native code while the interpreter tears down can abort the process
            thread.join(timeout=_JOIN_TIMEOUT_S)

    def state(self, step: int) -> dict[str, Any]:
        """The stream position to record with the checkpoint (examples each process has read)."""
        position = {"examples_per_process": step * self.cfg.batch_size, "epoch_read": self.epoch}
        return {"data": self.report, "stream": position}
