"""ONNX export and the ONNX backend: same vectors as torch (float32), close ones (int8), the layout
sentence-transformers' ONNX pipeline consumes, and ``simcse export`` / ``encode --backend onnx``."""

from __future__ import annotations

import os
import shutil

import numpy as np
import onnx
import onnxruntime  # noqa: F401 (the onnx extra is part of dev: a broken install fails, never skips)
import pytest

from simcse import Encoder
from simcse.encoder.export import export_onnx, quantized_file
from simcse.encoder.onnx import ONNX_FILE
from tests.helpers.cli import simcse
from tests.helpers.vectors import row_cosine

SENTENCES = [
    "a man is playing the guitar", "a woman eats bread", "the dog runs in the park", "x",
    "the quick brown fox jumps over the lazy dog while the farmer watches from the old wooden barn",
]  # fmt: skip
INT8 = quantized_file("avx512_vnni")


@pytest.fixture(scope="module")
def exported(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Our folder of the tiny BERT with cls pooling and BERT's pooler as head, exported."""
    folder = str(tmp_path_factory.mktemp("onnx") / "model")
    Encoder.from_pretrained(tiny_model_dir, pooler="cls").save(folder)
    assert export_onnx(folder, quantize=("avx512_vnni",)) == [ONNX_FILE, INT8]
    return folder


def test_onnx_fp32_equals_torch_and_int8_is_close(exported: str) -> None:
    torch_enc = Encoder.from_pretrained(exported)
    onnx_enc = Encoder.from_pretrained(exported, backend="onnx")
    assert onnx_enc.head is not None and onnx_enc.dim == torch_enc.dim
    ref = torch_enc.encode(SENTENCES)
    np.testing.assert_allclose(onnx_enc.encode(SENTENCES, batch_size=2), ref, atol=1e-4)  # padding, batching
    np.testing.assert_allclose(onnx_enc.encode(SENTENCES, normalize=True), torch_enc.encode(SENTENCES, normalize=True),
                               atol=1e-4)  # fmt: skip
    int8 = Encoder.from_pretrained(exported, backend="onnx", onnx_file=INT8).encode(SENTENCES)
    assert row_cosine(int8, ref).min() > 0.98
    ops = {n.op_type for n in onnx.load(os.path.join(exported, INT8)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops and "MatMul" in ops  # weights int8; q @ k stays float


def test_hidden_state_poolers_export_every_layer(tiny_model_dir: str, tmp_path) -> None:
    folder = str(tmp_path / "m")
    Encoder.from_pretrained(tiny_model_dir, pooler="avg_first_last").save(folder)
    export_onnx(folder, quantize=())
    assert not os.path.exists(os.path.join(folder, INT8))
    np.testing.assert_allclose(
        Encoder.from_pretrained(folder, backend="onnx").encode(SENTENCES),
        Encoder.from_pretrained(folder).encode(SENTENCES), atol=1e-4,
    )  # fmt: skip


def test_onnx_errors_are_clear(exported: str, tiny_model_dir: str) -> None:
    with pytest.raises(OSError, match="no onnx/model.onnx; write it with: simcse export"):
        Encoder.from_pretrained(tiny_model_dir, backend="onnx")
    with pytest.raises(ValueError, match="applies to the torch backend only"):
        Encoder.from_pretrained(exported, backend="onnx").encode(SENTENCES, precision="bf16")
    with pytest.raises(ValueError, match="unknown quantization 'avx9'"):
        export_onnx(exported, quantize=("avx9",))
    with pytest.raises(ValueError, match="backend must be"):
        Encoder.from_pretrained(exported, backend="tensorrt")  # type: ignore[arg-type]


def _st_pipeline_on_onnx(folder: str, file: str, texts: list[str]) -> np.ndarray:
    """sentence-transformers' ONNX backend, step by step: its tokenizer, the graph's ``last_hidden_state`` (what
    Optimum's ORTModelForFeatureExtraction returns) as ``token_embeddings``, then its own Pooling/Normalize."""
    import onnxruntime as ort
    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(folder, device="cpu")
    features = st.tokenize(texts)
    session = ort.InferenceSession(os.path.join(folder, file), providers=["CPUExecutionProvider"])
    feeds = {i.name: features[i.name].numpy() for i in session.get_inputs()}
    features["token_embeddings"] = torch.from_numpy(session.run(["last_hidden_state"], feeds)[0])
    for module in list(st)[1:]:
        features = module(features)
    return features["sentence_embedding"].detach().numpy()


@pytest.mark.slow
def test_minilm_onnx_matches_torch_and_sentence_transformers(minilm_path: str, tmp_path) -> None:
    from sentence_transformers import SentenceTransformer

    folder = str(tmp_path / "minilm")
    shutil.copytree(minilm_path, folder)
    export_onnx(folder, quantize=("avx512_vnni",))
    ref = Encoder.from_pretrained(folder).encode(SENTENCES)
    np.testing.assert_allclose(Encoder.from_pretrained(folder, backend="onnx").encode(SENTENCES), ref, atol=1e-4)
    st_ref = SentenceTransformer(folder, device="cpu").encode(SENTENCES)
    np.testing.assert_allclose(_st_pipeline_on_onnx(folder, ONNX_FILE, SENTENCES), st_ref, atol=1e-4)
    int8 = Encoder.from_pretrained(folder, backend="onnx", onnx_file=INT8).encode(SENTENCES)
    cos = row_cosine(int8, ref)  # bench_encode on STS-B's 2,551 sentences: min 0.968, median 0.993
    assert np.median(cos) > 0.99 and cos.min() > 0.95
    np.testing.assert_allclose(_st_pipeline_on_onnx(folder, INT8, SENTENCES), int8, atol=1e-4)


@pytest.mark.slow
def test_export_and_encode_commands(exported: str, tmp_path) -> None:
    folder = str(tmp_path / "m")
    shutil.copytree(exported, folder, ignore=shutil.ignore_patterns("onnx"))
    done = simcse("export", folder, "--quantize", "none")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [os.path.join(folder, ONNX_FILE)]
    text = tmp_path / "in.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    for backend in ("torch", "onnx"):
        out = str(tmp_path / f"{backend}.npy")
        done = simcse("encode", "--model", folder, "--backend", backend, str(text), "-o", out)
        assert done.returncode == 0, done.stderr
    np.testing.assert_allclose(np.load(tmp_path / "onnx.npy"), np.load(tmp_path / "torch.npy"), atol=1e-4)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "no/such/folder"], "no/such/folder: not a local folder"),
        (["encode", "--model", "{tiny}", "--backend", "onnx", "{text}"], "no onnx/model.onnx; write it with"),
    ],
)
@pytest.mark.slow
def test_onnx_command_errors_are_one_line(args, message, tiny_model_dir, tmp_path) -> None:
    text = tmp_path / "in.txt"
    text.write_text("a\n")
    done = simcse(*[a.format(tiny=tiny_model_dir, text=text) for a in args])
    lines = done.stderr.strip().splitlines()
    assert done.returncode != 0 and len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    assert lines[0].startswith(f"simcse {args[0]}: error: ") and message in lines[0]


