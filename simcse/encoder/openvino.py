"""OpenVINO backbone for :class:`~simcse.encoder.Encoder` (``backend="openvino"``).

OpenVINO reads the ONNX file that ``simcse export`` writes (``onnx/model.onnx``, or an int8 variant), so
no Optimum and no transformers pin is involved. The graph is compiled once per model folder: the compiled
blob is kept in ``FOLDER/openvino/cache/<file>-<fingerprint>/`` (OpenVINO's model cache), where the
fingerprint covers every file of the folder (name, size, modification time), the OpenVINO version and
the compile settings, so a changed folder compiles afresh and the stale blob is removed.

Batches in flight: :meth:`Encoder.encode` hands the backbone its batches through
:meth:`OpenVinoBackbone.forward_many`, which starts each batch asynchronously, so Python pads the next batch
and pools the last while one runs. The compile hint is ``LATENCY`` (one stream using every thread): on a
quiet machine it is the fastest (all-MiniLM-L6-v2, 2 cores, each setting in its own process: 534.9 vs 480.5
sentences/s). ``{"PERFORMANCE_HINT": "THROUGHPUT"}`` splits the threads into streams and keeps one batch in
flight on each: it pays where other processes compete for the cores (see
``scripts/bench/bench_cpu_backends.py --busy``).

Precision: OpenVINO's CPU plugin runs float32 graphs in bfloat16 on CPUs with AMX or AVX512-BF16 (its
default ``INFERENCE_PRECISION_HINT``), as sentence-transformers' OpenVINO backend does; pass
``{"INFERENCE_PRECISION_HINT": "f32"}`` as ``config`` for float32 arithmetic.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import shutil
from collections import deque
from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from torch import nn

from simcse.encoder.onnx import numpy_feeds

logger = logging.getLogger(__name__)

CACHE_DIR = os.path.join("openvino", "cache")
INSTALL_HINT = "pip install 'simcse-toolkit[openvino]'"


def import_openvino() -> Any:
    """The ``openvino`` module, or an ImportError naming the extra to install."""
    try:
        import openvino
    except ImportError as err:
        raise ImportError(f"the OpenVINO backend needs openvino: {INSTALL_HINT}") from err
    return openvino


@functools.cache
def shared_core() -> Any:
    """One ``openvino.Core`` per process: each Core owns its plugins and thread pools, and many of them
    beside torch's threads (one per loaded model) have crashed the process here."""
    return import_openvino().Core()


def folder_fingerprint(folder: str, extra: str = "") -> str:
    """A short hash of every file in ``folder`` (relative name, size, modification time) and ``extra``.

    The cache folder itself and hidden entries (an export's temporary folder) are left out.
    """
    digest = hashlib.sha256(extra.encode())
    cache = os.path.normpath(os.path.join(folder, CACHE_DIR))
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and os.path.join(root, d) != cache)
        for name in sorted(f for f in files if not f.startswith(".")):
            stat = os.stat(os.path.join(root, name))
            digest.update(
                f"{os.path.relpath(os.path.join(root, name), folder)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode()
            )
    return digest.hexdigest()[:16]


def compile_cache_dir(folder: str, file: str, settings: dict[str, Any]) -> str | None:
    """The cache folder for ``file`` compiled with ``settings``, emptied of stale entries; None if unwritable."""
    ov = import_openvino()
    stem = os.path.splitext(os.path.basename(file))[0]
    key = folder_fingerprint(folder, json.dumps([ov.__version__, file, settings], sort_keys=True, default=str))
    root = os.path.join(folder, CACHE_DIR)
    try:
        os.makedirs(root, exist_ok=True)
        for old in os.listdir(root):
            if old.startswith(f"{stem}-") and old != f"{stem}-{key}":
                shutil.rmtree(os.path.join(root, old), ignore_errors=True)  # the folder changed since
        target = os.path.join(root, f"{stem}-{key}")
        os.makedirs(target, exist_ok=True)
    except OSError as err:
        logger.info("OpenVINO: no compile cache for %s (%s); compiling in memory", folder, err)
        return None
    return target


