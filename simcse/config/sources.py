"""Several training sources in one run (``datasets:``): each source's own config, checked like a run's.

A source is a mapping of data options; every option it leaves out is the top level's. Each source is
read, cached (or streamed) and batched exactly as a single-source run of its config would be, so a
one-item list trains on the same batches as the plain config.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

# the options a source may set (the rest of the run, model and objective, is one for all sources)
SOURCE_KEYS = (
    "name", "mode", "train_file", "dataset_name", "dataset_config", "dataset_split", "columns", "prompt", "prompts",
    "data_format", "max_train_samples", "on_bad_line", "streaming", "shuffle_buffer", "no_duplicates",
)  # fmt: skip


def source_label(cfg: Any, index: int) -> str:
    """A source's name: its ``name``, else its file's base name or hub dataset, else ``source<i>``."""
    spec = cfg.datasets[index]
    if spec.get("name"):
        return str(spec["name"])
    origin = spec.get("dataset_name") or spec.get("train_file")
    return os.path.basename(os.fspath(origin)) if origin else f"source{index}"


def source_configs(cfg: Any) -> list[Any]:
    """One config per source of ``cfg.datasets`` (the top level's values where a source is silent).

    Raises:
        ValueError: in one line naming the source: an unknown key, a bad value, two sources with one name.
    """
    configs, labels = [], []
    for i, spec in enumerate(cfg.datasets or []):
        where = f"datasets[{i}]"
        unknown = sorted(set(spec) - set(SOURCE_KEYS))
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; a source takes {', '.join(SOURCE_KEYS)}")
        # YAML / JSON values (a list of column names is kept as the config's tuple); checked with the config below
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in spec.items() if k != "name"}
        if "train_file" in values and "dataset_name" not in values:
            values["dataset_name"] = None  # the source's own file, not the top level's hub dataset
        if values.get("mode", cfg.mode) != "triplets":
            values["hard_negative_weight"] = 0.0  # it weighs hard negatives, which this source's batches lack
        if "prompt" in values:
            values.setdefault("prompts", None)
        try:
            configs.append(dataclasses.replace(cfg, datasets=None, **values))
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        labels.append(source_label(cfg, i))
    twice = sorted({n for n in labels if labels.count(n) > 1})
    if twice:
        raise ValueError(f"datasets: several sources are named {', '.join(twice)}; give each a distinct name")
    return configs
