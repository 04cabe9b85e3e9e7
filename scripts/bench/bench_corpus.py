"""Benchmark the corpus encode (issue 25): peak memory against corpus size, and throughput against ``Encoder.encode``.

1. **Memory** (``--rss-sizes``): ``simcse encode CORPUS -o FOLDER`` (the command users run), each size in a
   fresh process, on corpora of the shared Wikipedia sentences repeated to N lines, with a tiny random
   BERT (2 layers, hidden 32, all-MiniLM-L6-v2's tokenizer, built here; 16 tokens, one thread) so
   millions of rows fit in minutes on a CPU. Peak RSS must be flat in the corpus size (bounded by the shard size).
2. **Throughput** (``--rows``): all-MiniLM-L6-v2 on the first N sentences, timed interleaved in one process
   for ``--rounds`` rounds: :func:`simcse.corpus.encode_corpus` (read the file, encode shard by shard,
   write Parquet) against ``Encoder.encode`` on the same rows already in memory (the peer: no reading, no
   writing). The ratio is the median of per-round ratios; rows/s are extrapolated to larger corpora.

    python scripts/bench/bench_corpus.py --rss-sizes 1000000 5000000 --rows 8000 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

from bench_data import make_corpus, minilm  # noqa: E402  (the corpus and model helpers of the data benchmark)

MEASURE = (
    "import resource, sys, time; from simcse.cli import main; t = time.perf_counter(); rc = main(sys.argv[1:]); "
    "print('RESULT', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, time.perf_counter() - t, "
    "file=sys.stderr); sys.exit(rc)"
)


def build_tiny_model(folder: str) -> str:
    """A random 2-layer BERT (hidden 32) with all-MiniLM-L6-v2's tokenizer: fast enough for millions of rows."""
    from transformers import AutoTokenizer, BertConfig, BertModel

    tok = AutoTokenizer.from_pretrained(minilm())
    config = BertConfig(vocab_size=tok.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    BertModel(config, add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def measure_rss(model: str, corpus: str, out: str, shard_size: int) -> dict[str, float]:
    """Peak RSS (MB) and seconds of one ``simcse encode`` process."""
    cmd = [sys.executable, "-c", MEASURE, "encode", "--model", model, "--pooler", "avg", corpus, "-o", out,
           "--shard-size", str(shard_size), "--max-seq-length", "16", "--batch-size", "256",
           "--no-progress"]  # fmt: skip
    # one thread: a tiny model's matrices are too small to share, and spinning threads slow a loaded CPU down
    env = {**os.environ, "PYTHONPATH": REPO, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": "1"}  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    line = next(x for x in proc.stderr.splitlines() if x.startswith("RESULT"))
    rss, seconds = map(float, line.split()[1:])
    return {"peak_rss_mb": round(rss, 1), "seconds": round(seconds, 1)}


def throughput(rows: int, rounds: int, shard_size: int, folder: str, corpus_file: str) -> dict:
    """Interleaved rounds: ``encode_corpus`` from the file vs ``Encoder.encode`` on the rows in memory."""
    from simcse import Encoder
    from simcse.corpus import CorpusSource, EncodeOptions, encode_corpus

    path = os.path.join(folder, f"subset_{rows}.txt")
    with open(corpus_file, encoding="utf-8") as f, open(path, "w", encoding="utf-8") as g:
        texts = [next(f).rstrip("\n") for _ in range(rows)]
        g.write("\n".join(texts) + "\n")
    encoder = Encoder.from_pretrained(minilm(), device="cpu").eval()
    encoder.encode(texts[:256])  # warm-up
    ratios, ours, peer = [], [], []
    for r in range(rounds):
        t = time.perf_counter()
        encoder.encode(texts, batch_size=64)
        peer.append(time.perf_counter() - t)
        t = time.perf_counter()
        options = EncodeOptions(shard_size=shard_size, batch_size=64, show_progress=False, overwrite=True)
        encode_corpus(encoder, CorpusSource(paths=(path,)), os.path.join(folder, "out"), options)
        ours.append(time.perf_counter() - t)
        ratios.append(peer[-1] / ours[-1])
        print(f"round {r + 1}: encode_corpus {rows / ours[-1]:.1f} rows/s, Encoder.encode {rows / peer[-1]:.1f} rows/s,"
              f" ratio {ratios[-1]:.3f}", flush=True)  # fmt: skip
    rate = rows / statistics.median(ours)
    return {
        "rows": rows, "rounds": rounds, "shard_size": shard_size, "median_ratio": round(statistics.median(ratios), 3),
        "encode_corpus_rows_per_s": round(rate, 1), "encode_rows_per_s": round(rows / statistics.median(peer), 1),
        "extrapolated_hours": {n: round(n / rate / 3600, 1) for n in (1_000_000, 5_000_000, 50_000_000)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shared = os.path.join(REPO, "..", "shared", "data")
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", shared))
    parser.add_argument("--rss-sizes", type=int, nargs="*", default=[1_000_000, 5_000_000])
    parser.add_argument("--shard-size", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=8000, help="MiniLM throughput subset (0: skip)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--throughput-shard-size", type=int, default=2000)
    parser.add_argument("--work-dir", default=None, help="where corpora and outputs go (default: a temporary folder)")
    args = parser.parse_args()
    source = os.path.join(args.data_dir, "corpus", "wiki_sentences.txt")
    work = args.work_dir or tempfile.mkdtemp(prefix="bench_corpus_")
    os.makedirs(work, exist_ok=True)
    results: dict = {"rss": {}}
    if args.rss_sizes:
        model = build_tiny_model(os.path.join(work, "tiny"))
        for n in args.rss_sizes:
            corpus = make_corpus(source, n, work)
            results["rss"][n] = measure_rss(model, corpus, os.path.join(work, f"out_{n}"), args.shard_size)
            print(f"{n:>10,} lines: {results['rss'][n]}", flush=True)
        sizes = sorted(results["rss"])
        if len(sizes) > 1:
            ratio = results["rss"][sizes[-1]]["peak_rss_mb"] / results["rss"][sizes[0]]["peak_rss_mb"]
            results["rss_ratio_largest_to_smallest"] = round(ratio, 3)
            print(f"peak RSS {sizes[-1]:,} / {sizes[0]:,} lines: {ratio:.3f}x (target <= 1.2x)")
    if args.rows:
        results["throughput"] = throughput(args.rows, args.rounds, args.throughput_shard_size, work, source)
        print(f"encode_corpus / Encoder.encode (median of per-round ratios): {results['throughput']['median_ratio']}"
              " (target >= 0.95)")  # fmt: skip
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
