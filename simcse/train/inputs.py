"""The run's training input: map-style Arrow data on the step schedule, or a stream (``streaming: true``)."""

from __future__ import annotations

from typing import Any

from simcse.config import TrainConfig
from simcse.data.cache import load_training_views
from simcse.data.loader import MapData
from simcse.data.stream import StreamData


def open_training_data(cfg: TrainConfig, tokenizer: Any, accelerator: Any) -> MapData | StreamData:
    """The run's data: :class:`simcse.data.loader.MapData` (Arrow, tokenized once by the main process,
    memory-mapped by every process), or :class:`simcse.data.stream.StreamData` with ``streaming: true``.

    Either gives ``batches(start, total, device)`` (this process's rows of every step from ``start``),
    ``steps_per_epoch``, ``report`` (what reading skipped), ``state(step)`` and ``error``.
    """
    if cfg.streaming:
        return StreamData(cfg, tokenizer, accelerator.process_index, accelerator.num_processes)
    views = load_training_views(cfg, tokenizer, accelerator.is_main_process, accelerator)
    return MapData(views, cfg, accelerator.process_index, accelerator.num_processes)
