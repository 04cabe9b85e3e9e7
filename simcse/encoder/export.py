"""ONNX export and int8 dynamic quantization of an :class:`~simcse.encoder.Encoder` folder (``simcse export``).

The exported graph is the backbone only (token ids in, ``last_hidden_state`` out, as Optimum's
``ORTModelForFeatureExtraction`` and so sentence-transformers' ``backend="onnx"`` read it); pooling and
the head stay the library's own (:func:`simcse.encoder.pooling.pool`, :class:`~simcse.encoder.heads.DenseHead`),
so the ONNX path cannot drift from the torch one. Files go where sentence-transformers looks for them::

    FOLDER/onnx/model.onnx                       float32
    FOLDER/onnx/model_qint8_avx512_vnni.onnx     int8 weights, dynamic int8 activations (any AVX512-VNNI CPU)
    FOLDER/onnx/model_qint8_avx2.onnx            the same with 7-bit weights, for CPUs without VNNI
    FOLDER/onnx/model_qint8_static.onnx          int8 with calibrated (static) ranges: :mod:`simcse.encoder.int8`

Every file runs on ONNX Runtime (``backend="onnx"``) and OpenVINO (``backend="openvino"``). A ``check``
callback (e.g. :class:`simcse.evaluation.export_gate.STSGate`) sees the finished files before they are
moved into place, and can refuse them.

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
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from simcse.encoder.encoder import Encoder
from simcse.encoder.int8 import calibration_feeds, quantize_static_onnx
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
STATIC = "static"  # calibrated int8 (see simcse.encoder.int8); needs calibration sentences
# check(folder, fp32, quantized): the float32 graph and {final file: finished file}, relative to folder
ExportCheck = Callable[[str, str, dict[str, str]], None]


def quantized_file(config: str) -> str:
    """The folder-relative path of the int8 model for a ``config`` (a key of :data:`QUANTIZATIONS`, or ``static``)."""
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


def export_onnx(
    folder: str | os.PathLike[str], *, quantize: Sequence[str] = ("avx512_vnni",), opset: int = 18,
    calibration: Sequence[str] | None = None, check: ExportCheck | None = None,
) -> list[str]:  # fmt: skip
    """Export the model in ``folder`` to ONNX (and int8 variants) under ``folder/onnx/``.

    Every file is written beside its final name and renamed into place, so an interrupted (or refused)
    export leaves the folder as it was. The float32 graph is checked against torch on a padded batch.

    Args:
        folder: A model folder :meth:`Encoder.from_pretrained` reads (ours, sentence-transformers', plain HF).
        quantize: Quantization configs to write (keys of :data:`QUANTIZATIONS`, and ``static`` for calibrated
            int8); empty for float32 only.
        opset: ONNX opset version.
        calibration: Sentences that calibrate ``static`` int8 (e.g. :func:`simcse.encoder.int8.read_calibration`).
        check: Called with the finished files before they are moved into place; raising refuses them all.

    Returns:
        The written files, relative to ``folder``.

    Raises:
        ValueError: An unknown quantization config, ``static`` without calibration sentences, the exported
            graph disagrees with torch, or ``check`` refused the files.
        OSError: ``folder`` is not a local model folder.

    Example:
        >>> export_onnx("runs/demo/model")  # doctest: +SKIP
        ['onnx/model.onnx', 'onnx/model_qint8_avx512_vnni.onnx']
    """
    folder = os.fspath(folder)
    unknown = [q for q in quantize if q not in (*QUANTIZATIONS, STATIC)]
    if unknown:
        raise ValueError(f"unknown quantization {unknown[0]!r}; choose from {', '.join((*QUANTIZATIONS, STATIC))}")
    if STATIC in quantize and not calibration:
        raise ValueError("static int8 needs calibration sentences (e.g. a few hundred lines of the training corpus)")
    if not os.path.isdir(folder):
        raise OSError(f"{folder}: not a local model folder (export writes into it)")
    encoder = Encoder.from_pretrained(folder).eval()
    big = sum(p.numel() * p.element_size() for p in encoder.model.parameters()) > TWO_GB * 0.9
    os.makedirs(os.path.join(folder, "onnx"), exist_ok=True)
    work = tempfile.mkdtemp(prefix=".export-", dir=os.path.join(folder, "onnx"))
    try:
        fp32 = os.path.join(work, "model.onnx")
        input_names = _export_fp32(encoder, fp32, opset, big)
        written = {fp32: ONNX_FILE}
        for config in quantize:
            path = os.path.join(work, os.path.basename(quantized_file(config)))
            if config == STATIC:
                feeds = calibration_feeds(encoder, calibration or [], input_names)
                quantize_static_onnx(fp32, path, feeds, external_data=big)
            else:
                _quantize_dynamic(fp32, path, config, big)
            written[path] = quantized_file(config)
        if check is not None:
            rel = {final: os.path.relpath(p, folder) for p, final in written.items() if final != ONNX_FILE}
            check(folder, os.path.relpath(fp32, folder), rel)
        _move_into_place(work, folder, written)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    logger.info("wrote %s", ", ".join(os.path.join(folder, f) for f in written.values()))
    return list(written.values())


def _export_fp32(encoder: Any, path: str, opset: int, big: bool) -> list[str]:
    """Write the float32 backbone graph to ``path``, check it against torch; return its input names."""
    batch = _check_batch(encoder)
    names = [k for k in encoder.tokenizer.model_input_names if k in batch]
    all_layers = needs_hidden_states(encoder.pooler)
    n_layers = int(encoder.model.config.num_hidden_layers)
    outputs = ["last_hidden_state"] + ([f"hidden_states.{i}" for i in range(n_layers + 1)] if all_layers else [])
    seq = {0: torch.export.Dim("batch"), 1: torch.export.Dim("sequence")}
    torch.onnx.export(
        # eval(): a new module starts in training mode, and the exporter warns (dropout is off either way
        # below it, as the encoder is in eval mode; the test checks the graph is deterministic)
        _Backbone(encoder.model, names, all_layers).eval(), tuple(batch[k] for k in names), path, dynamo=True,
        input_names=names, output_names=outputs, dynamic_shapes=(tuple(seq for _ in names),), opset_version=opset,
        external_data=big, verbose=False,
    )  # fmt: skip
    _verify(encoder, path, batch)
    return names


def _quantize_dynamic(fp32: str, path: str, config: str, big: bool) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        fp32, path, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"], per_channel=True,
        use_external_data_format=big, extra_options={"MatMulConstBOnly": True}, **QUANTIZATIONS[config],
    )  # fmt: skip


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
