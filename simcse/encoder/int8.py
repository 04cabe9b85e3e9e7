"""Static (calibrated) int8 quantization of an exported ONNX graph, and the calibration sentences it needs.

Dynamic int8 (:mod:`simcse.encoder.export`) measures each batch's activation range at run time; static
int8 fixes the ranges beforehand from calibration sentences (ONNX Runtime's ``quantize_static``), so the
graph carries QuantizeLinear/DequantizeLinear pairs (QDQ) around every weight matrix product. The one
file runs on ONNX Runtime and on OpenVINO (which turns the QDQ pairs into its own int8 kernels)::

    FOLDER/onnx/model_qint8_static.onnx     int8 weights per channel, uint8 activations with fixed ranges

Calibration sentences come from the user (a text file, one sentence per line, e.g. the training
corpus); each is run alone (no padding), so the ranges are those of real tokens.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

STATIC_FILE = "onnx/model_qint8_static.onnx"
CALIBRATION_SIZE = 300  # sentence-transformers' export_static_quantized_openvino_model uses 300 too


class CalibrationError(ValueError):
    """A calibration file that cannot be used; the message names the file, line and problem."""


def read_calibration(path: str | os.PathLike[str], size: int = CALIBRATION_SIZE) -> list[str]:
    """The first ``size`` sentences of a UTF-8 text file, one per line.

    Args:
        path: The file (e.g. the training corpus).
        size: Sentences to take; the file must hold at least this many.

    Raises:
        CalibrationError: The file is missing, not UTF-8, empty, has an empty line among the first ``size``,
            or holds fewer than ``size`` sentences.
    """
    path = os.fspath(path)
    if size < 1:
        raise CalibrationError(f"calibration size must be >= 1, got {size}")
    if not os.path.isfile(path):
        raise CalibrationError(f"{path}: calibration file not found")
    sentences: list[str] = []
    try:
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                text = line.rstrip("\r\n")
                if not text.strip():
                    raise CalibrationError(f"{path}:{number}: empty line (one calibration sentence per line)")
                sentences.append(text)
                if len(sentences) == size:
                    break
    except UnicodeDecodeError as err:
        raise CalibrationError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    if not sentences:
        raise CalibrationError(f"{path}: empty file (no calibration sentences)")
    if len(sentences) < size:
        raise CalibrationError(
            f"{path}: too few sentences ({len(sentences)}; calibration takes {size}: add more or ask for fewer)"
        )
    return sentences


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol: one tokenized sentence per ``get_next`` call."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self.feeds: Iterator[dict[str, np.ndarray]] = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self.feeds, None)


def calibration_feeds(
    encoder: Any, sentences: Sequence[str], input_names: Sequence[str]
) -> list[dict[str, np.ndarray]]:
    """Each sentence tokenized alone (``(1, length)`` int64 arrays) under the graph's input names."""
    from simcse.encoder.onnx import numpy_feeds

    features = encoder.tokenize(list(sentences))
    return [numpy_feeds(encoder.collate(features, [i]), list(input_names)) for i in range(len(sentences))]


def quantize_static_onnx(
    fp32: str, target: str, feeds: list[dict[str, np.ndarray]], *, external_data: bool = False
) -> None:
    """Write a static int8 (QDQ) copy of the float32 graph ``fp32`` to ``target``, calibrated on ``feeds``.

    Weights: int8, symmetric, per output channel; activations: uint8 with the min/max seen in calibration.
    Only the weight matrix products are quantized (``MatMul`` with a constant operand), as for dynamic int8.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    graph = onnx.load(fp32, load_external_data=False).graph
    made_by = {out: node.op_type for node in graph.node for out in node.output}
    # only matrix products fed by a LayerNorm (Q, K, V, FFN up): the attention output and GELU outputs
    # carry outliers that one fixed range per tensor clips (measured: cosine to fp32 0.92 with them)
    skip = [n.name for n in graph.node if n.op_type == "MatMul" and made_by.get(n.input[0]) != "LayerNormalization"]
    quantize_static(
        fp32, target, _Reader(feeds), quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul"],
        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax, use_external_data_format=external_data,
        nodes_to_exclude=skip, extra_options={"MatMulConstBOnly": True},
    )  # fmt: skip
