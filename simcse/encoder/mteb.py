"""MTEB 2's encoder protocol for :class:`~simcse.encoder.Encoder`: DataLoader input, prompts, model metadata.

MTEB 2 (``mteb>=2``) calls ``encode(inputs: DataLoader, *, task_metadata, hf_split, hf_subset,
prompt_type=None, **kwargs)`` with batches of ``{"text": [...]}``, scores pairs with
``similarity_pairwise`` and matrices with ``similarity``, and reads ``mteb_model_meta`` (a model without
one is replaced by an empty ``ModelMeta`` whose loader raises). ``Encoder`` implements all of it through
the helpers here, and keeps MTEB 1.x's ``encode(sentences, task_name=..., ...)``, so::

    import mteb
    from simcse import Encoder

    mteb.evaluate(Encoder.from_pretrained("runs/demo/model"), mteb.get_tasks(tasks=["STSBenchmark"]))

Prompts: a folder's ``config_sentence_transformers.json`` ``prompts`` (or an ``Encoder.prompts`` dict) are
chosen as MTEB chooses them (task-name+prompt-type, task name, task-type+prompt-type, task type,
prompt type) and prepended to every text, as sentence-transformers does.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from mteb.models import ModelMeta

# an Encoder (this module sits below encoder.py, which imports it, so it names the type without importing it)
Encoder = torch.nn.Module

ST_CONFIG = "config_sentence_transformers.json"
SIMCSE_CITATION = """@inproceedings{gao2021simcse,
  title = {{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author = {Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle = {Empirical Methods in Natural Language Processing (EMNLP)},
  year = {2021},
}"""


def is_mteb_inputs(inputs: Any) -> bool:
    """Whether ``inputs`` is MTEB 2's batched input (a ``DataLoader`` of ``{"text": [...]}`` batches), not
    sentences (the list API and MTEB 1.x)."""
    return isinstance(inputs, torch.utils.data.DataLoader)


def texts_from_batches(inputs: Iterable[dict[str, Any]]) -> list[str]:
    """The ``text`` column of every batch, in order.

    Raises:
        ValueError: A batch has no ``text`` (an image or audio task: this encoder reads text only).
    """
    texts: list[str] = []
    for i, batch in enumerate(inputs):
        if not isinstance(batch, dict) or "text" not in batch:
            keys = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
            raise ValueError(f"MTEB batch {i} has no 'text' ({keys}); this encoder embeds text only")
        texts.extend(batch["text"])
    return texts


def folder_prompts(encoder: Encoder) -> dict[str, str]:
    """Prompts of the encoder: ``encoder.prompts`` if set, else the folder's sentence-transformers config."""
    own = getattr(encoder, "prompts", None)
    own = getattr(own, "prompts", own)  # an Encoder's PromptSettings, or a plain dict set by hand
    if own:
        return {k: v for k, v in dict(own).items() if v}
    path = _source(encoder)
    cfg = os.path.join(path, ST_CONFIG) if path and os.path.isdir(path) else None
    if cfg is None or not os.path.isfile(cfg):
        return {}
    with open(cfg, encoding="utf-8") as f:
        prompts = json.load(f).get("prompts") or {}
    return {k: v for k, v in prompts.items() if v}


def mteb_prompt(encoder: Encoder, task_metadata: Any, prompt_type: Any) -> str | None:
    """The prompt MTEB would choose for this task and prompt type from the encoder's prompts (None: none).

    ``Encoder.encode`` puts it before every text and, when the model's ``include_prompt`` is off, leaves its
    tokens out of pooling, as sentence-transformers does.
    """
    if task_metadata is None:
        return None
    from mteb.models.abs_encoder import get_prompt

    return get_prompt(folder_prompts(encoder), task_metadata, prompt_type) or None


def _as_tensor(x: Any) -> torch.Tensor:
    t = x.detach().cpu() if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t.float()


def cosine_pairwise(a: Any, b: Any) -> np.ndarray:
    """Cosine similarity of each row of ``a`` with the same row of ``b``: ``(n, dim), (n, dim) -> (n,)``."""
    ta, tb = _as_tensor(a), _as_tensor(b)
    if ta.shape != tb.shape:
        raise ValueError(f"similarity_pairwise needs arrays of one shape, got {tuple(ta.shape)}, {tuple(tb.shape)}")
    return (F.normalize(ta, dim=-1) * F.normalize(tb, dim=-1)).sum(-1).numpy()  # (n,)


def _source(encoder: Encoder) -> str | None:
    return getattr(getattr(encoder.model, "config", None), "name_or_path", None) or None


def _fingerprint(path: str) -> str:
    """A short hash of the folder's file names, sizes and modification times (a cache key, not a checksum)."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            st = os.stat(os.path.join(root, name))
            h.update(f"{os.path.relpath(os.path.join(root, name), path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


def mteb_model_meta(encoder: Encoder) -> ModelMeta:
    """MTEB's ``ModelMeta`` for ``encoder``, built from the folder or hub name it was loaded from.

    A local folder is named ``local/<folder name>`` with a revision that changes whenever its files
    change, so MTEB's result cache never serves scores of an earlier model saved at the same path.
    """
    from mteb.models import ModelMeta

    source = _source(encoder) or "unknown"
    local = os.path.isdir(source)
    name = f"local/{os.path.basename(os.path.normpath(source))}" if local else source
    if "/" not in name:
        name = f"hub/{name}"
    n_params = sum(p.numel() for p in encoder.parameters())
    backend = {"OnnxBackbone": "ONNX", "OpenVinoBackbone": "OpenVINO"}.get(type(encoder.model).__name__, "PyTorch")
    return ModelMeta(
        loader=functools.partial(load_for_mteb, type(encoder)), loader_kwargs={"pooler": encoder.pooler}, name=name,
        revision=_fingerprint(source) if local else None, release_date=None, languages=None,
        n_parameters=n_params or None, memory_usage_mb=None, max_tokens=encoder.max_seq_length,
        embed_dim=encoder.dim, license=None, open_weights=True, public_training_code=None,
        public_training_data=None, framework=[backend], reference=None, similarity_fn_name="cosine",
        use_instructions=bool(folder_prompts(encoder)), training_datasets=None, citation=SIMCSE_CITATION,
    )  # fmt: skip


def load_for_mteb(
    cls: type[Encoder], model_name: str, revision: str | None = None, device: str | None = None, **kwargs: Any
) -> Encoder:
    """MTEB's loader signature (``cls`` bound first): ``cls.from_pretrained(model_name, **kwargs)`` on ``device``.

    ``local/<name>`` (the name :func:`mteb_model_meta` gives a folder) cannot be reloaded by name: load
    the folder yourself and pass the ``Encoder`` to ``mteb.evaluate``.
    """
    if model_name.startswith("local/") and not os.path.isdir(model_name):
        raise ValueError(f"{model_name}: a local folder's name; pass Encoder.from_pretrained(FOLDER) to mteb")
    encoder = cls.from_pretrained(model_name.removeprefix("hub/"), **kwargs)
    return encoder.to(device) if device else encoder
