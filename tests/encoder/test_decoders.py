"""Decoder backbones through AutoModel: padding-side invariant pooling, the EOS check, bidirectional
attention, dropout settings and prompts, on tiny random Llama / Mistral / Qwen2 / Qwen3 / Gemma / GPT-2."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from simcse import Encoder
from simcse.config import load_config
from simcse.encoder.decoder import appends_eos, check_bidirectional
from simcse.encoder.pooling import pool
from simcse.encoder.prompts import prompt_length
from simcse.train.model import build_model
from tests.helpers.decoders import ARCHITECTURES, build_tiny_decoder_dir

SENTENCES = ["a man is playing the guitar .", "the dog", "a woman eats bread in the park today"]


@pytest.fixture(scope="module")
def decoder_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("decoders")
    dirs = {arch: build_tiny_decoder_dir(str(root / arch), arch) for arch in ARCHITECTURES}
    dirs["no_eos"] = build_tiny_decoder_dir(str(root / "no_eos"), "llama", append_eos=False)
    return dirs


def cfg_for(model_dir: str, tmp_path, **kw):
    base = dict(model_name_or_path=model_dir, train_file="unused.txt", output_dir=str(tmp_path / "run"), pooler="mean")
    return load_config(None, {**base, **kw})


def padded(tokenizer, side: str) -> dict[str, torch.Tensor]:
    tokenizer.padding_side = side
    batch = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    # a left-padded decoder needs positions counted from the first real token (as generate() passes them)
    batch["position_ids"] = (batch["attention_mask"].cumsum(1) - 1).clamp(min=0)
    return dict(batch)


@pytest.mark.parametrize("pooler", ["last_token", "mean"])
@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_pooling_is_the_same_with_left_or_right_padding(decoder_dirs, arch, pooler):
    enc = Encoder.from_pretrained(decoder_dirs[arch], pooler=pooler).eval()
    out = {}
    with torch.no_grad():
        for side in ("left", "right"):
            batch = padded(enc.tokenizer, side)
            hidden = enc.model(**batch).last_hidden_state
            out[side] = pool(pooler, batch["attention_mask"], hidden)  # (3, 32)
    assert (padded(enc.tokenizer, "left")["attention_mask"][:, 0] == 0).any()  # really left-padded
    torch.testing.assert_close(out["left"], out["right"], atol=1e-5, rtol=0)
    # and both equal each sentence alone (no padding at all), the reference
    alone = np.stack([enc.encode([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(out["right"].numpy(), alone, atol=1e-5)


def test_last_token_is_the_eos_state(decoder_dirs):
    enc = Encoder.from_pretrained(decoder_dirs["llama"], pooler="last_token").eval()
    ids = enc.tokenizer(SENTENCES[1], return_tensors="pt")
    assert ids["input_ids"][0, -1] == enc.tokenizer.eos_token_id
    with torch.no_grad():
        expected = enc.model(**ids).last_hidden_state[0, -1]
    np.testing.assert_allclose(enc.encode(SENTENCES[1]), expected.numpy(), atol=1e-6)


def test_eos_check_fires_on_a_tokenizer_that_does_not_append_eos(decoder_dirs, tmp_path):
    cfg = cfg_for(decoder_dirs["no_eos"], tmp_path, pooler="last_token")
    with pytest.raises(ValueError, match="does not append its EOS token '</s>'.*add_eos: true"):
        build_model(cfg)
    model = build_model(cfg_for(decoder_dirs["no_eos"], tmp_path, pooler="last_token", add_eos=True))
    tok = model.encoder.tokenizer
    assert appends_eos(tok) and tok("the dog")["input_ids"][0] == tok.bos_token_id  # BOS kept
    model.encoder.save(str(tmp_path / "saved"))
    assert appends_eos(Encoder.from_pretrained(str(tmp_path / "saved")).tokenizer)  # saved with the tokenizer
    build_model(cfg_for(decoder_dirs["no_eos"], tmp_path, pooler="mean"))  # mean pooling needs no EOS


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_bidirectional_attention_lets_the_first_token_see_later_ones(decoder_dirs, tmp_path, arch):
    causal = build_model(cfg_for(decoder_dirs[arch], tmp_path)).encoder.eval()
    bidir = build_model(cfg_for(decoder_dirs[arch], tmp_path, attention="bidirectional")).encoder.eval()
    assert not np.allclose(causal.encode(SENTENCES), bidir.encode(SENTENCES), atol=1e-4)
    a, b = (torch.tensor([[2, 10, 11, 12]]), torch.tensor([[2, 10, 11, 13]]))  # differ in the last token only
    with torch.no_grad():
        first = {name: [e.model(input_ids=x).last_hidden_state[0, 0] for x in (a, b)] for name, e in
                 (("causal", causal), ("bidir", bidir))}  # fmt: skip
    torch.testing.assert_close(first["causal"][0], first["causal"][1], atol=0, rtol=0)
    assert (first["bidir"][0] - first["bidir"][1]).abs().max() > 1e-4
    # saved and reloaded, the model stays bidirectional (is_causal is in its config.json)
    bidir.save(str(tmp_path / "saved"))
    np.testing.assert_allclose(Encoder.from_pretrained(str(tmp_path / "saved")).encode(SENTENCES),
                               bidir.encode(SENTENCES), atol=1e-6)  # fmt: skip


def test_bidirectional_check_names_the_architecture_that_stays_causal(decoder_dirs):
    enc = Encoder.from_pretrained(decoder_dirs["qwen2"], pooler="mean")  # is_causal left True: a causal model
    with pytest.raises(ValueError, match="qwen2 .*keeps causal attention"):
        check_bidirectional(enc.model, "tiny-qwen2")


def test_attention_and_hidden_dropout_settings(decoder_dirs, tmp_path):
    model = build_model(cfg_for(decoder_dirs["llama"], tmp_path, attention_dropout=0.3)).encoder.model
    assert model.config.attention_dropout == 0.3
    with pytest.raises(ValueError, match="llama has no hidden dropout"):
        build_model(cfg_for(decoder_dirs["llama"], tmp_path, hidden_dropout=0.1))
    gpt2 = build_model(cfg_for(decoder_dirs["gpt2"], tmp_path, hidden_dropout=0.2, attention_dropout=0.0)).encoder
    config = gpt2.model.config
    assert (config.resid_pdrop, config.embd_pdrop, config.attn_pdrop) == (0.2, 0.2, 0.0)
    # attention dropout makes two forwards of one sentence differ (the unsupervised views)
    enc = build_model(cfg_for(decoder_dirs["llama"], tmp_path, attention_dropout=0.3)).encoder.train()
    batch = enc.collate(enc.tokenize(SENTENCES * 2), range(6))
    z = enc(**batch)
    assert (z[:3] - z[3:]).abs().max() > 1e-4


def test_four_bit_is_refused_on_cpu(decoder_dirs, tmp_path):
    with pytest.raises(ValueError, match="load_in_4bit needs a CUDA GPU"):
        build_model(cfg_for(decoder_dirs["llama"], tmp_path, lora_r=4, load_in_4bit=True))
    with pytest.raises(ValueError, match="load_in_4bit needs lora_r > 0"):
        cfg_for(decoder_dirs["llama"], tmp_path, load_in_4bit=True)


def test_encode_prompt_and_include_prompt(decoder_dirs):
    enc = Encoder.from_pretrained(decoder_dirs["llama"], pooler="mean").eval()
    prompt = "query : "
    # include_prompt (default): the prompt is part of the text
    np.testing.assert_allclose(enc.encode(SENTENCES, prompt=prompt), enc.encode([prompt + s for s in SENTENCES]),
                               atol=1e-6)  # fmt: skip
    # include_prompt off: the same forward, the mean over the sentence's tokens only (hand-computed)
    enc.prompts = type(enc.prompts)({"query": prompt}, "query", include_prompt=False)
    n = prompt_length(enc.tokenizer, prompt)
    assert n == 3  # <s> query :
    ids = enc.tokenizer(prompt + SENTENCES[0], return_tensors="pt")
    with torch.no_grad():
        hidden = enc.model(**ids).last_hidden_state[0]
    np.testing.assert_allclose(enc.encode(SENTENCES[0]), hidden[n:].mean(0).numpy(), atol=1e-6)  # default prompt
    np.testing.assert_allclose(enc.encode(SENTENCES[0], prompt_name="query"), hidden[n:].mean(0).numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="unknown prompt_name 'document'"):
        enc.encode(SENTENCES, prompt_name="document")
