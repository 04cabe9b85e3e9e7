"""Map-style training data: the memory-mapped token ids, the batch of every step, the loader that collates ahead.

:class:`TokenizedViews` reads the Arrow file that :mod:`simcse.data.cache` built; :class:`MapData` gives
this process's batches of the steps asked for, on the rows :class:`simcse.data.sampler.BatchSchedule`
chooses, collated by ``DataLoader`` workers (:func:`batch_loader`) ahead of the training step.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from simcse.data.sampler import BatchSchedule
from simcse.encoder.padding import pad_ragged

TOKENS_FILE, META_FILE = "tokens.arrow", "meta.json"  # a cache folder's files


class TokenizedViews:
    """Token ids of every example's views in a memory-mapped Arrow table; :meth:`collate` pads a batch.

    Columns ``<key>_<c>`` hold the token ids of text column ``c`` (``input_ids``, ``token_type_ids``...);
    ``hash_<c>`` its text's 64-bit identity (for ``no_duplicates``). Unsupervised data has one text column,
    read as both views.
    """

    def __init__(self, data: Any, keys: Sequence[str], view_columns: Sequence[int], pad_id: int, report: dict) -> None:
        self.data, self.keys, self.view_columns, self.pad_id = data, list(keys), list(view_columns), pad_id
        self.report = report  # what reading skipped (ReadReport.counts)
        self._arrow = data.with_format("arrow")

    @classmethod
    def open(cls, folder: str) -> TokenizedViews:
        """Memory-map a cache folder built by :func:`simcse.data.cache.load_training_views`."""
        from datasets import Dataset

        with open(os.path.join(folder, META_FILE), encoding="utf-8") as f:
            meta = json.load(f)
        data = Dataset.from_file(os.path.join(folder, TOKENS_FILE), in_memory=False)
        views = cls(data, meta["keys"], meta["view_columns"], meta["pad_id"], meta["report"])
        views.first_bad, views.folder = meta.get("first_bad"), folder
        return views

    def __len__(self) -> int:
        return len(self.data)

    @property
    def features(self) -> list[dict[str, Any]]:
        """``features[v][key][i]``: example ``i``'s view ``v`` token ids (lazy, read from the Arrow file)."""
        return [{k: self.data[f"{k}_{c}"] for k in self.keys} for c in self.view_columns]

    def text_hashes(self) -> np.ndarray:
        """``(examples, text columns)`` int64 identities of the texts (equal texts, equal values)."""
        columns = sorted(set(self.view_columns))
        table = self._arrow[:]
        return np.stack([table.column(f"hash_{c}").to_numpy() for c in columns], axis=1)  # (n, columns)

    def collate(self, rows: Sequence[int], step: int = 0) -> dict[str, torch.Tensor]:
        """Pad views of ``rows`` to their longest length, view-major: ``(views * len(rows), seq)`` (any ``step``)."""
        table = self._arrow[[int(r) for r in rows]]
        parts = {k: [_ragged(table.column(f"{k}_{c}")) for c in self.view_columns] for k in self.keys}
        return pad_ragged(parts, self.pad_id)


def _ragged(column: Any) -> tuple[np.ndarray, np.ndarray]:
    """(lengths, flat values) of an Arrow list column."""
    import pyarrow.compute as pc

    column = column.combine_chunks()
    return pc.list_value_length(column).to_numpy(zero_copy_only=False), column.flatten().to_numpy()



class _StepBatches(torch.utils.data.Dataset):
    """Item ``step``: this process's collated rows of that step."""

    def __init__(self, views: Any, schedule: BatchSchedule, rank: int) -> None:
        self.views, self.schedule, self.rank = views, schedule, rank

    def __len__(self) -> int:
        return 2**62  # indexed by step; the loader's sampler says which

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        return self.views.collate(self.schedule.rows(step, self.rank), step)


def batch_loader(
    views: Any, schedule: BatchSchedule, rank: int, steps: range, workers: int, pin_memory: bool, prefetch: int = 4
) -> Iterator[dict[str, torch.Tensor]]:
    """This process's batches of ``steps``, collated by ``workers`` processes ahead of the training step.

    Workers (forked) share the memory-mapped data; batches come back in step order, in pinned memory on CUDA.
    """
    loader = torch.utils.data.DataLoader(
        _StepBatches(views, schedule, rank), sampler=steps, batch_size=None, num_workers=workers,
        pin_memory=pin_memory, prefetch_factor=prefetch if workers else None, persistent_workers=False,
        generator=torch.Generator(),  # its own: seeding workers must not draw from the (checkpointed) global RNG
    )  # fmt: skip
    return iter(loader)


class MapData:
    """Arrow-backed training data (every row known up front): the batch schedule and its loader.

    Args:
        views: The tokenized, memory-mapped data.
        cfg: The run's config (``batch_size``, ``seed``, ``no_duplicates``, ``dataloader_workers``).
        rank: This process's index.
        world_size: Processes.
    """

    def __init__(self, views: Any, cfg: Any, rank: int, world_size: int) -> None:
        hashes = views.text_hashes() if cfg.no_duplicates else None
        self.views, self.cfg, self.rank = views, cfg, rank
        self.schedule = BatchSchedule(len(views), cfg.batch_size, world_size, cfg.seed, hashes)
        self.steps_per_epoch: int | None = self.schedule.steps_per_epoch
        self.report: dict[str, int] = views.report
        self.error: Exception | None = None  # every row was validated before the first step

    def batches(self, start: int, total: int, device: torch.device) -> Iterator[dict[str, torch.Tensor]]:
        """Batches of steps ``start .. total - 1`` on ``device``, collated ahead by the loader's workers."""
        if self.cfg.no_duplicates:  # planned here, before the workers fork, so they share the plans
            per_epoch = self.schedule.steps_per_epoch
            for epoch in range(start // per_epoch, (total - 1) // per_epoch + 1):
                self.schedule.plan(epoch)
        workers = dataloader_workers(self.cfg.dataloader_workers, device)
        loader = batch_loader(self.views, self.schedule, self.rank, range(start, total), workers, device.type == "cuda")
        for batch in loader:
            yield {k: v.to(device, non_blocking=True) for k, v in batch.items()}

    def state(self, step: int) -> dict[str, Any]:
        """What to record in the trainer state (the position is the step itself)."""
        return {"no_duplicates": self.schedule.duplicate_report()} if self.cfg.no_duplicates else {}


def dataloader_workers(configured: int | None, device: torch.device) -> int:
    """Loader processes: as configured, else 2 beside a GPU and 0 on CPU (where cores are the training's)."""
    if configured is not None:
        return configured
    return 2 if device.type == "cuda" else 0
