"""The training model: an :class:`Encoder` with SimCSE's MLP head, plus an optional MLM head.

Decoder backbones and LoRA: :func:`backbone_kwargs` gives ``AutoModel.from_pretrained`` its dropout
rates, attention switch, dtype and (QLoRA) quantization; :func:`adapt_encoder` sets the prompts, turns
on gradient checkpointing, checks the attention switch took, makes the tokenizer append EOS for
``last_token`` pooling and attaches LoRA adapters. Every choice comes from an explicit config field,
none from the model's name.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from simcse.config import TrainConfig
from simcse.encoder import Encoder
from simcse.encoder.decoder import check_bidirectional, dropout_overrides, ensure_eos
from simcse.encoder.heads import DenseHead
from simcse.encoder.hub import resolve_model_name
from simcse.encoder.lora import apply_lora, prepare_quantized, trainable_summary
from simcse.encoder.prompts import PromptSettings

logger = logging.getLogger(__name__)


def new_mlp_head(hidden_size: int, std: float = 0.02) -> DenseHead:
    """SimCSE's MLP (Linear + Tanh), newly initialised like BERT's layers (normal(0, std), zero bias)."""
    head = DenseHead(hidden_size, hidden_size)
    nn.init.normal_(head.dense.weight, std=std)
    nn.init.zeros_(head.dense.bias)
    return head


CPU_LENGTH_GROUP_ROWS = 32  # length_group_rows on CPU when the config leaves it to the device


def length_group_rows(cfg: TrainConfig, device: torch.device) -> int:
    """Rows per length group for ``cfg`` on ``device`` (0: one forward over all rows).

    Left to the device (``None``), grouping is on for CPUs, where compute grows with every padded
    token (measured speed-up: README, Performance), and off for GPUs, where one large kernel launch is
    expected to beat several small ones (``scripts/gpu/gpu_check.sh`` measures both there).
    """
    if cfg.length_group_rows is not None:
        return cfg.length_group_rows
    return CPU_LENGTH_GROUP_ROWS if device.type == "cpu" else 0


def grouped_forward(
    embed: Callable[..., torch.Tensor], batch: dict[str, torch.Tensor], group_rows: int
) -> torch.Tensor:
    """``embed(**batch)`` for every row of a right-padded batch -> ``(rows, dim)`` in row order.

    With ``group_rows > 0`` and more rows than that, the rows are sorted by length and forwarded in
    groups of ``group_rows``, each cut to its own longest row. Padding is masked out of attention
    and pooling, so the embeddings are those of one forward (to float rounding), while most padded
    tokens are skipped (how many: reports/benchmarks.md). The autograd graph spans all groups, so the
    loss and its gradient are unchanged. Every row still
    draws its own dropout mask; only the order in which the masks are drawn changes.
    """
    mask = batch["attention_mask"]
    rows = mask.shape[0]
    if group_rows <= 0 or rows <= group_rows:
        return embed(**batch)
    # each row's extent: its last attended token + 1 (a token cutoff view hides tokens inside a row)
    lengths = (mask * torch.arange(1, mask.shape[1] + 1, device=mask.device)).amax(1)  # (rows,)
    order = torch.argsort(lengths, descending=True, stable=True)  # (rows,)
    widths = lengths[order].tolist()  # one host sync per step; grouping is meant for CPUs
    parts = []
    for start in range(0, rows, group_rows):
        idx = order[start : start + group_rows]
        parts.append(embed(**{k: v[idx, : max(widths[start], 1)] for k, v in batch.items()}))  # (group, dim)
    z = torch.cat(parts)  # (rows, dim) in length order
    return z.index_select(0, torch.argsort(order))  # (rows, dim) in row order


class ContrastiveModel(nn.Module):
    """What the optimizer trains: the encoder (with head), for ``do_mlm`` the MLM model, and the objective's modules.

    The MLM model shares the encoder's transformer, so ``parameters()`` lists each weight once.
    ``second`` (``two_encoders``, paper Table 2) is a copy of the encoder, trained apart, that embeds the
    second view's rows; the first encoder is the one evaluated and saved.
    ``objective`` (:class:`simcse.train.objective_step.ObjectiveModules`) holds a predictor / prototypes, trained
    with the encoder, and a momentum encoder, frozen (``requires_grad`` False, so the optimizer leaves it
    out); all of them are checkpointed with the model, none is exported with it.
    """

    def __init__(
        self,
        encoder: Encoder,
        mlm_model: nn.Module | None = None,
        objective: nn.Module | None = None,
        second: Encoder | None = None,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.mlm_model = mlm_model
        self.objective = objective
        self.second = second

    def forward(
        self,
        group_rows: int = 0,
        mlm: dict[str, torch.Tensor] | None = None,
        predict: bool = False,
        **batch: torch.Tensor,
    ) -> torch.Tensor | tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Embed a tokenized batch of ``rows`` sentences -> ``(rows, dim)``, with the head.

        ``group_rows > 0`` runs the encoder on length-sorted groups of rows (:func:`grouped_forward`)
        inside this one call, so that a DDP wrapper sees a single forward per step. Every other module a
        step's loss uses runs in this call too, so that DDP sees it: with ``mlm`` (masked ``input_ids``,
        ``labels``...) the MLM loss, with ``predict`` the objective's predictor on the embeddings; then
        the result is ``(embeddings, {"mlm_loss": ..., "predictions": (rows, dim)})``.
        """
        if self.second is None:
            z = grouped_forward(functools.partial(self.encoder, use_head=True), batch, group_rows)  # (rows, dim)
        else:  # view-major rows: the first view's half through the encoder, the second's through its copy
            half = batch["input_ids"].shape[0] // 2
            sides = ((self.encoder, slice(0, half)), (self.second, slice(half, None)))
            z = torch.cat([
                grouped_forward(functools.partial(e, use_head=True), {k: v[rows] for k, v in batch.items()}, group_rows)
                for e, rows in sides
            ])  # fmt: skip
        if mlm is None and not predict:
            return z
        extras = {}
        if mlm is not None:
            extras["mlm_loss"] = self.mlm_loss(**mlm)
        predictor = getattr(self.objective, "predictor", None)
        if predict and predictor is not None:
            extras["predictions"] = predictor(z)  # (rows, dim)
        return z, extras

    def mlm_loss(self, **batch: torch.Tensor) -> torch.Tensor:
        """Masked-language-modelling loss of a batch holding ``labels`` (-100 = not masked)."""
        assert self.mlm_model is not None
        return self.mlm_model(**batch).loss


