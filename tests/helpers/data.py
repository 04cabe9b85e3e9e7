"""Training data files of random sentences over a small vocabulary, and a small training config."""

from __future__ import annotations

import csv

import numpy as np

from simcse.config import load_config

WORDS = "a man is playing the guitar woman dog runs in park child eats bread red car old house".split()


def write_corpus(path, n=96, seed=0):
    rng = np.random.default_rng(seed)
    lines = [" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def write_triplets(path, n=64, seed=0):
    rng = np.random.default_rng(seed)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sent0", "sent1", "hard_neg"])
        for _ in range(n):
            w.writerow([" ".join(rng.choice(WORDS, size=int(rng.integers(3, 10)))) for _ in range(3)])


def cfg_for(model_dir, train_file, tmp_path, **kw):
    base = dict(
        model_name_or_path=model_dir, train_file=train_file, batch_size=8, max_seq_len=16,
        output_dir=str(tmp_path / "run"), eval_steps=1000, learning_rate=1e-3,
    )  # fmt: skip
    base.update(kw)
    return load_config(None, base)
