"""The dev evaluator used during training: STS-B dev and SICK-R dev Spearman, alignment and uniformity."""

from __future__ import annotations

from typing import Any

from simcse.data_dir import senteval_dir
from simcse.evaluation.scoring import evaluate_sts
from simcse.evaluation.tasks import load_sick, load_stsb
from simcse.io import StrPath


class DevEvaluator:
    """STS-B dev (and SICK-R dev) Spearman with alignment/uniformity, files read once.

    Args:
        data_dir: The data directory (``None``: ``$SIMCSE_DATA_DIR``, else ``./data``).
        batch_size: Sentences per encoding batch.
    """

    def __init__(self, data_dir: StrPath | None, batch_size: int) -> None:
        root = senteval_dir(data_dir)  # resolved once: both tasks read the same SentEval folder
        self.tasks = {"STSBenchmark": load_stsb(root, "dev"), "SICKRelatedness": load_sick(root, "dev")}
        self.batch_size = batch_size

    def __call__(self, encoder: Any, use_head: bool) -> dict[str, float]:
        """Score ``encoder`` (left in its previous train/eval mode)."""
        result = evaluate_sts(
            lambda s: encoder.encode(s, batch_size=self.batch_size, use_head=use_head),
            tasks=list(self.tasks),
            loaded=self.tasks,
            stsb_split="dev",
        )
        return {
            "stsb_dev": result["tasks"]["STSBenchmark"]["score"],
            "sickr_dev": result["tasks"]["SICKRelatedness"]["score"],
            "alignment": result["alignment"],
            "uniformity": result["uniformity"],
        }
