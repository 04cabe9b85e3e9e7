"""The dev evaluator used during training: STS-B dev and SICK-R dev Spearman, alignment and uniformity."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from simcse.data_dir import senteval_dir
from simcse.evaluation.scoring import evaluate_sts
from simcse.evaluation.sizes import TruncatingEncoder
from simcse.evaluation.tasks import load_sick, load_stsb
from simcse.io import StrPath


class DevEvaluator:
    """STS-B dev (and SICK-R dev) Spearman with alignment/uniformity, files read once.

    Args:
        data_dir: The data directory (``None``: ``$SIMCSE_DATA_DIR``, else ``./data``).
        batch_size: Sentences per encoding batch.
        truncate_dims: Also score STS-B dev on the first ``d`` dimensions of the vectors, for each ``d``
            (``stsb_dev@<d>``: a Matryoshka run's trained sizes); the sentences are encoded once.
    """

    def __init__(self, data_dir: StrPath | None, batch_size: int, truncate_dims: Sequence[int] | None = None) -> None:
        root = senteval_dir(data_dir)  # resolved once: both tasks read the same SentEval folder
        self.tasks = {"STSBenchmark": load_stsb(root, "dev"), "SICKRelatedness": load_sick(root, "dev")}
        self.batch_size, self.truncate_dims = batch_size, list(truncate_dims or [])

    def __call__(self, encoder: Any, use_head: bool) -> dict[str, float]:
        """Score ``encoder`` (left in its previous train/eval mode)."""
        memo: dict = {}
        # with sizes to score, the full vectors are kept for them (each sentence encoded once)
        full = TruncatingEncoder(encoder, encoder.dim, memo) if self.truncate_dims else encoder
        result = evaluate_sts(
            lambda s: full.encode(s, batch_size=self.batch_size, use_head=use_head),
            tasks=list(self.tasks),
            loaded=self.tasks,
            stsb_split="dev",
        )
        out = {
            "stsb_dev": result["tasks"]["STSBenchmark"]["score"],
            "sickr_dev": result["tasks"]["SICKRelatedness"]["score"],
            "alignment": result["alignment"],
            "uniformity": result["uniformity"],
        }
        for dim in self.truncate_dims:
            cut = TruncatingEncoder(encoder, dim, memo)
            sized = evaluate_sts(
                lambda s, cut=cut: cut.encode(s, batch_size=self.batch_size, use_head=use_head),
                tasks=["STSBenchmark"], loaded=self.tasks, stsb_split="dev", align_uniform=False,
            )  # fmt: skip
            out[f"stsb_dev@{dim}"] = sized["tasks"]["STSBenchmark"]["score"]
        return out
