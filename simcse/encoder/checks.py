"""Check a local model folder before and after loading it, so a bad one fails saying what is wrong.

Hugging Face loaders are lenient with local folders: without tokenizer files ``AutoTokenizer``
builds an empty vocabulary, and weights of another architecture load as a freshly initialised
model (a warning, no error). A sentence encoder built that way returns meaningless vectors, so
these checks turn each case into an error naming the folder and what is missing.
"""

from __future__ import annotations

import glob
import os
from typing import Any

from simcse.io import StrPath

MARKERS = ("config.json", "modules.json")
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "spiece.model",
    "sentencepiece.bpe.model", "tokenizer.model",
)  # fmt: skip


def _has_any(folder: str, names: tuple[str, ...]) -> bool:
    return any(os.path.isfile(os.path.join(folder, n)) for n in names)


def _looks_local(name: str) -> bool:
    # a hub id is "name" or "org/name"; anything else can only be meant as a path
    return os.path.isabs(name) or name.startswith((".", "~")) or name.count("/") > 1 or os.sep in name.replace("/", "")


def _what_it_is(folder: str) -> str:
    if os.path.isfile(os.path.join(folder, "trainer_state.json")):
        run = os.path.dirname(os.path.dirname(os.path.abspath(folder)))
        return f"it is a training checkpoint, for resuming; the trained model is in {os.path.join(run, 'model')}"
    if _has_any(os.path.join(folder, "model"), MARKERS):
        return f"it looks like a training run; did you mean {os.path.join(folder, 'model')}?"
    entries = sorted(os.listdir(folder))
    return f"found only {', '.join(entries[:6])}{', ...' if len(entries) > 6 else ''}" if entries else "it is empty"


def check_model_path(name_or_path: StrPath) -> None:
    """Fail early when ``name_or_path`` is meant as a local folder but is not a model folder."""
    name_or_path = os.fspath(name_or_path)
    if os.path.isfile(name_or_path):
        raise ValueError(f"{name_or_path}: is a file; expected a model folder or hub name")
    if os.path.isdir(name_or_path):
        if not _has_any(name_or_path, MARKERS):
            raise FileNotFoundError(
                f"{name_or_path}: not a model folder (no config.json or modules.json; {_what_it_is(name_or_path)})"
            )
        return
    if _looks_local(name_or_path):
        parent, name = os.path.split(os.path.abspath(name_or_path))
        olds = glob.glob(os.path.join(glob.escape(parent), f".{glob.escape(name)}.old-*"))
        hint = f"; a save was interrupted and left the previous version in {olds[0]}" if olds else ""
        raise FileNotFoundError(f"{name_or_path}: no such model folder{hint}")


def check_transformer_folder(folder: StrPath) -> None:
    """The transformer part of a local folder needs its config, weights and tokenizer files."""
    missing = [
        what
        for what, present in (
            ("config.json", os.path.isfile(os.path.join(folder, "config.json"))),
            ("model weights (model.safetensors or pytorch_model.bin)", _has_any(folder, WEIGHT_FILES)),
            ("tokenizer files (tokenizer.json, tokenizer_config.json or vocab.txt)", _has_any(folder, TOKENIZER_FILES)),
        )
        if not present
    ]
    if missing:
        raise FileNotFoundError(f"{folder}: incomplete model folder, missing {'; '.join(missing)}")


def check_loading_info(name_or_path: str, model: Any, info: dict[str, Any]) -> None:
    """Refuse weights that left the model's layers uninitialised (a folder of another kind of model).

    Only a missing ``pooler`` is accepted: many encoders are saved without one.
    """
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.startswith("pooler."))
    if missing:
        kind = getattr(model.config, "model_type", "?")
        raise ValueError(
            f"{name_or_path}: the weights do not fit its config (model_type {kind!r}): {len(missing)} weights "
            f"missing, e.g. {', '.join(missing[:3])}; is it a different kind of model?"
        )
