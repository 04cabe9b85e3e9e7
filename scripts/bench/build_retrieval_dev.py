"""Build a small retrieval set from STS-B, offline, in the BEIR layout (``simcse eval --retrieval FOLDER``).

Queries and relevant passages are STS-B pairs scored >= 4 of 5 (near paraphrases): one sentence is the
query, the other its relevant passage. The corpus is every other distinct sentence of STS-B dev and test
(4,817 passages; ``--distractors all`` adds train's: 14,856), so a query competes with thousands of
unrelated and partly related sentences.

Splits and leakage:
- ``qrels/dev.tsv`` comes from STS-B **dev** pairs only: select checkpoints with it. STS-B dev is what the
  paper selects on too, so it adds no new leak, and no STS-B test score is used.
- ``qrels/test.tsv`` comes from STS-B **test** pairs: report on it, never select on it. Its passages are
  also unlabelled distractors for the dev queries (their test scores play no part there).
- STS-B train sentences (``--distractors all``) are distractors only. SimCSE's training data (Wikipedia
  sentences, NLI) shares no sentence with STS (see the data directory's README), so no query or passage
  was seen in training.
- A text (compared lower-cased on word characters) is a query or a passage, never both, and appears once:
  a query never finds itself or a copy of itself in the corpus.
- Near-paraphrases that STS-B did not pair are not judged: they count as misses, as in every sparse-label
  retrieval set (BEIR's included); the numbers compare models, they are not absolute.

    python scripts/bench/build_retrieval_dev.py --data-dir ../shared/data --output data/stsb-retrieval
"""

from __future__ import annotations

import argparse
import logging
import re
import sys

from simcse.data_dir import senteval_dir
from simcse.evaluation.retrieval_data import RetrievalData, write_beir
from simcse.evaluation.tasks import load_stsb

logger = logging.getLogger("build_retrieval_dev")
SPLITS = ("dev", "test")  # the judged splits; train only gives distractors


def _key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


def build(data_dir: str | None, min_score: float = 4.0, distractors: str = "eval") -> tuple[RetrievalData, dict]:
    """Queries, corpus and ``{split: qrels}`` from STS-B (see the module's notes).

    Args:
        data_dir: The data directory (holding ``senteval/STS/STSBenchmark``).
        min_score: Pairs scored at least this are (query, relevant passage).
        distractors: ``all`` (train, dev and test sentences) or ``eval`` (dev and test only).
    """
    root = senteval_dir(data_dir)
    splits = {s: load_stsb(root, s).subsets[0] for s in ("train", *SPLITS)}
    role: dict[str, str] = {}  # text key -> "query" / "doc"
    surface: dict[str, str] = {}
    judged: dict[str, list[tuple[str, str]]] = {s: [] for s in SPLITS}
    for split in SPLITS:
        pairs = splits[split]
        for a, b, score in zip(pairs.sentences1, pairs.sentences2, pairs.scores):
            ka, kb = _key(a), _key(b)
            if score < min_score or ka == kb or not ka or not kb:
                continue
            for (q, kq), (d, kd) in (((a, ka), (b, kb)), ((b, kb), (a, ka))):
                if role.get(kq, "query") == "query" and role.get(kd, "doc") == "doc":
                    role[kq], role[kd] = "query", "doc"
                    surface.setdefault(kq, q)
                    surface.setdefault(kd, d)
                    judged[split].append((kq, kd))
                    break
    sources = ("train", *SPLITS) if distractors == "all" else SPLITS
    for split in sources:
        for text in (*splits[split].sentences1, *splits[split].sentences2):
            k = _key(text)
            if k and role.setdefault(k, "doc") == "doc":
                surface.setdefault(k, text)
    qid = {k: f"q{i}" for i, k in enumerate(k for k, r in role.items() if r == "query")}
    did = {k: f"d{i}" for i, k in enumerate(k for k, r in role.items() if r == "doc")}
    qrels = {split: {} for split in SPLITS}
    for split, pairs in judged.items():
        for kq, kd in pairs:
            qrels[split].setdefault(qid[kq], {})[did[kd]] = 1
    data = RetrievalData({i: surface[k] for k, i in qid.items()}, {i: surface[k] for k, i in did.items()}, {})
    return data, qrels


def main(argv: list[str] | None = None) -> int:
    """Build the set and write it (atomically) to ``--output``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="data directory (default: $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--output", required=True, help="the BEIR folder to write (replaced if it exists)")
    parser.add_argument("--min-score", type=float, default=4.0, help="STS-B score of a relevant pair (default 4)")
    parser.add_argument(
        "--distractors", choices=("eval", "all"), default="eval",
        help="corpus: dev and test sentences (default, 4,817) or all STS-B splits (14,856)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    data, qrels = build(args.data_dir, args.min_score, args.distractors)
    write_beir(args.output, data, qrels)
    counts = ", ".join(f"{s}: {len(q)} queries, {sum(map(len, q.values()))} judgements" for s, q in qrels.items())
    logger.info("wrote %s: %d passages; %s", args.output, len(data.corpus), counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
