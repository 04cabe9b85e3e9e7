"""A tiny randomly initialised BERT with a locally built WordPiece vocabulary (nothing is downloaded)."""

from __future__ import annotations

import os
import string

_WORDS = """
the a an of and to in is was for on that with as by at from it his her he she they are be this which
or not have has had but were one all their there been when who would more after also can other into
its first new some time than only two three man woman men women people child children dog cat boy
girl playing plays play guitar piano ball running runs run walking walks walk sitting sits sit
standing stands eating eats eat riding rides ride car bike horse water street park house table chair
food bread red blue green black white small large big little old young good bad same different
similar very is are was were will said says news today year years day days government police world
city country
""".split()


def build_tokenizer(folder: str):
    """A BertTokenizerFast over special tokens, characters, ##characters and a few hundred words."""
    from transformers import BertTokenizerFast

    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *[f"##{c}" for c in chars]]
    vocab += [w for w in dict.fromkeys(_WORDS) if w not in vocab]
    os.makedirs(folder, exist_ok=True)
    # transformers 5 takes the vocabulary as a dict (its `vocab_file` keyword is silently ignored)
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True, model_max_length=128)
    assert len(tok) == len(vocab), "tokenizer did not take the vocabulary"
    return tok


def build_tiny_bert_dir(folder: str, seed: int = 0, with_pooler: bool = True, initializer_range: float = 0.02) -> str:
    """Save a tiny random BertModel (2 layers, hidden 32) plus tokenizer into ``folder``.

    ``initializer_range`` 1.0 spreads its vectors (cosines from -0.3 to 1; at 0.02 they all lie within
    1e-4 of each other, so float noise would reorder a ranking).
    """
    import torch
    from transformers import BertConfig, BertModel

    tok = build_tokenizer(folder)
    config = BertConfig(
        vocab_size=len(tok),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        initializer_range=initializer_range,
    )
    torch.manual_seed(seed)
    model = BertModel(config, add_pooling_layer=with_pooler)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def build_tiny_mlm_dir(folder: str, seed: int = 0) -> str:
    """Save a tiny random BertForMaskedLM (the tokenizer of :func:`build_tiny_bert_dir`) into ``folder``."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    tok = build_tokenizer(folder)
    config = BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)  # fmt: skip
    torch.manual_seed(seed)
    BertForMaskedLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
