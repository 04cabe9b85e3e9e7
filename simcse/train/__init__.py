"""Fine-tuning: the typed config, the data, the step, the run folder and the loop.

- :mod:`~simcse.data.readers` / :mod:`~simcse.train.data`: read and validate rows; tokenize once into an Arrow cache.
- :mod:`~simcse.train.schedule` / :mod:`~simcse.data.stream`: the batch schedule and its loader; streaming data.
- :mod:`~simcse.train.model`: the training wrapper (encoder + head + objective modules, MLM, length groups).
- :mod:`~simcse.train.objective` / :mod:`~simcse.train.step`: one step from the views to the update.
- :mod:`~simcse.train.run_dir` / :mod:`~simcse.train.checkpoint` / :mod:`~simcse.train.card`: the run folder.
- :mod:`~simcse.train.loop`: :func:`train`.
"""

from simcse.config import TrainConfig, load_config
from simcse.train.loop import train

__all__ = ["TrainConfig", "load_config", "train"]
