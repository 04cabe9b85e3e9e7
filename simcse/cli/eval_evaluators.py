"""``simcse eval``'s evaluators beyond the STS table (retrieval, pair classification, specs) and its processes.

simcse eval --model M --retrieval data/stsb-retrieval --retrieval-split dev
simcse eval --model M --pair-classification pairs.csv --evaluators my_evals.yaml
torchrun --nproc_per_node 4 -m simcse.cli eval --model M --retrieval mydocs   # 4 processes share the work
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from simcse.cli.common import CommandError

HELP = {
    "retrieval": "BEIR folders (corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv) or files with query,positive[,negative] "
    "columns: nDCG@10, MRR@10, MAP@100, Recall@1/10/100",
    "pair": "files with sentence1,sentence2,label (0/1) columns (CSV, JSON lines, Parquet): AP, accuracy and F1",
    "evaluators": "a YAML or JSON list of evaluator specs (type, data, options; see simcse.evaluation.evaluators)",
}


def add_evaluator_arguments(parser: argparse.ArgumentParser) -> None:
    """``--retrieval``, ``--retrieval-split``, ``--pair-classification`` and ``--evaluators``."""
    parser.add_argument("--retrieval", action="extend", nargs="+", default=[], metavar="PATH", help=HELP["retrieval"])
    parser.add_argument(
        "--retrieval-split", default="test", metavar="SPLIT", help="qrels split of BEIR folders (default: test)"
    )
    parser.add_argument(
        "--pair-classification", action="extend", nargs="+", default=[], metavar="FILE", help=HELP["pair"]
    )
    parser.add_argument("--evaluators", default=None, metavar="SPEC", help=HELP["evaluators"])


def evaluator_specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The evaluator specs the options ask for, each named after its file or folder (``--evaluators``: as given)."""
    from simcse.evaluation.evaluators import load_specs

    specs: list[dict[str, Any]] = []
    for path in dict.fromkeys(args.retrieval):
        spec = {"type": "retrieval", "name": _stem(path), "path": path}
        specs.append({**spec, "split": args.retrieval_split} if os.path.isdir(path) else spec)
    for path in dict.fromkeys(args.pair_classification):
        specs.append({"type": "pair_classification", "name": _stem(path), "path": path})
    if args.evaluators:
        specs += load_specs(args.evaluators)
    return specs


def _stem(path: str) -> str:
    return os.path.splitext(os.path.basename(os.path.normpath(path)))[0] or "data"


def format_metrics(metrics: dict[str, float]) -> str:
    """One line per evaluator: ``name: metric value | ...`` (4 decimals; Spearman x 100 with 2)."""
    groups: dict[str, list[str]] = {}
    for key, value in metrics.items():
        name, metric = key.split("/", 1)
        groups.setdefault(name, []).append(f"{metric} {value:.2f}" if metric == "spearman" else f"{metric} {value:.4f}")
    return "\n".join(f"{name}: {' | '.join(parts)}" for name, parts in groups.items())


def start_processes(mteb: bool) -> tuple[int, Any]:
    """This process's rank and device: one process, or the group a launcher (``torchrun``) started.

    Under a launcher the processes form one group (gloo where there is no GPU, else NCCL with a GPU each)
    and share every evaluation; process 0 prints and writes.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return 0, None
    if mteb:
        raise CommandError("--mteb runs in one process; start it without torchrun / accelerate launch")
    from accelerate import PartialState

    from simcse.distributed import launched_on_cpu_only

    state = PartialState(cpu=launched_on_cpu_only())
    return state.process_index, state.device
