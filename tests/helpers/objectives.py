"""Every objective on its usual data: the data files, the config and one batch of a tiny model."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch

from simcse.config import load_config
from tests.helpers.data import WORDS

# the metric-learning objectives train on (synthetic) triplets, as on NLI; the others on the corpus
MODE = {"triplet": "triplets", "contrastive": "triplets", "logistic": "triplets", "circle": "triplets"}
MODE |= {"n_pair": "pairs", "lifted_structure": "pairs"}
# small enough for a few steps to exercise the state: the memory is used from the second step on
STATE_KW = {"moco": {"queue_size": 12}, "xbm": {"memory_size": 12, "memory_warmup": 1}, "swav": {"n_prototypes": 6}}


def _sentence(rng: np.random.Generator) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(3, 10))))


@pytest.fixture(scope="module")
def data_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    rng, root = np.random.default_rng(0), tmp_path_factory.mktemp("objective_data")
    (root / "corpus.txt").write_text("\n".join(_sentence(rng) for _ in range(64)) + "\n", encoding="utf-8")
    with open(root / "nli.csv", "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["sent0", "sent1", "hard_neg"])
        writer.writerows([_sentence(rng) for _ in range(3)] for _ in range(64))
    return {"unsup": str(root / "corpus.txt"), "pairs": str(root / "nli.csv"), "triplets": str(root / "nli.csv")}


def config(model_dir: str, files: dict[str, str], out: str, objective: str, data_dir: str | None = None, **kw):
    mode = kw.pop("mode", MODE.get(objective, "unsup"))
    values = dict(
        model_name_or_path=model_dir, train_file=files[mode], mode=mode, objective=objective, pooler="avg",
        batch_size=8, max_seq_len=16, learning_rate=1e-3, eval_steps=1000, eval_batch_size=64, output_dir=out,
        data_dir=data_dir, seed=3, **STATE_KW.get(objective, {}),
    )  # fmt: skip
    return load_config(None, {**values, **kw})


def objective_batch(model_dir: str, files: dict[str, str], out: str, objective: str, **kw):
    """``(cfg, model in train mode, one batch of 8)`` for ``objective`` on its usual data (``MODE``)."""
    from simcse.data.cache import load_training_views
    from simcse.train.model import build_model

    cfg = config(model_dir, files, out, objective, **kw)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    return cfg, model, load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(8)))
