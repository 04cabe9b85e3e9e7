"""Read and write an encoder's folder: ours, sentence-transformers' or a plain Hugging Face one.

A folder written by :func:`save_folder` is readable by :class:`simcse.Encoder`, ``AutoModel`` and
``SentenceTransformer``; :func:`load_parts` reads any of the three layouts.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

from torch import nn

from simcse.encoder.checks import check_loading_info, check_model_path, check_transformer_folder
from simcse.encoder.heads import DenseHead, head_from_hf_pooler
from simcse.encoder.hub import resolve_file, resolve_model_name
from simcse.encoder.lora import ADAPTER_FOLDER, is_lora, save_adapter, save_merged
from simcse.encoder.pooling import Pooler, validate_pooler
from simcse.encoder.prompts import write_prompt_settings
from simcse.encoder.st_format import read_st_layout, write_st_layout
from simcse.io import StrPath, atomic_dir

logger = logging.getLogger(__name__)

SIMCSE_CONFIG = "simcse_config.json"
HEAD_WEIGHTS = "simcse_head.safetensors"


def load_parts(
    name_or_path: StrPath, pooler: Pooler | None = None, *, max_seq_length: int | None = None, **model_kwargs: Any
) -> tuple[nn.Module, Any, Pooler, DenseHead | None, int, bool]:
    """The parts of an :class:`~simcse.encoder.Encoder` stored at ``name_or_path``.

    Args: see :meth:`simcse.encoder.Encoder.from_pretrained`.

    Returns:
        ``(model, tokenizer, pooler, head, max_seq_length, normalize)``.
    """
    from transformers import AutoModel, AutoTokenizer

    name_or_path = resolve_model_name(name_or_path)
    check_model_path(name_or_path)
    head: DenseHead | None = None
    normalize, subfolder, folder_max_len, chosen = False, "", None, None
    own_cfg = resolve_file(name_or_path, SIMCSE_CONFIG)
    st_modules = None if own_cfg else resolve_file(name_or_path, "modules.json")
    if own_cfg is not None:
        cfg = _read_own_config(own_cfg)
        chosen, folder_max_len, normalize = cfg["pooler"], cfg.get("max_seq_length"), cfg.get("normalize", False)
        if cfg.get("head"):
            head = _load_head(name_or_path, cfg["head"])
    elif st_modules is not None:
        layout = read_st_layout(name_or_path, st_modules)
        chosen, head, normalize = layout.pooler, layout.head, layout.normalize
        subfolder, folder_max_len = layout.transformer_subfolder, layout.max_seq_length
    kwargs = {"subfolder": subfolder} if subfolder else {}
    if os.path.isdir(name_or_path):
        check_transformer_folder(os.path.join(name_or_path, subfolder) if subfolder else name_or_path)
    try:
        model, info = AutoModel.from_pretrained(name_or_path, **kwargs, **model_kwargs, output_loading_info=True)
    except Exception as err:  # e.g. a truncated weights file: the library's message omits the folder
        if not os.path.isdir(name_or_path) or name_or_path in str(err):
            raise
        raise OSError(f"{name_or_path}: cannot load the model ({type(err).__name__}: {err})") from err
    check_loading_info(name_or_path, model, info)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    pooler = validate_pooler(pooler or chosen or "cls")
    if head is None and own_cfg is None and st_modules is None and pooler == "cls":
        hf_pooler = getattr(model, "pooler", None)
        head = head_from_hf_pooler(hf_pooler) if hf_pooler is not None else None
    max_len = max_seq_length or folder_max_len or min(getattr(tokenizer, "model_max_length", 512), 512)
    return model, tokenizer, pooler, head, max_len, normalize


def save_folder(
    encoder: nn.Module, path: StrPath, *, include_head: bool = True, extra_files: dict[str, str] | None = None
) -> None:
    """Write ``encoder`` (an :class:`~simcse.encoder.Encoder`, not imported: it imports this module) to ``path``
    atomically (see :meth:`simcse.encoder.Encoder.save`)."""
    head = encoder.head if include_head and encoder.pooler != "cls_before_pooler" else None
    pooler = encoder.pooler
    if head is None and pooler == "cls":
        pooler = "cls_before_pooler"
    with atomic_dir(path) as tmp:
        hf_pooler = encoder._hf_pooler[0] if encoder._hf_pooler else None
        if hf_pooler is not None:
            if head is not None and head.is_simcse_mlp:
                # SimCSE's convention: the MLP lives in BERT's pooler, so AutoModel's pooler_output is it
                hf_pooler.dense.load_state_dict(head.dense.state_dict())
            encoder.model.pooler = hf_pooler  # saved so the checkpoint loads without missing keys
        try:
            _save_backbone(encoder.model, tmp)
        finally:
            if hf_pooler is not None:
                encoder.model.pooler = None
        encoder.tokenizer.save_pretrained(tmp)
        head_cfg = None
        if head is not None:
            from safetensors.torch import save_file

            head_cfg = {
                "in_features": head.dense.in_features,
                "out_features": head.dense.out_features,
                "activation": head.activation_name,
            }
            state = {k: v.detach().cpu().contiguous() for k, v in head.state_dict().items()}
            save_file(state, os.path.join(tmp, HEAD_WEIGHTS))
        cfg = {
            "pooler": pooler,
            "head": head_cfg,
            "max_seq_length": encoder.max_seq_length,
            "normalize": encoder.normalize,
            "include_prompt": encoder.prompts.include_prompt,
            "format_version": 1,
        }
        with open(os.path.join(tmp, SIMCSE_CONFIG), "w", encoding="utf-8") as f:
            json.dump(cfg, f, indent=2)
        hidden = int(encoder.model.config.hidden_size)
        if encoder.prompts.prompts:
            write_prompt_settings(tmp, encoder.prompts)
        st_args = (encoder.max_seq_length, encoder.normalize, encoder.prompts.include_prompt)
        if not write_st_layout(tmp, pooler, hidden, head, *st_args):
            logger.warning("pooler %s has no sentence-transformers equivalent; no modules.json written", pooler)
        for name, text in (extra_files or {}).items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.write(text)


def _save_backbone(model: nn.Module, path: str) -> None:
    """The transformer's weights; a LoRA model's merged, with its adapter alone in ``adapter/``."""
    if not is_lora(model):
        model.save_pretrained(path)
        return
    save_merged(model, path)
    save_adapter(model, os.path.join(path, ADAPTER_FOLDER))


def _read_own_config(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as err:
        raise ValueError(f"{path}: cannot read ({err})") from None
    if not isinstance(cfg, dict) or "pooler" not in cfg:
        raise ValueError(f"{path}: expected a JSON object with a 'pooler' entry")
    return cfg


def _load_head(name_or_path: str, cfg: dict[str, Any]) -> DenseHead:
    from safetensors.torch import load_file

    weights = resolve_file(name_or_path, HEAD_WEIGHTS)
    if weights is None:
        raise FileNotFoundError(f"{name_or_path}: {SIMCSE_CONFIG} names a head but {HEAD_WEIGHTS} is missing")
    try:
        head = DenseHead(cfg["in_features"], cfg["out_features"], cfg["activation"])
        head.load_state_dict(load_file(weights))
    except Exception as err:  # a damaged file, a shape or key that does not match the config
        raise ValueError(f"{weights}: cannot load the head described in {SIMCSE_CONFIG} ({err})") from err
    return head
