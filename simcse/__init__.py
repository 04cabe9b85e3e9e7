"""simcse: sentence embeddings by contrastive learning (Gao, Yao & Chen, EMNLP 2021)."""

from simcse.encoder import Encoder
from simcse.evaluation import aggregate, alignment, cosine_pairs, pearson, spearman, uniformity
from simcse.losses import info_nce
from simcse.pooling import POOLERS, Pooler, pool
from simcse.sts import TASKS, STSDataError, load_task
from simcse.sts_eval import evaluate_sts, format_table

__all__ = [
    "POOLERS",
    "TASKS",
    "Encoder",
    "Pooler",
    "STSDataError",
    "aggregate",
    "alignment",
    "cosine_pairs",
    "evaluate_sts",
    "format_table",
    "info_nce",
    "load_task",
    "pearson",
    "pool",
    "spearman",
    "uniformity",
]
__version__ = "0.1.0"