def build_model(cfg: TrainConfig) -> ContrastiveModel:
    """Load the encoder named in ``cfg``, attach a fresh MLP head for ``cls`` pooling and the objective's modules.

    Decoder settings (dropout by kind, bidirectional attention, EOS, prompts, gradient checkpointing,
    LoRA) come from :func:`backbone_kwargs` and :func:`adapt_encoder`.
    """
    from transformers import AutoModelForMaskedLM

    from simcse.train.objective_step import build_objective_modules

    name, overrides = backbone_kwargs(cfg)
    # cfg.max_seq_len truncates training data only; the encoder keeps the model's own limit, so the
    # saved model and every evaluation see whole sentences, as the paper evaluates
    # on the CPU first: Accelerate moves it to this process's own device (cuda:LOCAL_RANK), not the first GPU
    encoder = Encoder.from_pretrained(name, pooler=cfg.pooler, device="cpu", **overrides)  # type: ignore[arg-type]
    mlm_model = None
    if cfg.do_mlm:
        mlm_model = AutoModelForMaskedLM.from_pretrained(name, **overrides)
        # share one transformer: the encoder reads the MLM model's base
        encoder = Encoder(mlm_model.base_model, encoder.tokenizer, encoder.pooler, encoder.head, encoder.max_seq_length)
    if cfg.pooler == "cls":
        # the paper's MLP is new, not the checkpoint's NSP pooler
        encoder.head = new_mlp_head(int(encoder.model.config.hidden_size))
    adapt_encoder(encoder, cfg)
    # built last: a momentum encoder (or the second encoder) copies the encoder with its head
    second = copy.deepcopy(encoder) if cfg.two_encoders else None
    return ContrastiveModel(encoder, mlm_model, build_objective_modules(cfg, encoder), second)


