"""Corpus-encode inputs (numbered random texts) and reading a finished output folder back."""

from __future__ import annotations

import numpy as np

from simcse.corpus import ShardedEmbeddings
from tests.helpers.data import WORDS

BATCH_TOL = 1e-5  # float32 vectors of one text in differently composed length-sorted batches (measured: ~1e-6)


def make_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 14)))) + f" {i}" for i in range(n)]


def read_folder(folder: str) -> tuple[list, np.ndarray]:
    """All ids and stored vectors of a finished folder, in row order."""
    corpus = ShardedEmbeddings(folder)
    parts = [stored for _, stored in corpus.iter_shards()]
    return corpus.ids(np.arange(len(corpus))), np.concatenate(parts)
