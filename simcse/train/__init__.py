"""Fine-tuning: the loop's core. The config is :mod:`simcse.config`, the data :mod:`simcse.data`, the run
folder :mod:`simcse.runs`.

- :mod:`~simcse.train.loop`: :func:`train`, the loop, read top to bottom.
- :mod:`~simcse.train.prepared`: the run's Accelerate state (processes, precision, timeouts, refused engines)
  and :func:`prepare`, what the loop runs on (shared with the benchmarks).
- :mod:`~simcse.train.model`: the training model (encoder + head + objective
  modules, MLM, length groups); decoder backbones and LoRA.
- :mod:`~simcse.train.step`: one step from the views to the update, its device-side state in
  :mod:`~simcse.train.device_state` (fp16's loss scale, flags read a step late);
  :mod:`~simcse.train.objective_step`: the configured objective in the loop; :mod:`~simcse.train.grad_cache`:
  the gradient cache; :mod:`~simcse.train.collapse`: the collapse watch.
"""

from simcse.config import TrainConfig, load_config
from simcse.train.loop import train
from simcse.train.prepared import prepare

__all__ = ["TrainConfig", "load_config", "prepare", "train"]