@pytest.mark.slow
def test_export_help_shows_an_example() -> None:
    done = simcse("export", "--help")
    assert done.returncode == 0 and "simcse export runs/" in done.stdout and "--quantize" in done.stdout


def test_export_runs_in_eval_mode_without_dropout(tmp_path) -> None:
    """Issue 27 (5): export warned "Exporting a model while it is in training mode"; the graph of a model with
    dropout 0.5 must give the same vectors on every run (and torch's eval-mode vectors), with no such warning."""
    import json
    import warnings

    from tests.helpers.models import build_tiny_bert_dir

    folder = build_tiny_bert_dir(str(tmp_path / "drop"), seed=3)
    with open(os.path.join(folder, "config.json")) as f:
        config = json.load(f)
    config.update(hidden_dropout_prob=0.5, attention_probs_dropout_prob=0.5)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export_onnx(folder, quantize=())
    assert not [w for w in caught if "training mode" in str(w.message)], [str(w.message) for w in caught]
    assert "Dropout" not in {n.op_type for n in onnx.load(os.path.join(folder, ONNX_FILE)).graph.node}
    onnx_enc = Encoder.from_pretrained(folder, pooler="avg", backend="onnx")
    first, second = onnx_enc.encode(SENTENCES), onnx_enc.encode(SENTENCES)
    np.testing.assert_array_equal(first, second)
    np.testing.assert_allclose(first, Encoder.from_pretrained(folder, pooler="avg").encode(SENTENCES), atol=1e-4)
