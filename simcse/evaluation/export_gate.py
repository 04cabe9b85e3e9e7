"""The accuracy gate of ``simcse export``: an int8 graph may not lose more than a limit of STS Spearman.

Each quantized file is scored against the float32 graph on one STS task (STS-B dev by default, or the
user's own pairs file), both with ONNX Runtime and the folder's own pooling and head. A loss above
``max_loss`` (Spearman x 100) refuses the export, so nothing is written, unless ``force``.

Example:
    >>> export_onnx(folder, quantize=("static",), calibration=sentences,
    ...             check=STSGate("STSBenchmark", max_loss=0.3))  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from simcse.evaluation.scoring import evaluate_sts
from simcse.evaluation.tasks import STSTask, load_task

logger = logging.getLogger(__name__)

DEFAULT_MAX_LOSS = 0.3  # Spearman x 100 points; the target of issue 22 on every STS task's average


class QualityGateError(ValueError):
    """A quantized graph lost more than the allowed STS score; nothing was written."""


@dataclass(frozen=True)
class GateResult:
    """One quantized file's score on the gate's task next to float32's."""

    file: str
    score: float
    reference: float
    loss: float  # reference - score


def _score(folder: str, graph: str, task: STSTask, batch_size: int) -> float:
    from simcse.encoder import Encoder

    encoder = Encoder.from_pretrained(folder, backend="onnx", onnx_file=graph)
    result = evaluate_sts(
        lambda s: encoder.encode(s, batch_size=batch_size), [task.name], align_uniform=False, loaded={task.name: task}
    )
    return float(result["tasks"][task.name]["score"])


class STSGate:
    """A ``check`` for :func:`simcse.encoder.export.export_onnx`: score every int8 graph against float32.

    Args:
        task: An STS task name (``STSBenchmark``: its dev split) or a pairs file (sentence1<TAB>sentence2<TAB>score).
        data_dir: Data directory of the named tasks.
        max_loss: The largest allowed drop of Spearman x 100.
        force: Write the files even when one loses more (the scores are still logged).
        batch_size: Sentences per forward pass.

    Raises:
        FileNotFoundError / STSDataError: The task's file is missing or malformed (at construction, before
            any export work).
    """

    def __init__(
        self, task: str = "STSBenchmark", data_dir: str | None = None, max_loss: float = DEFAULT_MAX_LOSS,
        force: bool = False, batch_size: int = 64,
    ) -> None:  # fmt: skip
        self.task = load_task(task, data_dir, stsb_split="dev", sick_mode="dev")
        self.max_loss, self.force, self.batch_size = max_loss, force, batch_size
        self.results: list[GateResult] = []

    def __call__(self, folder: str, fp32: str, quantized: dict[str, str]) -> None:
        """Score ``fp32`` and each of ``quantized`` (final name -> finished file, relative to ``folder``)."""
        if not quantized:
            return
        reference = _score(folder, fp32, self.task, self.batch_size)
        self.results = []
        for final, graph in quantized.items():
            score = _score(folder, graph, self.task, self.batch_size)
            self.results.append(GateResult(final, score, reference, reference - score))
            logger.info(
                "%s: %s %.2f vs float32 %.2f (%+.2f; limit -%.2f)", self.task.name, final, score, reference,
                score - reference, self.max_loss,
            )  # fmt: skip
        failed = [r for r in self.results if r.loss > self.max_loss]
        if failed and not self.force:
            worst = max(failed, key=lambda r: r.loss)
            raise QualityGateError(
                f"{worst.file} loses {worst.loss:.2f} Spearman on {self.task.name} ({worst.score:.2f} vs float32 "
                f"{worst.reference:.2f}; limit {self.max_loss:.2f}); nothing written (--force writes it anyway)"
            )
