"""STS evaluation, SentEval's protocol (the SimCSE paper's numbers).

- :mod:`~simcse.evaluation.tasks`: the task registry (STS12-16, STS-B, SICK-R) and their loaders.
- :mod:`~simcse.evaluation.scoring`: :func:`evaluate_sts` (any encode function), :func:`score_suite`
  (an :class:`~simcse.Encoder` on the suite) and the paper's table.
- :mod:`~simcse.evaluation.metrics`: Spearman / Pearson, SentEval's aggregation, alignment and uniformity.
- :mod:`~simcse.evaluation.dev`: :class:`DevEvaluator`, the STS-B / SICK-R dev scores training selects on.
"""

from simcse.evaluation.dev import DevEvaluator
from simcse.evaluation.metrics import aggregate, alignment, cosine_pairs, pearson, spearman, uniformity
from simcse.evaluation.scoring import evaluate_sts, format_table, score_suite
from simcse.evaluation.tasks import PAPER_COLUMNS, TASKS, STSDataError, STSTask, load_custom, load_task

__all__ = [
    "PAPER_COLUMNS",
    "TASKS",
    "DevEvaluator",
    "STSDataError",
    "STSTask",
    "aggregate",
    "alignment",
    "cosine_pairs",
    "evaluate_sts",
    "format_table",
    "load_custom",
    "load_task",
    "pearson",
    "score_suite",
    "spearman",
    "uniformity",
]
