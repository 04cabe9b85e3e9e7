"""Read and write sentence-transformers model folders (``modules.json`` and module subfolders)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import torch

from simcse.encoder.heads import DenseHead
from simcse.encoder.hub import resolve_file
from simcse.io import StrPath

# sentence-transformers pooling flags <-> our pooler names (only exact equivalents)
_ST_POOLING = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "avg",
    "pooling_mode_lasttoken": "last_token",
}
_ST_MODES = {"cls": "cls", "mean": "avg", "lasttoken": "last_token"}
# our poolers -> sentence-transformers' pooling_mode (the rest have no exact equivalent)
ST_POOLING_MODES = {"cls": "cls", "cls_before_pooler": "cls", "avg": "mean", "mean": "mean", "last_token": "lasttoken"}
_UNSUPPORTED = (
    "pooling_mode_max_tokens",
    "pooling_mode_mean_sqrt_len_tokens",
    "pooling_mode_weightedmean_tokens",
)


@dataclass(frozen=True)
class STLayout:
    """What a sentence-transformers folder asks for."""

    transformer_subfolder: str
    pooler: str | None
    head: DenseHead | None
    normalize: bool
    max_seq_length: int | None
    include_prompt: bool = True


def _read_json(path: str) -> dict:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: cannot read JSON ({err})") from err


def _load_weights(name_or_path: str, folder: str) -> dict[str, torch.Tensor]:
    st_file = resolve_file(name_or_path, f"{folder}/model.safetensors")
    if st_file is not None:
        from safetensors.torch import load_file

        return load_file(st_file)
    bin_file = resolve_file(name_or_path, f"{folder}/pytorch_model.bin")
    if bin_file is None:
        raise FileNotFoundError(f"{name_or_path}/{folder}: no model.safetensors or pytorch_model.bin")
    return torch.load(bin_file, map_location="cpu", weights_only=True)


def read_st_layout(name_or_path: StrPath, modules_file: StrPath) -> STLayout:
    """Interpret ``modules.json`` and the module configs of a sentence-transformers model."""
    name_or_path = os.fspath(name_or_path)
    modules = _read_json(os.fspath(modules_file))
    subfolder, pooler, head, normalize, max_len, include_prompt = "", None, None, False, None, True
    for module in modules:
        kind, folder = module.get("type", ""), module.get("path", "")
        if kind.endswith(".Transformer"):
            subfolder = folder
            cfg_file = resolve_file(name_or_path, os.path.join(folder, "sentence_bert_config.json"))
            if cfg_file is not None:
                max_len = _read_json(cfg_file).get("max_seq_length")
        elif kind.endswith(".Pooling"):
            cfg_file = resolve_file(name_or_path, f"{folder}/config.json")
            if cfg_file is None:
                raise FileNotFoundError(f"{name_or_path}/{folder}/config.json is missing (Pooling module)")
            cfg = _read_json(cfg_file)
            mode = cfg.get("pooling_mode")  # sentence-transformers >= 6; older folders use boolean flags
            if mode is not None:
                modes = [mode] if isinstance(mode, str) else list(mode)
                chosen = [_ST_MODES[m] for m in modes if m in _ST_MODES]
                bad = [m for m in modes if m not in _ST_MODES]
            else:
                bad = [k for k in _UNSUPPORTED if cfg.get(k)]
                chosen = [v for k, v in _ST_POOLING.items() if cfg.get(k)]
            if bad or len(chosen) != 1:
                raise ValueError(
                    f"{cfg_file}: pooling {bad or chosen} has no simcse equivalent; pass pooler=... explicitly"
                )
            pooler = chosen[0]
            include_prompt = bool(cfg.get("include_prompt", True))
        elif kind.endswith(".Dense"):
            cfg_file = resolve_file(name_or_path, f"{folder}/config.json")
            if cfg_file is None:
                raise FileNotFoundError(f"{name_or_path}/{folder}/config.json is missing (Dense module)")
            cfg = _read_json(cfg_file)
            if head is not None or not cfg.get("bias", True) or cfg.get("use_residual", False):
                raise ValueError(f"{cfg_file}: only one Dense layer with bias and no residual is supported")
            head = DenseHead(
                cfg["in_features"],
                cfg["out_features"],
                cfg.get("activation_function", "torch.nn.modules.activation.Tanh"),
            )
            weights = _load_weights(name_or_path, folder)
            head.dense.load_state_dict({"weight": weights["linear.weight"], "bias": weights["linear.bias"]})
        elif kind.endswith(".Normalize"):
            normalize = True
        else:
            raise ValueError(f"{modules_file}: module type {kind!r} is not supported by simcse.Encoder")
    return STLayout(subfolder, pooler, head, normalize, max_len, include_prompt)


def write_st_layout(
    path: str,
    pooler: str,
    hidden_size: int,
    head: DenseHead | None,
    max_seq_length: int,
    normalize: bool = False,
    include_prompt: bool = True,
) -> bool:
    """Write ``modules.json`` and module folders so sentence-transformers loads ``path``.

    The transformer weights and tokenizer must already be in ``path``. ``normalize`` appends a
    ``Normalize`` module; ``include_prompt=False`` keeps prompt tokens out of the pooling. Returns
    False (and writes nothing) for poolers sentence-transformers cannot express exactly.
    """
    if pooler not in ST_POOLING_MODES:
        return False
    use_head = head is not None and pooler != "cls_before_pooler"
    mode = ST_POOLING_MODES[pooler]
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    # legacy boolean flags are written too: every sentence-transformers version reads them
    pooling_cfg = {"embedding_dimension": hidden_size, "word_embedding_dimension": hidden_size}
    pooling_cfg.update({flag: _ST_MODES[mode] == name for flag, name in _ST_POOLING.items()})
    pooling_cfg.update({"pooling_mode": mode, "include_prompt": include_prompt})
    _write_json(os.path.join(path, "1_Pooling", "config.json"), pooling_cfg)
    if use_head:
        assert head is not None
        from safetensors.torch import save_file

        dense_cfg = {
            "in_features": head.dense.in_features,
            "out_features": head.dense.out_features,
            "bias": True,
            "activation_function": head.activation_name,
        }
        _write_json(os.path.join(path, "2_Dense", "config.json"), dense_cfg)
        weights = {"linear.weight": head.dense.weight, "linear.bias": head.dense.bias}
        tensors = {k: v.detach().cpu().contiguous() for k, v in weights.items()}
        save_file(tensors, os.path.join(path, "2_Dense", "model.safetensors"))
        modules.append({"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    if normalize:
        n = len(modules)
        modules.append(
            {"idx": n, "name": str(n), "path": f"{n}_Normalize", "type": "sentence_transformers.models.Normalize"}
        )
    _write_json(os.path.join(path, "modules.json"), modules)
    st_config = {"max_seq_length": max_seq_length, "do_lower_case": False}
    _write_json(os.path.join(path, "sentence_bert_config.json"), st_config)
    return True


def _write_json(path: str, obj: object) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(obj, f, indent=2)
