"""Find a file of a model given as a local folder or a Hugging Face hub name."""

from __future__ import annotations

import os


def resolve_file(name_or_path: str, filename: str) -> str | None:
    """Return a local path to ``filename`` inside a model folder or hub repository, or None if absent.

    Local folders are read directly; hub names are fetched with ``huggingface_hub`` (cached, and
    honouring ``HF_HUB_OFFLINE``). A missing file is not an error: callers probe optional files.
    """
    if os.path.isdir(name_or_path):
        path = os.path.join(name_or_path, filename)
        return path if os.path.isfile(path) else None
    try:
        from huggingface_hub import hf_hub_download

        return hf_hub_download(name_or_path, filename)
    except Exception:  # absent file, unknown repo or offline: the caller falls back
        return None
