"""The runtime behind ``Encoder(backend=...)``: ONNX Runtime or OpenVINO, both reading ``simcse export``'s graph."""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from simcse.encoder.onnx import OnnxBackbone
from simcse.encoder.openvino import OpenVinoBackbone


def runtime_backbone(
    backend: str, path: str, file: str, config: Any, settings: dict[str, Any] | None = None
) -> nn.Module:
    """The ONNX Runtime (``onnx``) or OpenVINO (``openvino``) backbone for the graph at ``path``.

    Args:
        backend: ``onnx`` or ``openvino``.
        path: Local path of the graph (from :func:`find_onnx_file`).
        file: The graph's path relative to its model folder (OpenVINO keeps its compile cache in that folder).
        config: The backbone's ``PretrainedConfig``.
        settings: ``threads`` for either runtime; OpenVINO compile properties for ``openvino``.
    """
    settings = dict(settings or {})
    threads = settings.pop("threads", None)
    if backend == "onnx":
        if settings:
            raise ValueError(f"unknown ONNX Runtime setting(s) {sorted(settings)}; only threads")
        return OnnxBackbone(path, config, threads=threads)
    folder = os.path.abspath(path)
    for _ in os.path.normpath(file).split(os.sep):
        folder = os.path.dirname(folder)
    return OpenVinoBackbone(path, config, threads=threads, cache_folder=folder, settings=settings)
