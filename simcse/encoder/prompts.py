"""Prompts (instructions) put before the text, as decoder embedders use them (E5-mistral, GritLM).

A prompt is plain text prepended to every sentence before tokenization. With ``include_prompt=False``
its tokens are left out of the pooling (sentence-transformers' ``Pooling(include_prompt=False)``): a
``prompt_mask`` feature (1 on prompt tokens) travels with the batch and :class:`simcse.Encoder` removes
those tokens from the pooling mask. Prompts are saved in ``config_sentence_transformers.json`` (``prompts``,
``default_prompt_name``), so sentence-transformers applies them too.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simcse.encoder.hub import resolve_file, resolve_model_name
from simcse.io import StrPath

PROMPTS_FILE = "config_sentence_transformers.json"
PROMPT_MASK = "prompt_mask"  # the batch feature marking prompt tokens (1) for the pooling to skip


@dataclass(frozen=True)
class PromptSettings:
    """The prompts a model folder names, the default one, and whether pooling includes prompt tokens."""

    prompts: dict[str, str] = field(default_factory=dict)
    default_prompt_name: str | None = None
    include_prompt: bool = True

    def resolve(self, prompt: str | None = None, prompt_name: str | None = None) -> str | None:
        """The prompt text for one ``encode`` call: ``prompt``, else ``prompts[prompt_name]``, else the default."""
        if prompt is not None and prompt_name is not None:
            raise ValueError("give prompt or prompt_name, not both")
        if prompt is not None:
            return prompt
        name = prompt_name if prompt_name is not None else self.default_prompt_name
        if name is None:
            return None
        if name not in self.prompts:
            known = ", ".join(sorted(self.prompts)) or "none"
            raise ValueError(f"unknown prompt_name {name!r}; this model's prompts: {known}")
        return self.prompts[name]


def prompt_length(tokenizer: Any, prompt: str) -> int:
    """Tokens the prompt occupies at the start of ``prompt + text``, as sentence-transformers counts them.

    The prompt is tokenized alone (with the tokenizer's special tokens, e.g. BOS); a trailing special
    token (the EOS or SEP it appends) is not part of the prompt. Using sentence-transformers' own rule
    keeps both libraries' pooled vectors equal for ``include_prompt=False``.
    """
    ids = tokenizer(prompt)["input_ids"]
    n = len(ids)
    if ids and ids[-1] in set(tokenizer.all_special_ids):
        n -= 1
    return n


def tokenize_with_prompt(
    tokenizer: Any, sentences: Sequence[str], prompt: str | None, max_length: int, include_prompt: bool = True
) -> dict[str, list[list[int]]]:
    """Tokenize ``prompt + sentence`` for each sentence (truncated, unpadded); a ``prompt_mask`` feature
    marks the prompt's tokens when ``include_prompt`` is False."""
    texts = [prompt + s for s in sentences] if prompt else list(sentences)
    enc = tokenizer(texts, truncation=True, max_length=max_length, padding=False)
    features = {k: enc[k] for k in tokenizer.model_input_names if k in enc}
    if prompt and not include_prompt:
        n = prompt_length(tokenizer, prompt)
        features[PROMPT_MASK] = [[1] * min(n, len(ids)) + [0] * max(len(ids) - n, 0) for ids in features["input_ids"]]
    return features


def read_prompt_settings(name_or_path: StrPath) -> PromptSettings:
    """Prompts and ``include_prompt`` stored in a model folder (ours or sentence-transformers'); none if absent."""
    name_or_path = resolve_model_name(name_or_path)
    prompts, default = {}, None
    st_file = resolve_file(name_or_path, PROMPTS_FILE)
    if st_file is not None:
        cfg = _read(st_file)
        prompts, default = dict(cfg.get("prompts") or {}), cfg.get("default_prompt_name")
    include = True
    own = resolve_file(name_or_path, "simcse_config.json")
    if own is not None:
        include = bool(_read(own).get("include_prompt", True))
    elif (modules := resolve_file(name_or_path, "modules.json")) is not None:
        for module in _read(modules):
            if str(module.get("type", "")).endswith(".Pooling"):
                pooling = resolve_file(name_or_path, f"{module.get('path', '')}/config.json")
                include = bool(_read(pooling).get("include_prompt", True)) if pooling else True
    return PromptSettings(prompts, default, include)


def write_prompt_settings(path: StrPath, settings: PromptSettings) -> None:
    """Write ``config_sentence_transformers.json`` with the prompts into the folder ``path``."""
    if settings.default_prompt_name is not None and settings.default_prompt_name not in settings.prompts:
        raise ValueError(f"default_prompt_name {settings.default_prompt_name!r} is not among the prompts")
    cfg = {
        "model_type": "SentenceTransformer",
        "prompts": settings.prompts,
        "default_prompt_name": settings.default_prompt_name,
        "similarity_fn_name": "cosine",
    }
    with open(os.path.join(path, PROMPTS_FILE), "w", encoding="utf-8") as f:
        json.dump(cfg, f, indent=2)


def _read(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read JSON ({err})") from None
