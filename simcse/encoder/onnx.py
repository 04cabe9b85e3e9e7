"""ONNX Runtime backbone for :class:`~simcse.encoder.Encoder` (``backend="onnx"``).

Export and quantization: :mod:`simcse.encoder.export`.

The graph is the backbone only (token ids in, ``last_hidden_state`` out); pooling and the head stay the
library's own, so the ONNX path cannot drift from the torch one.
"""

from __future__ import annotations

import logging
import os
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from simcse.io import StrPath

logger = logging.getLogger(__name__)

ONNX_FILE = "onnx/model.onnx"


class OnnxBackbone(nn.Module):
    """An ONNX Runtime session that answers like a Hugging Face ``AutoModel`` in :class:`Encoder`.

    ``model(**batch, output_hidden_states=..., return_dict=True)`` returns an object with
    ``last_hidden_state`` and ``hidden_states`` (torch tensors on the CPU), so ``Encoder.encode``,
    pooling and the head run unchanged on top of it.

    Args:
        path: The ``.onnx`` file.
        config: The backbone's ``PretrainedConfig`` (``Encoder.dim`` reads ``hidden_size``).
        threads: Intra-op threads; defaults to ``torch.get_num_threads()`` so both backends use the same.
    """

    def __init__(self, path: str, config: Any, threads: int | None = None) -> None:
        super().__init__()
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ImportError("the ONNX backend needs onnxruntime: pip install 'simcse-toolkit[onnx]'") from err
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.log_severity_level = 3  # warnings about unused initializers are noise here
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        self.path, self.config = path, config
        self.input_names = [i.name for i in self.session.get_inputs()]
        # Encoder.device reads the first parameter: an empty one places this module on the CPU
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)

    def forward(self, output_hidden_states: bool = False, return_dict: bool = True, **batch: torch.Tensor) -> Any:
        """Run the session on a tokenized batch of ``(batch, seq)`` tensors."""
        if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
            raise ValueError("precision='bf16' applies to the torch backend only; ONNX runs the file's own types")
        outs = [torch.from_numpy(o) for o in self.session.run(None, numpy_feeds(batch, self.input_names))]
        if output_hidden_states and len(outs) == 1:
            raise ValueError(f"{self.path} has no hidden_states outputs; export it again for this pooler")
        return SimpleNamespace(last_hidden_state=outs[0], hidden_states=tuple(outs[1:]) or None)


def numpy_feeds(batch: dict[str, torch.Tensor], names: list[str]) -> dict[str, np.ndarray]:
    """The graph's int64 inputs from a tokenized batch (an input the tokenizer does not give is zeros)."""
    ids = batch["input_ids"]
    return {
        name: (batch[name] if name in batch else torch.zeros_like(ids)).cpu().numpy().astype(np.int64) for name in names
    }


def find_onnx_file(name_or_path: StrPath, file_name: StrPath = ONNX_FILE) -> str:
    """The local path of ``file_name`` in a model folder (or hub repository).

    Raises:
        OSError: The file is absent; the message says how to create it.
    """
    from simcse.encoder.hub import resolve_file, resolve_model_name

    name_or_path, file_name = os.fspath(name_or_path), os.fspath(file_name)
    path = resolve_file(resolve_model_name(name_or_path), file_name)
    if path is None:
        raise OSError(f"{name_or_path}: no {file_name}; write it with: simcse export {name_or_path}")
    return path


BACKENDS = ("torch", "onnx", "openvino")


def find_graph(backend: str, name_or_path: StrPath, file_name: StrPath) -> str | None:
    """The graph ``backend`` runs (:func:`find_onnx_file`), None for ``torch``; an unknown backend is refused."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    return None if backend == "torch" else find_onnx_file(name_or_path, file_name)
