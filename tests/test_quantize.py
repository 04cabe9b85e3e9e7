"""Embedding quantization for search: int8 / binary codes against hand-written and sentence-transformers
references, Hamming top-k against a brute-force loop, float rescoring, truncate_dim, the search command."""

from __future__ import annotations

import numpy as np
import pytest

from simcse.cli import main
from simcse.quantize import (
    QuantizedIndex,
    calibration_ranges,
    dequantize_int8,
    hamming_distances,
    quantize_binary,
    quantize_int8,
    recall_at_k,
    search_vectors,
    truncate_embeddings,
)
from simcse.search import top_k_cosine


def _random_unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_int8_codes_by_hand() -> None:
    np.testing.assert_array_equal(calibration_ranges(np.array([[0, 1], [0.5, -1], [1, 0]])), [[0, -1], [1, 1]])
    ranges = np.array([[0.0, -1.0], [1.0, 1.0]], dtype=np.float32)
    emb = np.array([[0.25, 0.9], [0.61, -0.95], [0.999, 0.0], [1.5, -2.0]], dtype=np.float32)
    # step = (max - min) / 255 = [1/255, 2/255]; code = floor((x - min) / step), clipped to [0, 255], - 128
    # dim 0: 0.25*255 = 63.75, 0.61*255 = 155.55, 0.999*255 = 254.7, 1.5 -> clipped to 255
    # dim 1: 1.9*127.5 = 242.25, 0.05*127.5 = 6.375, 1.0*127.5 = 127.5, -2 -> clipped to 0
    expected = np.array([[63, 242], [155, 6], [254, 127], [255, 0]]) - 128
    codes = quantize_int8(emb, ranges)
    assert codes.dtype == np.int8
    np.testing.assert_array_equal(codes, expected)
    # decoding gives the bucket centres: min + (code + 128.5) * step
    np.testing.assert_allclose(dequantize_int8(codes, ranges)[0], [63.5 / 255, -1 + 242.5 * 2 / 255], rtol=1e-6)


def test_codes_equal_sentence_transformers() -> None:
    from sentence_transformers.quantization import quantize_embeddings

    emb = _random_unit(50, 24, seed=0)
    calib = _random_unit(200, 24, seed=1)
    ours = quantize_int8(emb, calibration_ranges(calib))
    np.testing.assert_array_equal(ours, quantize_embeddings(emb, "int8", calibration_embeddings=calib))
    np.testing.assert_array_equal(quantize_binary(emb), quantize_embeddings(emb, "ubinary"))


def test_binary_bits_by_hand() -> None:
    x = np.array([[0.3, -0.1, 0.2, 0.0, -5.0, 1.0, 1.0, -1.0, 0.4]], dtype=np.float32)
    # sign bits 1 0 1 0 0 1 1 0 | 1 (padded with zeros): 0b10100110 = 166, 0b10000000 = 128
    np.testing.assert_array_equal(quantize_binary(x), [[166, 128]])


def test_hamming_top_k_equals_a_brute_force_loop() -> None:
    corpus, queries = _random_unit(300, 37, seed=2), _random_unit(20, 37, seed=3)
    cbits, qbits = quantize_binary(corpus), quantize_binary(queries)
    distances = hamming_distances(qbits, cbits)
    index = QuantizedIndex.build(corpus, "binary")
    hits = index.search(queries, top_k=5, chunk_size=7)
    for q in range(len(queries)):
        loop = [sum(bin(a ^ b).count("1") for a, b in zip(qbits[q], cbits[c])) for c in range(len(corpus))]
        assert list(distances[q]) == loop
        best = sorted(range(len(corpus)), key=lambda c: (loop[c], c))[:5]  # ties: lower index first
        assert [i for i, _ in hits[q]] == best
        assert [s for _, s in hits[q]] == pytest.approx([1 - 2 * loop[c] / 37 for c in best])


def test_int8_scores_are_the_inner_product_with_decoded_codes() -> None:
    corpus, queries = _random_unit(100, 16, seed=4), _random_unit(5, 16, seed=5)
    index = QuantizedIndex.build(corpus, "int8")
    decoded = dequantize_int8(index.codes, index.ranges)
    np.testing.assert_allclose(index.scores(queries, block=33).numpy(), queries @ decoded.T, rtol=1e-5, atol=1e-5)


