"""Encoder: invariances of ``encode``, similarity, search, save/load round trips, the three readers."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from simcse import Encoder
from simcse.encoder.heads import DenseHead

SENTENCES = [
    "a man is playing a guitar .",
    "a woman is playing the piano",
    "dogs",
    "the old woman reads the news in the park today while the young children play with a red ball",
    "a cat sits on a chair",
    "",
    "the police said the city government will build a new street next year",
    "boy",
    "two men are riding horses in the water near the green house",
    "people eat bread and food at the table",
    "the girl walks the little black dog",
    "a child runs",
    "the same old news",
]


@pytest.fixture(scope="module")
def reference(tiny_encoder: Encoder) -> np.ndarray:
    """Embeddings of SENTENCES one at a time (no padding at all)."""
    return np.stack([tiny_encoder.encode([s], batch_size=1)[0] for s in SENTENCES])


# ------------------------------------------------------------------ encode invariances
@pytest.mark.parametrize("batch_size", [1, 7, 64])
def test_encode_is_independent_of_batch_size(tiny_encoder: Encoder, reference: np.ndarray, batch_size: int) -> None:
    np.testing.assert_allclose(tiny_encoder.encode(SENTENCES, batch_size=batch_size), reference, atol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_encode_is_independent_of_input_order(tiny_encoder: Encoder, reference: np.ndarray, seed: int) -> None:
    perm = np.random.default_rng(seed).permutation(len(SENTENCES))
    got = tiny_encoder.encode([SENTENCES[i] for i in perm], batch_size=4)
    np.testing.assert_allclose(got, reference[perm], atol=1e-5)


def test_sentence_alone_equals_sentence_padded_among_longer_ones(tiny_encoder: Encoder) -> None:
    short = "a dog"
    longer = [f"the {w} man is playing the old red guitar in the park with his children" for w in ("young", "big")]
    alone = tiny_encoder.encode(short)
    batched = tiny_encoder.encode([longer[0], short, longer[1]], batch_size=3)
    np.testing.assert_allclose(batched[1], alone, atol=1e-5)


def test_encode_shapes_and_edge_cases(tiny_encoder: Encoder, reference: np.ndarray) -> None:
    single = tiny_encoder.encode(SENTENCES[0])
    assert single.shape == (tiny_encoder.dim,) and single.dtype == np.float32
    np.testing.assert_allclose(single, reference[0], atol=1e-5)
    empty = tiny_encoder.encode("")
    assert empty.shape == (tiny_encoder.dim,) and np.isfinite(empty).all()
    none = tiny_encoder.encode([])
    assert none.shape == (0, tiny_encoder.dim) and none.dtype == np.float32
    normed = tiny_encoder.encode(SENTENCES, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(normed, axis=1), 1.0, atol=1e-5)
    with pytest.raises(TypeError, match="item 1"):
        tiny_encoder.encode(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        tiny_encoder.encode(["ok"], batch_size=0)


def test_encode_restores_training_mode(tiny_model_dir: str) -> None:
    encoder = Encoder.from_pretrained(tiny_model_dir, pooler="avg").train()
    a = encoder.encode(SENTENCES[:3])
    assert encoder.training
    np.testing.assert_allclose(encoder.encode(SENTENCES[:3]), a, atol=1e-6)  # dropout was off while encoding


# ------------------------------------------------------------------ similarity and search
def test_similarity_is_the_cosine_matrix(tiny_encoder: Encoder, reference: np.ndarray) -> None:
    a, b = reference[:4], reference[4:]
    expected = np.array([[x @ y / np.linalg.norm(x) / np.linalg.norm(y) for y in b] for x in a])
    np.testing.assert_allclose(tiny_encoder.similarity(SENTENCES[:4], SENTENCES[4:]), expected, atol=1e-5)
    np.testing.assert_allclose(tiny_encoder.similarity(a, b), expected, atol=1e-5)


def test_search_returns_the_exact_top_k(tiny_encoder: Encoder) -> None:
    from simcse.search import top_k_cosine

    rng = np.random.default_rng(0)
    queries, corpus = rng.normal(size=(9, 16)), rng.normal(size=(300, 16))
    qn = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    cn = corpus / np.linalg.norm(corpus, axis=1, keepdims=True)
    sims = qn @ cn.T  # (9, 300)
    for k in (1, 5, 300, 1000):
        hits = top_k_cosine(queries.astype(np.float32), corpus.astype(np.float32), top_k=k)
        want = np.argsort(-sims, axis=1, kind="stable")[:, : min(k, 300)]
        assert [[i for i, _ in row] for row in hits] == want.tolist()
        got_scores = np.array([[s for _, s in row] for row in hits])
        np.testing.assert_allclose(got_scores, np.take_along_axis(sims, want, axis=1), atol=1e-5)
    # through the encoder, with sentences as corpus and as precomputed embeddings
    emb = tiny_encoder.encode(SENTENCES)
    sims = tiny_encoder.similarity(emb[:2], emb)
    want = np.argsort(-sims, axis=1, kind="stable")[:, :3]
    for corpus_arg in (SENTENCES, emb):
        hits = tiny_encoder.search(SENTENCES[:2], corpus_arg, top_k=3)
        assert [[i for i, _ in row] for row in hits] == want.tolist()
    assert tiny_encoder.search(SENTENCES[0], SENTENCES, top_k=1)[0][0][0] == 0


# ------------------------------------------------------------------ save / load
def _random_mlp(dim: int, seed: int = 1) -> DenseHead:
    """A fresh SimCSE MLP (square Linear + Tanh), different from the checkpoint's BERT pooler."""
    torch.manual_seed(seed)
    return DenseHead(dim, dim)


