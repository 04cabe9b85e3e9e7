"""Reference steps for gradient tests: one batch, the plain step, the gradient cache, the same masks by hand."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from simcse.data.cache import load_training_views
from simcse.objectives import info_nce
from simcse.train.model import build_model
from simcse.train.step import compute_loss, make_grad_cache
from tests.helpers.data import cfg_for, write_corpus, write_triplets

SEED = 1234


@pytest.fixture
def data(tmp_path):
    write_corpus(tmp_path / "corpus.txt")
    write_triplets(tmp_path / "nli.csv")
    return {"unsup": str(tmp_path / "corpus.txt"), "triplets": str(tmp_path / "nli.csv")}


def batch_setup(tiny_model_dir, data, tmp_path, mode, **kw):
    """A model in train mode (dropout on unless ``dropout=0.0``) and one batch of 8 examples."""
    extra = {"hard_negative_weight": 0.5, "mlp_only_train": False} if mode == "triplets" else {}
    cfg = cfg_for(tiny_model_dir, data[mode], tmp_path, mode=mode, **extra, **kw)
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(8)))
    return cfg, model, batch


def grads_after(model, run):
    """Loss and parameter gradients of ``run()`` (which backpropagates), from a fixed RNG state."""
    model.zero_grad(set_to_none=True)
    torch.manual_seed(SEED)
    loss = run()
    return float(loss.detach()), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def plain(model, batch, cfg):
    loss = compute_loss(model, batch, cfg, model.encoder.tokenizer)
    loss.backward()
    return loss


def cached(model, batch, cfg, chunk):
    cache = make_grad_cache(dataclasses.replace(cfg, grad_cache_chunk_size=chunk))
    loss = cache.loss(model, batch)
    cache.backward(loss)
    return loss


def contrastive_loss(z, cfg):
    """Single-process InfoNCE of the views ``z`` ``(views, batch, dim)``, the loss the step computes."""
    hard = z[2] if z.shape[0] > 2 else None
    return info_nce(z[0], z[1], hard, temperature=cfg.temperature, hard_negative_weight=cfg.hard_negative_weight)


def same_masks_reference(model, batch, cfg, chunk):
    """One backward through a forward made of the same chunks (so the same dropout masks) with graph."""
    rows = batch["input_ids"].shape[0]
    z = torch.cat([model(**{k: v[s : s + chunk] for k, v in batch.items()}) for s in range(0, rows, chunk)])
    loss = contrastive_loss(z.view(cfg.num_views, -1, z.shape[-1]), cfg)  # (views, batch, dim)
    loss.backward()
    return loss
