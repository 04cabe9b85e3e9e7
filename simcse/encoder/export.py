"""ONNX export and int8 dynamic quantization of an :class:`~simcse.encoder.Encoder` folder (``simcse export``).

The exported graph is the backbone only (token ids in, ``last_hidden_state`` out, as Optimum's
``ORTModelForFeatureExtraction`` and so sentence-transformers' ``backend="onnx"`` read it); pooling and
the head stay the library's own (:func:`simcse.encoder.pooling.pool`, :class:`~simcse.encoder.heads.DenseHead`),
so the ONNX path cannot drift from the torch one. Files go where sentence-transformers looks for them::

    FOLDER/onnx/model.onnx                       float32
    FOLDER/onnx/model_qint8_avx512_vnni.onnx     int8 weights, dynamic int8 activations (any AVX512-VNNI CPU)
    FOLDER/onnx/model_qint8_avx2.onnx            the same with 7-bit weights, for CPUs without VNNI

Why ``torch.onnx.export(dynamo=True)`` and ``onnxruntime.quantization.quantize_dynamic``: Optimum's
exporter (optimum-onnx 0.1) pins ``transformers<4.58`` and cannot be installed beside transformers 5; the
legacy TorchScript exporter traces transformers 5's attention-mask code with the example's shapes baked
in (wrong outputs for other lengths). The dynamo exporter gives the same vectors as torch (checked after
every export), and ONNX Runtime's own quantizer is what Optimum calls underneath. Quantization covers the
weight matrix products only (``MatMul`` with a constant operand), per output channel: per-tensor scales
cost all-MiniLM-L6-v2 a median cosine of 0.968 to its float32 vectors, per-channel 0.994.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from typing import Any

import numpy as np
import torch
from torch import nn

from simcse.encoder.encoder import Encoder
from simcse.encoder.onnx import ONNX_FILE, OnnxBackbone
from simcse.encoder.pooling import needs_hidden_states

logger = logging.getLogger(__name__)

# name -> quantize_dynamic settings; the names are sentence-transformers' (export_dynamic_quantized_onnx_model)
QUANTIZATIONS: dict[str, dict[str, Any]] = {
    "avx512_vnni": {"reduce_range": False},
    "avx2": {"reduce_range": True},  # 7-bit weights: no int16 saturation in AVX2's u8*s8 multiply-add
}
EXPORT_TOLERANCE = 1e-3  # max |onnx - torch| on the check batch; a wrong export is off by O(1)
TWO_GB = 2**31


def quantized_file(config: str) -> str:
    """The folder-relative path of the int8 model for a quantization ``config`` (see :data:`QUANTIZATIONS`)."""
    return f"onnx/model_qint8_{config}.onnx"


class _Backbone(nn.Module):
    """The transformer with positional inputs and tensor outputs, as the exporter needs."""

    def __init__(self, model: nn.Module, input_names: list[str], all_layers: bool) -> None:
        super().__init__()
        self.model, self.input_names, self.all_layers = model, input_names, all_layers

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(**dict(zip(self.input_names, inputs)), output_hidden_states=self.all_layers)
        return (out.last_hidden_state, *(out.hidden_states if self.all_layers else ()))


def _check_batch(encoder: Any) -> dict[str, torch.Tensor]:
    texts = ["a", "The quick brown fox jumps over the lazy dog near the river bank today.", "two words"]
    features = encoder.tokenize(texts)
    return encoder.collate(features, list(range(len(texts))))


def export_onnx(folder: str, *, quantize: tuple[str, ...] = ("avx512_vnni",), opset: int = 18) -> list[str]:
    """Export the model in ``folder`` to ONNX (and int8 variants) under ``folder/onnx/``.

    Every file is written beside its final name and renamed into place, so an interrupted export leaves
    the folder as it was. The float32 graph is checked against torch on a padded batch before it is kept.

    Args:
        folder: A model folder :meth:`Encoder.from_pretrained` reads (ours, sentence-transformers', plain HF).
        quantize: Quantization configs to write (keys of :data:`QUANTIZATIONS`); empty for float32 only.
        opset: ONNX opset version.

    Returns:
        The written files, relative to ``folder``.

    Raises:
        ValueError: An unknown quantization config, or the exported graph disagrees with torch.
        OSError: ``folder`` is not a local model folder.

    Example:
        >>> export_onnx("runs/demo/model")  # doctest: +SKIP
        ['onnx/model.onnx', 'onnx/model_qint8_avx512_vnni.onnx']
    """
    unknown = [q for q in quantize if q not in QUANTIZATIONS]
    if unknown:
        raise ValueError(f"unknown quantization {unknown[0]!r}; choose from {', '.join(QUANTIZATIONS)}")
    if not os.path.isdir(folder):
        raise OSError(f"{folder}: not a local model folder (export writes into it)")
    encoder = Encoder.from_pretrained(folder).eval()
    batch = _check_batch(encoder)
    names = [k for k in encoder.tokenizer.model_input_names if k in batch]
    all_layers = needs_hidden_states(encoder.pooler)
    n_layers = int(encoder.model.config.num_hidden_layers)
    outputs = ["last_hidden_state"] + ([f"hidden_states.{i}" for i in range(n_layers + 1)] if all_layers else [])
    big = sum(p.numel() * p.element_size() for p in encoder.model.parameters()) > TWO_GB * 0.9
    os.makedirs(os.path.join(folder, "onnx"), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".export-", dir=os.path.join(folder, "onnx"))
    try:
        fp32 = os.path.join(work, "model.onnx")
        seq = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
        torch.onnx.export(
            # eval(): a new module starts in training mode, and the exporter warns (dropout is off either way
            # below it, as the encoder is in eval mode; the test checks the graph is deterministic)
            _Backbone(encoder.model, names, all_layers).eval(), tuple(batch[k] for k in names), fp32, dynamo=True,
            input_names=names, output_names=outputs, dynamic_shapes=(tuple(seq for _ in names),), opset_version=opset,
            external_data=big, verbose=False,
        )  # fmt: skip
        _verify(encoder, fp32, batch)
        written = {fp32: ONNX_FILE}
        for config in quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            path = os.path.join(work, os.path.basename(quantized_file(config)))
            quantize_dynamic(
                fp32, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True,
                use_external_data_format=big, extra_options={"MatMulConstBOnly": True}, **QUANTIZATIONS[config],
            )  # fmt: skip
            written[path] = quantized_file(config)
        _move_into_place(work, folder, written)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("wrote %s", ", ".join(os.path.join(folder, f) for f in written.values()))
    return list(written.values())


def _verify(encoder: Any, path: str, batch: dict[str, torch.Tensor]) -> None:
    """Compare the exported graph's ``last_hidden_state`` with torch's on ``batch`` (a padded batch)."""
    with torch.inference_mode():
        expected = encoder.model(**batch).last_hidden_state.numpy()  # (batch, seq, hidden)
    got = OnnxBackbone(path, encoder.model.config)(**batch).last_hidden_state.numpy()
    diff = float(np.abs(got - expected).max())
    if not diff <= EXPORT_TOLERANCE:
        raise ValueError(f"the exported ONNX graph differs from torch by {diff:.3g} (> {EXPORT_TOLERANCE}); not kept")


def _move_into_place(work: str, folder: str, written: dict[str, str]) -> None:
    """Rename the finished files (external-data files first, each graph last) into ``folder/onnx/``."""
    target_dir = os.path.join(folder, "onnx")
    graphs = set(written)
    for name in sorted(os.listdir(work)):
        src = os.path.join(work, name)
        if src not in graphs:  # external weights of a >2 GB model
            os.replace(src, os.path.join(target_dir, name))
    for src, rel in written.items():
        os.replace(src, os.path.join(folder, rel))


