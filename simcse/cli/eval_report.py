"""What ``simcse eval`` prints and writes: each model's table and metric lines, the JSON report, the plot."""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
from collections.abc import Sequence
from typing import Any

from simcse.cli.eval_evaluators import format_metrics
from simcse.data_dir import resolve_data_dir
from simcse.io import StrPath, atomic_write_text

logger = logging.getLogger(__name__)

JSON_FORMAT_VERSION = 1


def settings(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The run's settings and library versions, as recorded in the JSON file."""
    import torch
    import transformers

    from simcse import __version__

    return {
        "tasks": list(args.tasks),
        "evaluators": getattr(args, "specs", []),
        "data_dir": resolve_data_dir(args.data_dir),
        "stsb_split": args.stsb_split,
        "sick_mode": args.sick_mode,
        "batch_size": args.batch_size,
        "truncate_dim": args.truncate_dim,
        "device": device,
        "pooler_override": args.pooler,
        "backend": args.backend,
        "onnx_file": args.onnx_file if args.backend != "torch" else None,
        "align_uniform": args.align_uniform,
        "protocol": "SentEval: cosine, Spearman x 100; STS12-16 headline = all subsets pooled",
        "versions": {
            "simcse": __version__,
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "python": platform.python_version(),
        },
    }


def plot_align_uniform(records: Sequence[dict[str, Any]], path: StrPath) -> None:
    """The models on the paper's Fig. 2 axes (see :func:`simcse.plots.plot_align_uniform`).

    Args:
        records: Model records with ``model``, ``pooler``, ``avg``, ``alignment`` and ``uniformity``.
        path: Image file to write (the format follows its extension); replaced atomically.
    """
    from simcse.plots import plot_align_uniform as plot

    points = [{**r, "label": f"{_short_name(r['model'])} ({r['pooler']})\nSTS avg. {r['avg']:.2f}"} for r in records]
    plot(path, points, title=f"Alignment vs uniformity, STS-B {records[0]['align_uniform_split']}")


def _short_name(model: str) -> str:
    # a local folder is named by its last two parts ("runs/unsup/best" -> "unsup/best"), a hub model in full
    if not os.path.isdir(model):
        return model
    parts = os.path.normpath(os.path.abspath(model)).split(os.sep)
    return "/".join(parts[-2:])


def report(record: dict[str, Any]) -> str:
    """One model's lines: the STS table if STS tasks were scored, one line per other evaluator."""
    from simcse.evaluation.scoring import format_table

    cut = f", first {record['truncated_to']} of {record['dim']} dimensions" if record.get("truncated_to") else ""
    parts = [f"{record['model']} (pooler {record['pooler']}{cut})"]
    if "tasks" in record:
        parts.append(format_table(record))
    if "evaluators" in record:
        parts.append(format_metrics(record["evaluators"]))
    return "\n".join(parts) + "\n"


def write(args: argparse.Namespace, records: list[dict[str, Any]], device: str) -> None:
    """The JSON report (``--output``) and the alignment-uniformity plot (``--plot``), each written atomically."""
    if args.output:
        report = {"format_version": JSON_FORMAT_VERSION, "settings": settings(args, device), "models": records}
        atomic_write_text(args.output, json.dumps(report, indent=2) + "\n")
        logger.info("wrote %s", args.output)
    if args.plot:
        plot_align_uniform(records, args.plot)
        logger.info("wrote %s", args.plot)