def test_rescoring_recall_on_random_data() -> None:
    corpus, queries = _random_unit(2000, 64, seed=6), _random_unit(100, 64, seed=7)
    exact = top_k_cosine(queries, corpus, 10)
    int8_rescored = search_vectors(queries, corpus, 10, "int8", rescore_multiplier=4)
    binary = search_vectors(queries, corpus, 10, "binary")
    binary_rescored = search_vectors(queries, corpus, 10, "binary", rescore_multiplier=10)
    assert recall_at_k(int8_rescored, exact) >= 0.97
    assert recall_at_k(binary_rescored, exact) >= recall_at_k(binary, exact) + 0.2
    # rescored scores are the exact cosines of the hits
    for q, hits in enumerate(int8_rescored[:5]):
        assert [s for _, s in hits] == pytest.approx([float(queries[q] @ corpus[i]) for i, _ in hits], abs=1e-5)


def test_rescoring_every_candidate_is_exact_search() -> None:
    corpus, queries = _random_unit(50, 8, seed=8), _random_unit(6, 8, seed=9)
    exact = top_k_cosine(queries, corpus, 5)
    for precision in ("int8", "binary"):
        found = search_vectors(queries, corpus, 5, precision, rescore_multiplier=10)  # 50 candidates: all
        assert [[i for i, _ in h] for h in found] == [[i for i, _ in h] for h in exact]


def test_bad_arguments() -> None:
    corpus = _random_unit(10, 8, seed=10)
    with pytest.raises(ValueError, match="precision"):
        search_vectors(corpus, corpus, 3, "int4")
    with pytest.raises(ValueError, match="queries of shape"):
        QuantizedIndex.build(corpus, "int8").search(corpus[:, :4])
    with pytest.raises(ValueError, match="truncate_dim"):
        truncate_embeddings(corpus, 9)


def test_truncate_dim_in_encode(tiny_encoder) -> None:
    sentences = ["a man plays the guitar", "the cat sits", "a woman eats bread and drinks water"]
    full = tiny_encoder.encode(sentences, normalize=True)
    cut = tiny_encoder.encode(sentences, normalize=True, truncate_dim=8, batch_size=2)
    expected = full[:, :8] / np.linalg.norm(full[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose(cut, expected, rtol=1e-5, atol=1e-6)
    raw = tiny_encoder.encode(sentences, truncate_dim=8)
    np.testing.assert_allclose(raw, tiny_encoder.encode(sentences)[:, :8], rtol=1e-6)  # no normalize: a plain cut
    assert tiny_encoder.encode("a cat", truncate_dim=4).shape == (4,)
    with pytest.raises(ValueError, match="truncate_dim"):
        tiny_encoder.encode(sentences, truncate_dim=33)


def test_search_command_with_precision_and_truncation(tiny_model_dir, tmp_path, capsys) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(["a man plays the guitar", "the cat sits", "a dog runs in the park", "red car"]) + "\n")
    base = ["search", "--model", tiny_model_dir, "--pooler", "avg", "--corpus", str(corpus), "-k", "4", "--no-progress"]
    outputs = {}
    for name, extra in {
        "float": [],
        "binary_all": ["--precision", "binary", "--rescore-multiplier", "1"],  # 4 candidates: every line
        "int8": ["--precision", "int8"],
        "cut": ["--truncate-dim", "16"],
    }.items():
        assert main([*base, *extra, "a man plays music"]) == 0
        outputs[name] = capsys.readouterr().out
    assert outputs["binary_all"] == outputs["float"]  # rescored over the whole corpus: exact cosines and order
    assert outputs["int8"].count("[line") == 4 and outputs["cut"].count("[line") == 4
    assert main([*base, "--rescore-multiplier", "4", "q"]) == 1
    assert "goes with --precision int8 or binary" in capsys.readouterr().err
    assert main([*base, "--truncate-dim", "0", "q"]) == 1
    assert "--truncate-dim must be in [1, 32]" in capsys.readouterr().err


def test_encode_command_truncates(tiny_model_dir, tmp_path) -> None:
    src, out = tmp_path / "s.txt", tmp_path / "v.npy"
    src.write_text("a man plays the guitar\nthe cat sits\n")
    args = ["encode", "--model", tiny_model_dir, "--pooler", "avg", "--no-progress", str(src)]
    assert main([*args, "--normalize", "--truncate-dim", "8", "-o", str(out)]) == 0
    vectors = np.load(out)
    assert vectors.shape == (2, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
