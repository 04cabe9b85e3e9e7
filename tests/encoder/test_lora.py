"""LoRA on tiny decoders: only adapters train, merged == unmerged, three readers agree on the merged
folder, gradient checkpointing and the gradient cache give the plain step's gradients (dropout on)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from simcse import Encoder
from simcse.data.cache import load_training_views
from simcse.encoder.lora import ADAPTER_FOLDER, load_adapter
from simcse.train.model import build_model
from simcse.train.step import build_optimizer, compute_loss
from tests.helpers.data import cfg_for, write_corpus, write_triplets
from tests.helpers.decoders import build_tiny_decoder_dir
from tests.helpers.grads import SEED, cached, grads_after, plain, same_masks_reference

SENTENCES = ["a man is playing the guitar", "the dog runs in the park", "a woman eats bread"]


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_tiny_decoder_dir(str(tmp_path_factory.mktemp("llama")), "llama")


@pytest.fixture
def data(tmp_path):
    write_corpus(tmp_path / "corpus.txt")
    write_triplets(tmp_path / "nli.csv")
    return {"unsup": str(tmp_path / "corpus.txt"), "triplets": str(tmp_path / "nli.csv")}


def lora_setup(model_dir, data, tmp_path, mode="unsup", **kw):
    """A LoRA model (dropout on: attention 0.1, adapter 0.1) in train mode and one batch of 8 examples."""
    base = dict(pooler="last_token", lora_r=4, lora_alpha=8, lora_dropout=0.1, attention_dropout=0.1)
    if mode == "triplets":
        base.update(hard_negative_weight=0.5, prompts={"sent0": "query : "}, include_prompt=False)
    cfg = cfg_for(model_dir, data[mode], tmp_path, mode=mode, **{**base, **kw})
    torch.manual_seed(0)
    model = build_model(cfg).train()
    batch = load_training_views(cfg, model.encoder.tokenizer, verbose=False).collate(list(range(8)))
    return cfg, model, batch


def assert_same_grads(a, b, atol=1e-6):
    assert a[1].keys() == b[1].keys() and a[1]
    assert a[0] == pytest.approx(b[0], abs=1e-6)
    for name in a[1]:
        torch.testing.assert_close(b[1][name], a[1][name], atol=atol, rtol=1e-5, msg=name)


def test_only_lora_parameters_change_after_a_step(llama_dir, data, tmp_path):
    cfg, model, batch = lora_setup(llama_dir, data, tmp_path)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    optimizer = build_optimizer(model, cfg)
    for _ in range(2):  # B starts at 0, so A's gradient is 0 in the first step; both move by the second
        optimizer.zero_grad()
        plain(model, batch, cfg)
        optimizer.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed == trainable  # every adapter matrix moved, nothing else did


def trained_lora_encoder(llama_dir, data, tmp_path, **kw):
    """A LoRA encoder after 3 steps at a high learning rate (so B != 0 and the merge matters)."""
    cfg, model, batch = lora_setup(llama_dir, data, tmp_path, learning_rate=1e-2, **kw)
    optimizer = build_optimizer(model, cfg)
    for _ in range(3):
        optimizer.zero_grad()
        plain(model, batch, cfg)
        optimizer.step()
    return model.encoder.eval()


def test_merged_folder_equals_the_unmerged_model_and_the_adapter(llama_dir, data, tmp_path):
    enc = trained_lora_encoder(llama_dir, data, tmp_path)
    base = Encoder.from_pretrained(llama_dir, pooler="last_token").eval()
    assert not np.allclose(enc.encode(SENTENCES), base.encode(SENTENCES), atol=1e-3)  # the adapter does something
    folder = str(tmp_path / "model")
    enc.save(folder)
    adapter = os.path.join(folder, ADAPTER_FOLDER)
    assert os.path.getsize(os.path.join(adapter, "adapter_model.safetensors")) < os.path.getsize(
        os.path.join(folder, "model.safetensors")
    )
    merged = Encoder.from_pretrained(folder)
    np.testing.assert_allclose(merged.encode(SENTENCES), enc.encode(SENTENCES), atol=1e-5)
    base.model = load_adapter(base.model, adapter)  # the base model + the adapter alone
    np.testing.assert_allclose(base.eval().encode(SENTENCES), enc.encode(SENTENCES), atol=1e-5)


def test_three_readers_agree_on_the_merged_folder(llama_dir, data, tmp_path):
    """Encoder, AutoModel (+ hand-written last-token pooling over ``prompt + text``) and
    SentenceTransformer (its own prompt handling) read one folder with a query prompt and normalisation."""
    from sentence_transformers import SentenceTransformer
    from transformers import AutoModel, AutoTokenizer

    enc = trained_lora_encoder(llama_dir, data, tmp_path, mode="triplets")
    enc.normalize = True
    assert enc.prompts.prompts == {"query": "query : ", "document": ""} and not enc.prompts.include_prompt
    folder = str(tmp_path / "model")
    enc.save(folder)
    ours = Encoder.from_pretrained(folder).encode(SENTENCES)  # the default prompt: query
    np.testing.assert_allclose(ours, enc.encode(SENTENCES), atol=1e-5)
    tok, model = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    with torch.no_grad():
        last = [model(**tok("query : " + s, return_tensors="pt")).last_hidden_state[0, -1] for s in SENTENCES]
    plain_hf = torch.nn.functional.normalize(torch.stack(last), dim=-1).numpy()
    st = SentenceTransformer(folder, device="cpu").encode(SENTENCES, prompt_name="query")
    np.testing.assert_allclose(plain_hf, ours, atol=1e-5)
    np.testing.assert_allclose(st, ours, atol=1e-5)
    docs = SentenceTransformer(folder, device="cpu").encode(SENTENCES, prompt_name="document")
    ours_docs = Encoder.from_pretrained(folder).encode(SENTENCES, prompt_name="document")
    np.testing.assert_allclose(docs, ours_docs, atol=1e-5)


@pytest.mark.parametrize("pooler", ["last_token", "mean"])
def test_gradient_checkpointing_keeps_the_dropout_masks(llama_dir, data, tmp_path, pooler):
    cfg, model, batch = lora_setup(llama_dir, data, tmp_path, pooler=pooler)
    reference = grads_after(model, lambda: plain(model, batch, cfg))
    torch.manual_seed(SEED + 1)
    other_masks = compute_loss(model, batch, cfg, model.encoder.tokenizer).item()
    assert other_masks != pytest.approx(reference[0], abs=1e-6)  # dropout is really on
    cfg_ckpt, ckpt, _ = lora_setup(llama_dir, data, tmp_path, pooler=pooler, gradient_checkpointing=True)
    assert ckpt.encoder.model.get_base_model().is_gradient_checkpointing
    assert_same_grads(reference, grads_after(ckpt, lambda: plain(ckpt, batch, cfg_ckpt)))


@pytest.mark.parametrize("mode", ["unsup", "triplets"])
def test_grad_cache_equals_the_plain_step_with_lora_and_checkpointing(llama_dir, data, tmp_path, mode):
    """Dropout on (attention and adapter): one chunk is the plain step; chunks of 5 (straddling the views) are
    one backward over the same chunked forward (the same masks), as the BERT cache tests check."""
    cfg, model, batch = lora_setup(llama_dir, data, tmp_path, mode=mode, gradient_checkpointing=True)
    reference = grads_after(model, lambda: plain(model, batch, cfg))
    assert_same_grads(reference, grads_after(model, lambda: cached(model, batch, cfg, chunk=64)))
    chunked = grads_after(model, lambda: same_masks_reference(model, batch, cfg, 5))
    assert_same_grads(chunked, grads_after(model, lambda: cached(model, batch, cfg, chunk=5)))


def test_qlora_preparation_keeps_gradient_checkpointing_non_reentrant(tmp_path):
    """peft's prepare_model_for_kbit_training re-enables checkpointing with transformers' default (reentrant)
    unless told; ours passes use_reentrant=False on. A 4-bit load needs CUDA, so the flag peft reads is set."""
    from transformers import AutoModel

    from simcse.encoder.lora import prepare_quantized

    model = AutoModel.from_pretrained(build_tiny_decoder_dir(str(tmp_path / "llama")))
    model.is_loaded_in_4bit = True  # what a bitsandbytes load sets (peft's test for a quantized model)
    prepared = prepare_quantized(model, gradient_checkpointing=True)
    functions = [getattr(m, "_gradient_checkpointing_func", None) for m in prepared.modules()]
    functions = [f for f in functions if f is not None]
    kinds = [f.keywords.get("use_reentrant") for f in functions]
    assert kinds and all(kind is False for kind in kinds), kinds
    assert prepared.is_gradient_checkpointing
