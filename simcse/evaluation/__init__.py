"""Evaluation: STS with SentEval's protocol (the SimCSE paper's numbers), and evaluators for the user's own data.

- :mod:`~simcse.evaluation.tasks`: the task registry (STS12-16, STS-B, SICK-R) and their loaders.
- :mod:`~simcse.evaluation.scoring`: :func:`evaluate_sts` (any encode function), :func:`score_suite`
  (an :class:`~simcse.Encoder` on the suite) and the paper's table.
- :mod:`~simcse.evaluation.metrics`: Spearman / Pearson, SentEval's aggregation, alignment and uniformity.
- :mod:`~simcse.evaluation.dev`: :class:`DevEvaluator`, the STS-B / SICK-R dev scores training selects on.
- :mod:`~simcse.evaluation.evaluators`: evaluators from specs (:func:`build_evaluators`, :func:`run_evaluators`):
  :class:`STSEvaluator`, :class:`RetrievalEvaluator` (BEIR folders or columns; :mod:`~.ranking` holds the
  chunked exact search and trec_eval's metrics), :class:`PairClassificationEvaluator`; each split across
  processes (:mod:`~simcse.evaluation.sharding`).
"""

from simcse.evaluation.base import Evaluator
from simcse.evaluation.dev import DevEvaluator
from simcse.evaluation.evaluators import build_evaluator, build_evaluators, load_specs, run_evaluators
from simcse.evaluation.metrics import aggregate, alignment, cosine_pairs, pearson, spearman, uniformity
from simcse.evaluation.pair_classification import PairClassificationEvaluator, load_labelled_pairs
from simcse.evaluation.retrieval import RetrievalEvaluator
from simcse.evaluation.retrieval_data import RetrievalData, load_beir, load_retrieval_pairs, write_beir
from simcse.evaluation.scoring import evaluate_sts, format_table, score_suite
from simcse.evaluation.sts import STSEvaluator
from simcse.evaluation.tables import EvalDataError
from simcse.evaluation.tasks import (
    PAPER_COLUMNS,
    TASKS,
    STSDataError,
    STSTask,
    load_custom,
    load_scored_pairs,
    load_task,
)

__all__ = [
    "PAPER_COLUMNS",
    "TASKS",
    "DevEvaluator",
    "EvalDataError",
    "Evaluator",
    "PairClassificationEvaluator",
    "RetrievalData",
    "RetrievalEvaluator",
    "STSDataError",
    "STSEvaluator",
    "STSTask",
    "aggregate",
    "alignment",
    "build_evaluator",
    "build_evaluators",
    "cosine_pairs",
    "evaluate_sts",
    "format_table",
    "load_beir",
    "load_custom",
    "load_labelled_pairs",
    "load_retrieval_pairs",
    "load_scored_pairs",
    "load_specs",
    "load_task",
    "pearson",
    "run_evaluators",
    "score_suite",
    "spearman",
    "uniformity",
    "write_beir",
]
