"""Publish a saved model folder to the Hugging Face Hub: which files go, the card for the hub, the upload.

:func:`files_to_upload` lists what a model folder publishes (weights, config, tokenizer, the
sentence-transformers modules, ``README.md`` (the card), ``training_curves.png``, ``onnx/``) and
leaves out what is local to a run: checkpoints, lock files, temporary files of interrupted writes and
hidden files. :func:`hub_card` points the card's usage examples at the repository instead of the local
path. :func:`push_to_hub` creates the repository (private unless asked otherwise) and uploads those
files in one commit.

Example:
    >>> url = push_to_hub("runs/demo/model", "me/simcse-demo")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
import os
import re
from typing import Any

from simcse.io import StrPath

logger = logging.getLogger(__name__)

CARD = "README.md"
SKIPPED_DIRS = ("checkpoints",)  # resumable training state: large, and of no use to a model's readers
LOGIN_HINT = "log in with `hf auth login`, or set HF_TOKEN, or pass --token"


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.endswith((".lock", ".tmp")) or ".tmp-" in name or ".old-" in name


def files_to_upload(folder: StrPath) -> list[str]:
    """The files of a model folder that publishing uploads, as sorted ``/``-separated relative paths.

    Raises:
        ValueError: ``folder`` is not a model folder (no ``config.json``); a run folder is named as such.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{folder}: not a folder")
    if not os.path.isfile(os.path.join(folder, "config.json")):
        if os.path.isfile(os.path.join(folder, "model", "config.json")):
            raise ValueError(f"{folder}: a training run folder; push its model: {os.path.join(folder, 'model')}")
        raise ValueError(f"{folder}: not a model folder (no config.json)")
    found = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not _skipped(d))
        rel = os.path.relpath(root, folder)
        found += [name if rel == "." else f"{rel}/{name}".replace(os.sep, "/") for name in files if not _skipped(name)]
    return sorted(found)


def hub_card(card: str, repo_id: str) -> str:
    """The card with its usage examples loading ``repo_id`` instead of the local folder they name."""
    match = re.search(r'Encoder\.from_pretrained\("([^"]+)"\)', card)
    if match is None or match.group(1) == repo_id:
        return card
    return card.replace(f'"{match.group(1)}"', f'"{repo_id}"')


def get_token(token: str | None = None) -> str:
    """``token``, else the one ``hf auth login`` stored or ``HF_TOKEN``; a one-line error when there is none."""
    from huggingface_hub import get_token as stored_token

    found = token or stored_token()
    if not found:
        raise PermissionError(f"no Hugging Face token: {LOGIN_HINT}")
    return found


def push_to_hub(
    folder: StrPath,
    repo_id: str,
    *,
    private: bool = True,
    token: str | None = None,
    commit_message: str | None = None,
    api: Any = None,
) -> str:
    """Create ``repo_id`` (if needed) and upload the model folder's files in one commit.

    Args:
        folder: A saved model folder (``<output_dir>/model`` of a training run).
        repo_id: ``user/name`` or ``org/name``.
        private: Create the repository private (an existing repository keeps its visibility).
        token: A Hugging Face token; default: the stored login or ``HF_TOKEN``.
        commit_message: Default: "Upload <n> files with simcse".
        api: An ``huggingface_hub.HfApi`` (tests pass a recorder).

    Returns:
        The repository's URL.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    folder = os.fspath(folder)
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repository id {repo_id!r}: expected user/name or org/name")
    files = files_to_upload(folder)
    if CARD not in files:
        logger.warning("%s has no %s: the repository will have no model card", folder, CARD)
    api = api or HfApi(token=get_token(token))
    url = api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    operations = []
    for rel in files:
        path = os.path.join(folder, *rel.split("/"))
        if rel == CARD:
            with open(path, encoding="utf-8") as f:
                content: Any = hub_card(f.read(), repo_id).encode("utf-8")
        else:
            content = path
        operations.append(CommitOperationAdd(path_in_repo=rel, path_or_fileobj=content))
    message = commit_message or f"Upload {len(files)} files with simcse"
    api.create_commit(repo_id=repo_id, repo_type="model", operations=operations, commit_message=message)
    logger.info("pushed %d files of %s to %s (%s)", len(files), folder, url, "private" if private else "public")
    return str(url)
