"""``simcse eval --mteb TASK ...``: run MTEB 2 tasks on any model we load, through ``mteb.evaluate``."""

from __future__ import annotations

import argparse
import json
import logging
from typing import Any

from simcse.cli.common import CommandError, check_truncate_argument, load_encoder, one_line
from simcse.io import atomic_write_text

logger = logging.getLogger(__name__)


def add_mteb_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``--mteb`` options of ``simcse eval``."""
    parser.add_argument(
        "--mteb", nargs="+", default=None, metavar="TASK",
        help="run these MTEB tasks with mteb.evaluate instead of the STS table (needs the mteb extra)",
    )  # fmt: skip
    parser.add_argument(
        "--mteb-local", action="store_true",
        help="for --mteb STS tasks, read the STS files in the data directory (offline; pairs chosen by "
        "--stsb-split and --sick-mode: MTEB's own are test and full)",
    )  # fmt: skip


def mteb_tasks(args: argparse.Namespace) -> list[Any]:
    """The MTEB tasks named by ``--mteb`` (filled from local files with ``--mteb-local``)."""
    try:
        import mteb
    except ImportError as err:
        raise CommandError("--mteb needs mteb 2: pip install 'simcse-toolkit[mteb]'") from err
    from simcse.evaluation.mteb_tasks import local_mteb_task

    tasks = []
    for name in dict.fromkeys(args.mteb):
        try:
            local = {"stsb_split": args.stsb_split, "sick_mode": args.sick_mode}
            tasks.append(local_mteb_task(name, args.data_dir, **local) if args.mteb_local else mteb.get_task(name))
        except (KeyError, ValueError) as err:
            raise CommandError(f"--mteb {name}: {one_line(err)}") from err
    return tasks


def run_mteb(args: argparse.Namespace, device: str) -> int:
    """Evaluate every ``--model`` on the ``--mteb`` tasks; print main scores (x 100), write ``--output``."""
    tasks = mteb_tasks(args)  # a bad task name fails before a model is loaded
    import mteb

    records = []
    for name in dict.fromkeys(args.model):
        encoder = load_encoder(name, args.pooler, device)
        check_truncate_argument(args, encoder.dim)
        encode_kwargs = {"batch_size": args.batch_size, "show_progress_bar": args.progress}
        if args.truncate_dim is not None:  # mteb passes these to Encoder.encode; its similarity is cosine
            encode_kwargs["truncate_dim"] = args.truncate_dim
        try:
            result = mteb.evaluate(
                encoder, tasks, cache=None, show_progress_bar=args.progress, encode_kwargs=encode_kwargs
            )
        except Exception as err:  # mteb raises many kinds, e.g. a dataset it cannot download
            hint = " (offline? --mteb-local reads STS tasks from the data directory)"
            raise CommandError(f"mteb on {name}: {one_line(err)}{hint}") from err
        scores = {r.task_name: 100 * r.get_score() for r in result.task_results}
        cut = f", first {args.truncate_dim} of {encoder.dim} dimensions" if args.truncate_dim else ""
        print(f"{name} (pooler {encoder.pooler}{cut}), MTEB main scores x 100")
        for task, score in scores.items():
            print(f"  {task:24s} {score:6.2f}")
        records.append({"model": name, "scores": scores, "results": [r.to_dict() for r in result.task_results]})
    if args.output:
        report = {
            "mteb_version": mteb.__version__, "local_data": args.mteb_local, "truncate_dim": args.truncate_dim,
            "models": records,
        }  # fmt: skip
        atomic_write_text(args.output, json.dumps(report, indent=2, default=str) + "\n")
        logger.info("wrote %s", args.output)
    return 0
