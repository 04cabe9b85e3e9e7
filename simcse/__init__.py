"""simcse: sentence embeddings by contrastive learning (Gao, Yao & Chen, EMNLP 2021).

The public surface: encode with :class:`Encoder`, score with :func:`evaluate_sts` / :func:`score_suite`,
train with the objectives of :data:`OBJECTIVES` (``simcse.train.train``, ``simcse train``). Everything
else lives in the sub-packages: :mod:`simcse.encoder`, :mod:`simcse.objectives`, :mod:`simcse.evaluation`,
:mod:`simcse.cli`.
"""

import warnings

from simcse.encoder import POOLERS, Encoder
from simcse.evaluation import (
    TASKS,
    STSDataError,
    alignment,
    evaluate_sts,
    format_table,
    load_task,
    score_suite,
    spearman,
    uniformity,
)
from simcse.objectives import OBJECTIVES, ObjectiveSpec, build_objective, info_nce

__all__ = [
    "OBJECTIVES",
    "POOLERS",
    "TASKS",
    "Encoder",
    "ObjectiveSpec",
    "STSDataError",
    "alignment",
    "build_objective",
    "evaluate_sts",
    "format_table",
    "info_nce",
    "load_task",
    "score_suite",
    "spearman",
    "uniformity",
]
__version__ = "0.1.0"


def _warn_if_reference_installed() -> None:
    from simcse.install_check import reference_conflict

    message = reference_conflict()
    if message:  # the reference package and this one share the folder simcse/: say so once, at import
        warnings.warn(message, UserWarning, stacklevel=3)


_warn_if_reference_installed()