class OpenVinoBackbone(nn.Module):
    """An OpenVINO compiled model that answers like a Hugging Face ``AutoModel`` in :class:`Encoder`.

    Args:
        path: The ``.onnx`` (or OpenVINO ``.xml``) file.
        config: The backbone's ``PretrainedConfig`` (``Encoder.dim`` reads ``hidden_size``).
        threads: Inference threads; defaults to ``torch.get_num_threads()`` so every backend uses the same.
        cache_folder: The model folder whose ``openvino/cache`` keeps the compiled blob (None: no cache).
        settings: Extra OpenVINO compile properties, e.g. ``{"INFERENCE_PRECISION_HINT": "f32"}``.
    """

    def __init__(
        self, path: str, config: Any, threads: int | None = None, cache_folder: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:  # fmt: skip
        super().__init__()
        # LATENCY: one stream on every thread (THROUGHPUT: streams, forward_many keeps a batch in flight on each)
        props = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads or torch.get_num_threads()}
        props.update(settings or {})
        cache = compile_cache_dir(cache_folder, os.path.relpath(path, cache_folder), props) if cache_folder else None
        compile_props = props if cache is None else {**props, "CACHE_DIR": cache}
        self.compiled = shared_core().compile_model(path, "CPU", compile_props)
        in_flight = max(1, int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self.requests = [self.compiled.create_infer_request() for _ in range(in_flight)]
        self.path, self.config, self.cache_dir = path, config, cache
        self.input_names = [i.any_name for i in self.compiled.inputs]
        self.n_outputs = len(self.compiled.outputs)
        self.anchor = nn.Parameter(torch.empty(0), requires_grad=False)  # places this module on the CPU

    @property
    def precision(self) -> str:
        """The arithmetic precision OpenVINO chose (``f32`` or ``bf16``)."""
        return self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()

    def _check(self, output_hidden_states: bool) -> None:
        if torch.is_autocast_enabled("cpu") or torch.is_autocast_enabled("cuda"):
            raise ValueError("precision='bf16' applies to the torch backend only; OpenVINO sets its own precision")
        if output_hidden_states and self.n_outputs == 1:
            raise ValueError(f"{self.path} has no hidden_states outputs; export it again for this pooler")

    def _read(self, request: Any) -> SimpleNamespace:
        # the request reuses its output buffers: copy before its next batch
        outs = [torch.from_numpy(np.array(request.get_tensor(o).data, copy=True)) for o in self.compiled.outputs]
        return SimpleNamespace(last_hidden_state=outs[0], hidden_states=tuple(outs[1:]) or None)

    def forward(self, output_hidden_states: bool = False, return_dict: bool = True, **batch: torch.Tensor) -> Any:
        """Run the compiled model on a tokenized batch of ``(batch, seq)`` tensors."""
        self._check(output_hidden_states)
        self.requests[0].infer(numpy_feeds(batch, self.input_names))
        return self._read(self.requests[0])

    def forward_many(
        self, batches: Iterable[tuple[Any, dict[str, torch.Tensor]]], output_hidden_states: bool = False
    ) -> Iterator[tuple[Any, SimpleNamespace]]:
        """``(key, batch)`` pairs -> ``(key, outputs)``, in order, with up to one batch in flight per stream.

        ``batches`` is read lazily: the next batch is built while earlier ones run.
        """
        self._check(output_hidden_states)
        pending: deque[tuple[Any, Any]] = deque()  # (key, request), oldest first
        try:
            for i, (key, batch) in enumerate(batches):
                if len(pending) == len(self.requests):  # every request busy: the oldest one's turn
                    yield self._finish(*pending.popleft())
                request = self.requests[i % len(self.requests)]  # the one the oldest held, or a never-used one
                request.start_async(numpy_feeds(batch, self.input_names))
                pending.append((key, request))
            while pending:
                yield self._finish(*pending.popleft())
        finally:  # stopped early (an error downstream): let the running requests finish before their inputs go
            for _, request in pending:
                request.wait()

    def _finish(self, key: Any, request: Any) -> tuple[Any, SimpleNamespace]:
        request.wait()
        return key, self._read(request)