def backbone_kwargs(cfg: TrainConfig) -> tuple[str, dict[str, Any]]:
    """The model to load (a hub name or a folder) and the ``from_pretrained`` keyword arguments ``cfg`` asks for."""
    from transformers import AutoConfig

    kwargs: dict[str, Any] = {"quantization_config": _four_bit(cfg)} if cfg.load_in_4bit else {}
    if cfg.model_dtype != "float32":
        kwargs["dtype"] = getattr(torch, cfg.model_dtype)
    name = resolve_model_name(cfg.model_name_or_path)
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
    kwargs["config"] = hf_config
    return name, kwargs


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


def adapt_encoder(encoder: Encoder, cfg: TrainConfig) -> Encoder:
    """Apply ``cfg``'s decoder settings to a freshly loaded encoder (in place), then return it.

    The prompts and gradient checkpointing first, then what :mod:`simcse.encoder` does: the checks
    that the attention switch and EOS took, and the LoRA adapters (on a 4-bit backbone, after peft's
    preparation of it).
    """
    source = cfg.model_name_or_path
    encoder.prompts = training_prompts(cfg)
    if cfg.gradient_checkpointing:
        if not getattr(encoder.model, "supports_gradient_checkpointing", False):
            raise ValueError(f"{source}: {encoder.model.config.model_type} does not support gradient checkpointing")
        # non-reentrant: gradients reach LoRA weights inside a frozen block; torch.utils.checkpoint keeps
        # preserve_rng_state=True, so the recomputation draws each view's dropout masks again
        encoder.model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.attention == "bidirectional":
        check_bidirectional(encoder.model, source)
    if cfg.pooler == "last_token":
        ensure_eos(encoder.tokenizer, cfg.add_eos, source)
    if cfg.lora_r:
        if cfg.load_in_4bit:
            encoder.model = prepare_quantized(encoder.model, cfg.gradient_checkpointing)
        encoder.model = apply_lora(encoder.model, cfg.lora_r, cfg.lora_alpha, cfg.lora_dropout, cfg.lora_target_modules)
        logger.info("LoRA r=%d alpha=%g: %s", cfg.lora_r, cfg.lora_alpha, trainable_summary(encoder.model))
    return encoder


def mask_tokens(
    input_ids: torch.Tensor, special_mask: torch.Tensor, mask_id: int, vocab_size: int, probability: float = 0.15
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT masking: choose ``probability`` of non-special tokens; 80% [MASK], 10% random, 10% kept.

    Returns ``(masked_input_ids, labels)`` with labels -100 where no prediction is made. Element-wise
    selections only (no boolean indexing, which needs the count of chosen tokens on the host: a sync).
    """
    device = input_ids.device
    probs = torch.full(input_ids.shape, probability, device=device).masked_fill_(special_mask.bool(), 0.0)
    chosen = torch.bernoulli(probs).bool()
    labels = input_ids.masked_fill(~chosen, -100)
    to_mask = torch.bernoulli(torch.full(input_ids.shape, 0.8, device=device)).bool() & chosen
    # half of the remaining 20% get a random token
    to_random = torch.bernoulli(torch.full(input_ids.shape, 0.5, device=device)).bool() & chosen & ~to_mask
    random_ids = torch.randint(vocab_size, input_ids.shape, device=device)
    masked = torch.where(to_random, random_ids, input_ids.masked_fill(to_mask, mask_id))
    return masked, labels
