"""The typed training config, read by every floor above it (data, runs, train, evaluation, cli).

- :mod:`~simcse.config.train_config`: :class:`TrainConfig` (frozen, the paper's defaults, help text).
- :mod:`~simcse.config.parsing`: :func:`load_config` (YAML, then ``--key value`` overrides), :func:`to_yaml`.
- :mod:`~simcse.config.checks`: every value checked when a config is built (``ValueError``).
"""

from simcse.config.parsing import load_config, parse_overrides, to_yaml
from simcse.config.train_config import FIELDS, PATH_FIELDS, TrainConfig, help_text

__all__ = ["FIELDS", "PATH_FIELDS", "TrainConfig", "help_text", "load_config", "parse_overrides", "to_yaml"]
