"""Speed and memory: the gradient cache gives the plain step's loss and gradients (one and two processes,
and in train()); bf16 encoding stays close to float32."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from simcse.train import train
from simcse.train.grad_cache import GradCache
from simcse.train.step import compute_loss
from tests.helpers.data import cfg_for
from tests.helpers.grads import SEED, batch_setup, cached, contrastive_loss, grads_after, plain, same_masks_reference
from tests.helpers.launch import run_probe
from tests.helpers.launch import weights as _weights


def assert_same(a, b):
    assert a[0] == pytest.approx(b[0], abs=1e-5)
    assert a[1].keys() == b[1].keys() and len(a[1]) > 0
    for name, g in a[1].items():
        torch.testing.assert_close(b[1][name], g, atol=1e-5, rtol=1e-4, msg=name)


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_one_chunk_equals_plain_step_with_dropout(tiny_model_dir, data, tmp_path, mode):
    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, mode)
    reference = grads_after(model, lambda: plain(model, batch, cfg))
    # a second plain run from another RNG state differs: dropout is on and the masks matter
    torch.manual_seed(SEED + 1)
    assert compute_loss(model, batch, cfg, model.encoder.tokenizer).item() != pytest.approx(reference[0], abs=1e-4)
    assert_same(reference, grads_after(model, lambda: cached(model, batch, cfg, chunk=64)))


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_chunks_equal_one_backward_over_the_same_dropout_masks(tiny_model_dir, data, tmp_path, mode):
    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, mode)
    chunk = 5  # uneven, and chunks straddle the boundary between views
    reference = grads_after(model, lambda: same_masks_reference(model, batch, cfg, chunk))
    rows = []
    hook = model.encoder.model.register_forward_hook(
        lambda m, args, kwargs, out: rows.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    assert_same(reference, grads_after(model, lambda: cached(model, batch, cfg, chunk)))
    hook.remove()
    per_phase = [5, 5, 5, 1] if mode == "unsup" else [5, 5, 5, 5, 4]  # 16 or 24 rows
    assert rows == per_phase * 2  # phase 1, then phase 2: no forward holds more than a chunk


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_chunks_equal_plain_step_without_dropout(tiny_model_dir, data, tmp_path, mode):
    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, mode, dropout=0.0)
    reference = grads_after(model, lambda: plain(model, batch, cfg))
    assert_same(reference, grads_after(model, lambda: cached(model, batch, cfg, chunk=3)))


def test_rng_continues_as_after_phase_one(tiny_model_dir, data, tmp_path):
    cfg, model, batch = batch_setup(tiny_model_dir, data, tmp_path, "unsup")
    cache = GradCache(5, lambda z: contrastive_loss(z, cfg), views=2)
    loss = cache.loss(model, batch)
    after_phase_one = torch.get_rng_state()
    cache.backward(loss)
    assert torch.equal(torch.get_rng_state(), after_phase_one)
    with pytest.raises(RuntimeError, match="needs a loss"):
        cache.backward(loss)


@pytest.mark.slow  # several processes
def test_two_processes_with_cache_equal_one_process_plain(tiny_model_dir, data, tmp_path):
    # triplets: positives and hard negatives are both gathered with gradient; DDP all-reduces once.
    # Dropout 0: the RNG streams of 1 and 2 processes differ, so masks could not match.
    common = dict(
        model_name_or_path=tiny_model_dir, dropout=0.0, max_seq_len=16, mode="triplets", train_file=data["triplets"],
        hard_negative_weight=0.5, mlp_only_train=False,
    )  # fmt: skip
    single = run_probe(1, str(tmp_path / "one.pt"), {**common, "batch_size": 16})
    double = run_probe(2, str(tmp_path / "two.pt"), {**common, "batch_size": 8, "grad_cache_chunk_size": 5})
    assert_same((single["loss"], single["grads"]), (double["loss"], double["grads"]))


def test_train_with_cache_gives_the_same_weights(tiny_model_dir, data, tmp_path, shared_data):
    # The random tiny model's embeddings are nearly parallel (cosines ~1), so gradients hinge on their
    # small differences, where a chunked forward's rounding shows; Adam's steps of ~lr regardless of
    # gradient size would carry that to ~2e-5 at lr 1e-3, hence lr 1e-4 (differences ~4e-6).
    kw = dict(
        max_steps=4, eval_steps=4, data_dir=shared_data, seed=3, dropout=0.0, learning_rate=1e-4, collapse_check_steps=2
    )  # fmt: skip
    runs, watched = {}, {}
    for chunk in (0, 4):
        cfg = cfg_for(
            tiny_model_dir, data["unsup"], tmp_path, output_dir=str(tmp_path / f"c{chunk}"),
            grad_cache_chunk_size=chunk, **kw,
        )  # fmt: skip
        train(cfg)
        runs[chunk] = _weights(os.path.join(cfg.output_dir, "checkpoints", "step-00000004"))
        with open(os.path.join(cfg.output_dir, "metrics.jsonl"), encoding="utf-8") as f:
            watched[chunk] = [json.loads(line).get("embedding_std") for line in f]
    for name, w in runs[0].items():
        torch.testing.assert_close(runs[4][name], w, atol=1e-5, rtol=0, msg=name)
    # the collapse watch runs under the cache too (steps 2 and 4), on the same anchors
    assert watched[0][1] is not None and watched[0][3] is not None and watched[0][0] is None
    assert watched[4] == pytest.approx(watched[0], abs=1e-6)


@pytest.mark.parametrize("clash", [{"do_mlm": True}, {"same_dropout_mask": True}, {"objective": "nt_xent"}])
def test_config_rejects_cache_with_other_forwards(tmp_path, clash):
    with pytest.raises(ValueError, match="grad_cache_chunk_size needs objective infonce"):
        cfg_for("m", "f.txt", tmp_path, grad_cache_chunk_size=4, **clash)


def test_encode_bf16_is_close_to_fp32(tiny_encoder):
    sentences = ["a man is playing the guitar", "the dog runs in the park", "an old red car", "she eats bread"]
    fp32 = tiny_encoder.encode(sentences)
    bf16 = tiny_encoder.encode(sentences, precision="bf16")
    assert bf16.dtype == np.float32 and not np.array_equal(bf16, fp32)  # autocast did run in bf16
    np.testing.assert_allclose(bf16, fp32, atol=0.03 * np.abs(fp32).max())  # bf16 keeps ~3 digits
    np.testing.assert_array_equal(tiny_encoder.encode(sentences), fp32)  # and fp32 stays the default
    with pytest.raises(ValueError, match="precision must be 'fp32' or 'bf16'"):
        tiny_encoder.encode(sentences, precision="fp16")
