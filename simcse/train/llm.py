"""The decoder / LoRA side of building the training model: load-time settings, then adapters.

:func:`backbone_kwargs` gives ``AutoModel.from_pretrained`` its dropout rates, attention switch, dtype
and (QLoRA) quantization; :func:`adapt_encoder` checks the attention switch took, makes the tokenizer
append EOS for ``last_token`` pooling, sets the prompts, turns on gradient checkpointing and attaches
LoRA adapters. Every choice comes from an explicit config field, none from the model's name.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from simcse.config import TrainConfig
from simcse.encoder import Encoder
from simcse.encoder.decoder import check_bidirectional, dropout_overrides, ensure_eos
from simcse.encoder.lora import apply_lora, trainable_summary
from simcse.encoder.prompts import PromptSettings

logger = logging.getLogger(__name__)


def backbone_kwargs(cfg: TrainConfig, name: str) -> dict[str, Any]:
    """Keyword arguments for ``AutoModel.from_pretrained(name, ...)`` that ``cfg`` asks for."""
    from transformers import AutoConfig

    hf_config = AutoConfig.from_pretrained(name)
    settings: dict[str, Any] = dropout_overrides(
        hf_config, cfg.model_name_or_path, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
        hidden_dropout=cfg.hidden_dropout,
    )  # fmt: skip
    if cfg.attention == "bidirectional":
        settings["is_causal"] = False  # read by transformers' mask builders (masking_utils.create_causal_mask)
    if getattr(hf_config, "use_cache", False):
        settings["use_cache"] = False  # a training forward needs no key/value cache
    for key, value in settings.items():  # on the config object: is_causal is no model __init__ argument
        setattr(hf_config, key, value)
    kwargs: dict[str, Any] = {"config": hf_config}
    if cfg.model_dtype != "float32":
        kwargs["dtype"] = getattr(torch, cfg.model_dtype)
    if cfg.load_in_4bit:
        kwargs["quantization_config"] = _four_bit(cfg)
    return kwargs


def _four_bit(cfg: TrainConfig) -> Any:
    """QLoRA's NF4 quantization; refused without CUDA (bitsandbytes' 4-bit kernels need it). Untested in CI."""
    if not torch.cuda.is_available():
        raise ValueError("load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit kernels); on CPU use lora_r without it")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        raise ImportError("load_in_4bit needs bitsandbytes: pip install bitsandbytes") from err
    from transformers import BitsAndBytesConfig

    compute = torch.bfloat16 if cfg.model_dtype == "bfloat16" else torch.float32
    return BitsAndBytesConfig(
        load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=compute
    )


def training_prompts(cfg: TrainConfig) -> PromptSettings:
    """The prompts the trained model is saved with: ``query`` (the first column's), ``document`` (the second's).

    The anchor column (``sent0``, or the one sentence of unsupervised data) is the query side, the
    positive's column the document side; ``query`` is the default, so ``encode`` and the STS evaluation
    (both sides alike, as E5 evaluates STS) apply the prompt the anchors were trained with.
    """
    per_column, cols = cfg.column_prompts, cfg.columns
    if not per_column:
        return PromptSettings(include_prompt=cfg.include_prompt)
    query = per_column.get(cols[0], "")
    named = {"query": query}
    if cfg.mode != "unsup" and len(cols) > 1:
        named["document"] = per_column.get(cols[1], "")
    return PromptSettings(named, "query" if query else None, cfg.include_prompt)


def prepare_quantized(model: Any, gradient_checkpointing: bool) -> Any:
    """peft's preparation of a 4-bit backbone for LoRA, keeping gradient checkpointing non-reentrant.

    ``prepare_model_for_kbit_training`` turns checkpointing on again, reentrant unless told otherwise
    (transformers' default), and then makes the embeddings' output require a gradient so that the
    reentrant form reaches LoRA weights inside frozen blocks; the non-reentrant form chosen in
    :func:`adapt_encoder` needs no such hook, so that choice is passed on.
    """
    from peft import prepare_model_for_kbit_training

    return prepare_model_for_kbit_training(
        model, gradient_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False}
    )


def adapt_encoder(encoder: Encoder, cfg: TrainConfig) -> Encoder:
    """Apply ``cfg``'s decoder settings to a freshly loaded encoder (in place), then return it."""
    source = cfg.model_name_or_path
    if cfg.attention == "bidirectional":
        check_bidirectional(encoder.model, source)
    if cfg.pooler == "last_token":
        ensure_eos(encoder.tokenizer, cfg.add_eos, source)
    encoder.prompts = training_prompts(cfg)
    if cfg.gradient_checkpointing:
        if not getattr(encoder.model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{source}: {encoder.model.config.model_type} does not support gradient checkpointing")
        # non-reentrant: gradients reach LoRA weights inside a frozen block; torch.utils.checkpoint keeps
        # preserve_rng_state=True, so the recomputation draws each view's dropout masks again
        encoder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora_r:
        if cfg.load_in_4bit:
            encoder.model = prepare_quantized(encoder.model, cfg.gradient_checkpointing)
        encoder.model = apply_lora(encoder.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        logger.info("LoRA r=%d alpha=%g: %s", cfg.lora_r, cfg.lora_alpha, trainable_summary(encoder.model))
    return encoder
