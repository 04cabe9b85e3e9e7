"""One padding (``simcse.encoder.padding``) behind ``Encoder.collate`` and the training batches: they agree."""

from __future__ import annotations

import torch

from simcse import Encoder
from simcse.config import load_config
from simcse.data.cache import load_training_views

TEXTS = ["a man", "a man is playing the guitar in the park today", "the dog runs", "an old red car in the street"]


def hand_padded(features: dict[str, list[list[int]]], rows: list[int], pad_id: int) -> dict[str, torch.Tensor]:
    """Right padding written out row by row (the reference)."""
    width = max(len(features["input_ids"][i]) for i in rows)
    out = {}
    for key, seqs in features.items():
        fill = pad_id if key == "input_ids" else 0
        out[key] = torch.tensor([seqs[i] + [fill] * (width - len(seqs[i])) for i in rows])
    out["attention_mask"] = torch.tensor([[1] * len(features["input_ids"][i]) + [0] * (width - len(
        features["input_ids"][i])) for i in rows])  # fmt: skip
    return out


def test_encode_and_training_pad_the_same_rows_alike(tiny_model_dir, tmp_path) -> None:
    encoder = Encoder.from_pretrained(tiny_model_dir, pooler="avg", device="cpu")
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS) + "\n", encoding="utf-8")
    cfg = load_config(None, {"model_name_or_path": tiny_model_dir, "train_file": str(corpus), "max_seq_len": 64,
                             "data_cache_dir": str(tmp_path / "cache"), "output_dir": str(tmp_path / "run")})
    views = load_training_views(cfg, encoder.tokenizer, verbose=False)
    rows = [3, 0, 1]
    features = encoder.tokenize(TEXTS, max_length=64)
    encoded = encoder.collate(features, rows)  # the encode side
    trained = views.collate(rows)  # the training side: both views of each row, view-major
    reference = hand_padded({k: v for k, v in features.items() if k != "attention_mask"}, rows,
                            encoder.tokenizer.pad_token_id)  # fmt: skip
    assert set(encoded) == set(trained) == set(reference)
    for key, expected in reference.items():
        assert torch.equal(encoded[key], expected), key
        assert torch.equal(trained[key], torch.cat([expected, expected])), key  # unsup: the sentence twice
