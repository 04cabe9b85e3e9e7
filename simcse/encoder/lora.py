"""LoRA adapters through ``peft``: attach, save the adapter alone, save merged weights, load an adapter.

A LoRA model trains only its adapter matrices (and our head); the backbone stays frozen. It is saved
twice: the adapter alone (``adapter/`` in the model folder, a few MB, readable by ``peft``) and merged
weights (``W + (alpha / r) B A``) in the folder itself, so ``AutoModel``, :class:`simcse.Encoder` and
``SentenceTransformer`` read it as a plain model. Merging builds a new state dict: the training model is
left as it is (no merge and unmerge round trip that would change its weights by rounding).

Reference: Hu et al., "LoRA: Low-Rank Adaptation of Large Language Models", ICLR 2022; Dettmers et al.,
"QLoRA: Efficient Finetuning of Quantized LLMs", NeurIPS 2023.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from simcse.io import StrPath

ADAPTER_FOLDER = "adapter"
# peft resolves this per architecture: every nn.Linear / GPT-2 Conv1D of the backbone (as llm2vec and
# QLoRA train), never the output embedding; no table of module names to keep in step with transformers
DEFAULT_TARGETS = "all-linear"


def is_lora(model: nn.Module) -> bool:
    """Whether ``model`` is a ``peft`` model (carries adapters)."""
    try:
        from peft import PeftModel
    except ImportError:
        return False
    return isinstance(model, PeftModel)


def apply_lora(
    model: nn.Module, r: int, alpha: float, dropout: float = 0.0, target_modules: Sequence[str] | None = None
) -> nn.Module:
    """Wrap ``model`` in a ``peft`` LoRA model; only the adapter parameters keep ``requires_grad``.

    Args:
        model: A Hugging Face backbone (``AutoModel``).
        r: Rank of the update ``B A``.
        alpha: Scale numerator: the update is ``(alpha / r) B A``.
        dropout: Dropout on the adapter's input.
        target_modules: Module names (suffixes) to adapt; None: every linear layer of the backbone.
    """
    try:
        from peft import LoraConfig, get_peft_model
    except ImportError as err:
        raise ImportError("lora_r > 0 needs peft: pip install 'simcse-toolkit[llm]'") from err
    targets: Any = list(target_modules) if target_modules else DEFAULT_TARGETS
    config = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias="none")
    try:
        return get_peft_model(model, config)
    except ValueError as err:  # e.g. a target name that matches no module of this architecture
        model_type = getattr(getattr(model, "config", None), "model_type", type(model).__name__)
        raise ValueError(f"LoRA on {model_type}: {err}") from None


def prepare_quantized(model: Any, gradient_checkpointing: bool) -> Any:
    """peft's preparation of a 4-bit backbone for LoRA, keeping gradient checkpointing non-reentrant.

    ``prepare_model_for_kbit_training`` turns checkpointing on again, reentrant unless told otherwise
    (transformers' default), and then makes the embeddings' output require a gradient so that the
    reentrant form reaches LoRA weights inside frozen blocks; the non-reentrant form chosen in
    :func:`simcse.train.model.adapt_encoder` needs no such hook, so that choice is passed on.
    """
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
    )


def merged_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The backbone's weights with every active adapter merged in, under the backbone's own key names."""
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()  # type: ignore[operator]
    merged: dict[str, torch.Tensor] = {}
    for name, module in base.named_modules():
        if isinstance(module, LoraLayer):
            layer = module.get_base_layer()
            weight = _dense_weight(layer)
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters if a in module.lora_A)
            merged[f"{name}.weight"] = (weight.float() + delta.float()).to(layer_dtype(weight, model)).detach()
    state = {}
    for key, value in base.state_dict().items():
        if ".lora_" in key:
            continue
        key = key.replace(".base_layer.", ".")
        if key not in merged and value.dtype == torch.uint8:  # a 4-bit weight without an adapter
            raise ValueError(f"{key}: a 4-bit weight outside the LoRA targets cannot be saved merged")
        state[key] = merged.get(key, value).detach()
    return state


def layer_dtype(weight: torch.Tensor, model: nn.Module) -> torch.dtype:
    """The dtype merged weights are saved in: the weight's own, or the compute dtype of a 4-bit model."""
    if weight.dtype.is_floating_point:
        return weight.dtype
    return getattr(model.config, "torch_dtype", None) or torch.float32  # type: ignore[union-attr]


def _dense_weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    if weight.dtype.is_floating_point:
        return weight
    # QLoRA: a bitsandbytes 4-bit weight (GPU only; untested here, no GPU in CI)
    from peft.utils.integrations import dequantize_module_weight

    return dequantize_module_weight(layer)


def save_merged(model: nn.Module, path: StrPath) -> None:
    """Write the merged backbone (config + ``model.safetensors``) to the folder ``path``."""
    base = model.get_base_model()  # type: ignore[operator]
    state = merged_state_dict(model)
    quant = getattr(base.config, "quantization_config", None)
    if quant is not None:  # merged weights are dense: a reader must not expect 4-bit ones
        del base.config.quantization_config
    try:
        base.save_pretrained(path, state_dict=state)
    finally:
        if quant is not None:
            base.config.quantization_config = quant


def save_adapter(model: nn.Module, path: StrPath) -> None:
    """Write the adapter alone (``adapter_config.json``, ``adapter_model.safetensors``) to ``path``."""
    model.save_pretrained(os.fspath(path))  # type: ignore[operator]


def load_adapter(model: nn.Module, path: StrPath) -> nn.Module:
    """``model`` (a backbone) with the adapter saved at ``path`` attached, for inference."""
    from peft import PeftModel

    path = os.fspath(path)
    if not os.path.isfile(os.path.join(path, "adapter_config.json")):
        raise FileNotFoundError(f"{path}: no adapter_config.json (an adapter saved by simcse or peft)")
    return PeftModel.from_pretrained(model, path)


def trainable_summary(model: nn.Module) -> str:
    """``"trainable N of M parameters (x%)"`` for a log line."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return f"trainable {trainable:,} of {total:,} parameters ({100 * trainable / max(total, 1):.2f}%)"
