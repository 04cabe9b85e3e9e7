"""The training model: an :class:`Encoder` with SimCSE's MLP head, plus an optional MLM head."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import torch
from torch import nn

from simcse.config import TrainConfig
from simcse.encoder import Encoder
from simcse.encoder.heads import DenseHead
from simcse.encoder.hub import resolve_model_name

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
    lengths = mask.sum(1)  # (rows,)
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
    ``objective`` (:class:`simcse.train.objective_step.ObjectiveModules`) holds a predictor / prototypes, trained
    with the encoder, and a momentum encoder, frozen (``requires_grad`` False, so the optimizer leaves it
    out); all of them are checkpointed with the model, none is exported with it.
    """

    def __init__(
        self, encoder: Encoder, mlm_model: nn.Module | None = None, objective: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.mlm_model = mlm_model
        self.objective = objective

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
        z = grouped_forward(functools.partial(self.encoder, use_head=True), batch, group_rows)  # (rows, dim)
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
    LoRA) come from :mod:`simcse.train.llm`.
    """
    from transformers import AutoModelForMaskedLM

    from simcse.train.llm import adapt_encoder, backbone_kwargs
    from simcse.train.objective_step import build_objective_modules

    name = resolve_model_name(cfg.model_name_or_path)
    overrides = backbone_kwargs(cfg, name)
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
    # built last: a momentum encoder copies the encoder with its head
    return ContrastiveModel(encoder, mlm_model, build_objective_modules(cfg, encoder))


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