@pytest.fixture(scope="module")
def saved(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Encoder, str]]:
    """Encoders saved by ``Encoder.save``: avg, cls with a new MLP head, avg_top2 (no ST equivalent)."""
    out = {}
    for name in ("avg", "cls", "avg_top2"):
        encoder = Encoder.from_pretrained(tiny_model_dir, pooler=name).eval()
        if name == "cls":
            encoder.head = _random_mlp(encoder.dim)
        path = str(tmp_path_factory.mktemp("saved") / name)
        encoder.save(path)
        out[name] = (encoder, path)
    return out


@pytest.mark.parametrize("name", ["avg", "cls", "avg_top2"])
def test_save_then_load_gives_identical_embeddings(saved, name: str) -> None:
    encoder, path = saved[name]
    loaded = Encoder.from_pretrained(path)
    assert loaded.pooler == name and (loaded.head is None) == (encoder.head is None or name != "cls")
    np.testing.assert_allclose(loaded.encode(SENTENCES), encoder.encode(SENTENCES), atol=1e-6)


@pytest.mark.parametrize("name", ["avg", "cls"])
def test_sentence_transformers_reads_the_saved_folder(saved, name: str) -> None:
    from sentence_transformers import SentenceTransformer

    encoder, path = saved[name]
    st = SentenceTransformer(path, device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES, batch_size=5), encoder.encode(SENTENCES), atol=1e-5)


def test_automodel_pooler_output_is_the_simcse_mlp(saved) -> None:
    """SimCSE stores its MLP in BERT's pooler, so ``AutoModel``'s ``pooler_output`` is our embedding."""
    from transformers import AutoModel, AutoTokenizer

    encoder, path = saved["cls"]
    model, tok = AutoModel.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)
    with torch.no_grad():
        pooled = model(**tok(SENTENCES, padding=True, return_tensors="pt")).pooler_output
    np.testing.assert_allclose(pooled.numpy(), encoder.encode(SENTENCES), atol=1e-5)


def test_save_without_head_records_cls_before_pooler(saved, tmp_path) -> None:
    encoder, _ = saved["cls"]
    encoder.save(str(tmp_path / "nohead"), include_head=False)
    loaded = Encoder.from_pretrained(str(tmp_path / "nohead"))
    assert loaded.pooler == "cls_before_pooler"
    np.testing.assert_allclose(loaded.encode(SENTENCES), encoder.encode(SENTENCES, use_head=False), atol=1e-6)


def test_avg_top2_folder_has_no_sentence_transformers_modules(saved) -> None:
    assert not os.path.exists(os.path.join(saved["avg_top2"][1], "modules.json"))


def test_save_replaces_an_existing_folder_atomically(saved, tmp_path) -> None:
    encoder, _ = saved["avg"]
    path = tmp_path / "model"
    path.mkdir()
    (path / "stale.txt").write_text("old", encoding="utf-8")
    encoder.save(str(path))
    assert not (path / "stale.txt").exists() and (path / "config.json").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".")] == []  # no temporary folder left


def test_saved_files_are_as_readable_as_the_umask_allows(saved, tmp_path) -> None:
    """Weights written through mkstemp (0600) would make a shared model folder unreadable to others."""
    encoder, _ = saved["avg"]
    previous = os.umask(0o022)
    try:
        encoder.save(str(tmp_path / "model"))
    finally:
        os.umask(previous)
    for root, _, files in os.walk(tmp_path / "model"):
        for name in files:
            assert os.stat(os.path.join(root, name)).st_mode & 0o777 == 0o644, name


# ------------------------------------------------------------------ bad paths
def test_loading_a_folder_that_is_not_a_model_fails_clearly(tmp_path) -> None:
    (tmp_path / "notes.txt").write_text("hello", encoding="utf-8")
    with pytest.raises(FileNotFoundError, match=r"not a model folder \(no config.json or modules.json"):
        Encoder.from_pretrained(str(tmp_path))
    with pytest.raises(ValueError, match="is a file"):
        Encoder.from_pretrained(str(tmp_path / "notes.txt"))


# ------------------------------------------------------------------ the real model
@pytest.mark.slow
def test_sentence_transformers_folder_picks_avg_and_normalize(minilm_path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = Encoder.from_pretrained(str(minilm_path))
    assert (encoder.pooler, encoder.normalize, encoder.head, encoder.max_seq_length) == ("avg", True, None, 256)
    st = SentenceTransformer(str(minilm_path), device="cpu")
    np.testing.assert_allclose(encoder.encode(SENTENCES), st.encode(SENTENCES), atol=1e-5)


def test_normalize_survives_save_for_all_three_readers(tiny_model_dir: str, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    encoder = Encoder.from_pretrained(tiny_model_dir, pooler="avg")
    encoder.normalize = True
    encoder.save(str(tmp_path / "m"))
    want = encoder.encode(SENTENCES)
    np.testing.assert_allclose(np.linalg.norm(want, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(Encoder.from_pretrained(str(tmp_path / "m")).encode(SENTENCES), want, atol=1e-6)
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    np.testing.assert_allclose(st.encode(SENTENCES), want, atol=1e-5)
