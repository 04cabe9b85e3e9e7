"""Tiny randomly initialised decoder backbones (hidden 32, 2 layers) with a locally built tokenizer.

Nothing is downloaded: the configs are built here and the tokenizer is a word-level ``tokenizers``
model over the test vocabulary, wrapped in ``PreTrainedTokenizerFast`` with BOS/EOS/PAD tokens.
"""

from __future__ import annotations

import os

from tests.helpers.models import _WORDS

SPECIALS = ["<pad>", "<unk>", "<s>", "</s>"]
ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma", "gpt2")


def build_decoder_tokenizer(append_eos: bool = True):
    """A word-level fast tokenizer: ``<s> words`` (+ ``</s>`` when ``append_eos``); pad ``<pad>``."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(dict.fromkeys([*SPECIALS, *_WORDS, ".", ",", ":", "?", "query", "passage"]))}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    single = "<s> $A" + (" </s>" if append_eos else "")
    pair = single + " $B" + (" </s>" if append_eos else "")
    backend.post_processor = processors.TemplateProcessing(
        single=single, pair=pair, special_tokens=[("<s>", vocab["<s>"]), ("</s>", vocab["</s>"])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=128,
    )  # fmt: skip


def decoder_config(arch: str, vocab_size: int, hidden: int = 32):
    """A 2-layer config of ``arch`` (a transformers ``model_type``) with ``hidden`` units."""
    from transformers import AutoConfig

    if arch == "gpt2":
        return AutoConfig.for_model(
            "gpt2", vocab_size=vocab_size, n_embd=hidden, n_layer=2, n_head=2, n_positions=128,
            bos_token_id=2, eos_token_id=3, pad_token_id=0,
        )  # fmt: skip
    return AutoConfig.for_model(
        arch, vocab_size=vocab_size, hidden_size=hidden, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, intermediate_size=2 * hidden, max_position_embeddings=128, head_dim=hidden // 2,
        bos_token_id=2, eos_token_id=3, pad_token_id=0, tie_word_embeddings=False,
    )  # fmt: skip


def build_tiny_decoder_dir(folder: str, arch: str = "llama", seed: int = 0, append_eos: bool = True) -> str:
    """Save a tiny random ``AutoModel`` of ``arch`` plus the word-level tokenizer into ``folder``."""
    import torch
    from transformers import AutoModel

    tok = build_decoder_tokenizer(append_eos)
    torch.manual_seed(seed)
    model = AutoModel.from_config(decoder_config(arch, len(tok)))
    os.makedirs(folder, exist_ok=True)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
