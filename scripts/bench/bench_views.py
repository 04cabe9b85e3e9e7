"""What making the views per step costs the loader (issue 26): collation time per batch, each view kind.

For each view configuration, :class:`simcse.data.views.AugmentedViews` (word-level views re-tokenize
the kept text; token-level views change the cached ids; MLM views run the masked LM per sentence) collates
the same ``--steps`` batches of ``--batch-size`` rows of the shared corpus, interleaved round by round with
the plain cache collation (``none,none``, the peer). Printed: milliseconds per batch, the ratio to the plain
collation, and the share of one training step of the findings grid's model (forward and backward of both
views, measured in the same run), which is what the loader must hide (``dataloader_workers``) or add.

    nice -n 5 python scripts/bench/bench_views.py --model ../shared/models/bert-mini-mlm-wiki
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from simcse.config import load_config
from simcse.data.cache import load_training_views
from simcse.data.views import AugmentedViews
from simcse.train.model import build_model
from simcse.train.step import compute_loss

CONFIGS = ["none,none", "none,crop:0.1", "none,word_deletion:0.1", "none,delete_one_word", "none,synonym",
           "none,word_repetition", "none,token_shuffle", "none,token_cutoff", "none,mlm:0.15",
           "next:none,none"]  # fmt: skip


def config(args: argparse.Namespace, views: str) -> object:
    positive, _, views = views.rpartition(":") if views.startswith("next") else ("same", "", views)
    return load_config(None, {
        "model_name_or_path": args.model, "data_dir": args.data_dir, "batch_size": args.batch_size,
        "max_train_samples": args.batch_size * args.steps, "max_seq_len": 32, "views": views, "positive": positive,
        "output_dir": "/tmp/bench_views",
    })  # fmt: skip


def step_seconds(args: argparse.Namespace, views: object, tokenizer: object) -> float:
    """One training step (both views, forward and backward) of the model, median over 5."""
    cfg = config(args, "none,none")
    model = build_model(cfg).train()
    times = []
    for step in range(6):
        batch = views.collate(list(range(step * args.batch_size, (step + 1) * args.batch_size)))
        t0 = time.perf_counter()
        compute_loss(model, batch, cfg, tokenizer).backward()
        times.append(time.perf_counter() - t0)
    return statistics.median(times[1:])


def main() -> None:
    """Time every configuration's collation against the plain one, then a training step."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="../shared/models/bert-mini-mlm-wiki")
    p.add_argument("--data-dir", default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"))
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    torch.set_num_threads(1)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    makers = {}
    for name in CONFIGS:
        cfg = config(args, name)
        base = load_training_views(cfg, tokenizer, verbose=False)
        makers[name] = AugmentedViews(base, cfg, tokenizer) if cfg.augments else base
    times: dict[str, list[float]] = {name: [] for name in CONFIGS}
    n = len(makers["next:none,none"])
    for _ in range(args.rounds):  # interleaved: every configuration sees the same load
        for name, views in makers.items():
            t0 = time.perf_counter()
            for step in range(args.steps):
                views.collate([(step * 7919 + i * 31) % n for i in range(args.batch_size)], step)
            times[name].append((time.perf_counter() - t0) / args.steps)
    plain = min(times["none,none"])
    step = step_seconds(args, makers["none,none"], tokenizer)
    print(f"batch {args.batch_size}, {args.model}: a training step (forward + backward, 1 thread) {step * 1e3:.0f} ms")
    print("| views | ms per batch | x plain collation | share of a training step |")
    print("|---|---:|---:|---:|")
    for name in CONFIGS:
        best = min(times[name])
        print(f"| {name} | {best * 1e3:.1f} | {best / plain:.1f} | {best / step:.1%} |")


if __name__ == "__main__":
    main()
