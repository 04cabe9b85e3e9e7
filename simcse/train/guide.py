"""The guide of guided false-negative filtering (GISTEmbed): a frozen encoder, run beside the training one.

Each step the guide embeds the step's rows under inference mode (no graph, no gradient, never trained nor
saved), its positives and hard negatives are gathered from every process like the training model's, and
:func:`simcse.objectives.guided_false_negatives` marks the candidates it scores above each anchor's own
positive. A guide with the training model's tokenizer reads the step's token ids as they are; another one
reads the texts decoded from them (as sentence-transformers' ``GISTEmbedLoss`` does).
"""

from __future__ import annotations

from typing import Any

import torch

from simcse.distributed import gather_no_grad, rank_and_world, sum_over_processes
from simcse.encoder import Encoder
from simcse.encoder.prompts import PROMPT_MASK
from simcse.objectives import guided_false_negatives


class Guide:
    """A frozen guide encoder and the count of the negatives it masked since the last read.

    Args:
        name_or_path: Any encoder folder or name :meth:`simcse.Encoder.from_pretrained` reads.
        tokenizer: The training model's tokenizer (decides whether the guide reads its token ids; None: it does).
        margin: Masks negatives the guide scores above the positive minus this.
    """

    def __init__(self, name_or_path: str, tokenizer: Any, margin: float = 0.0) -> None:
        self.encoder = Encoder.from_pretrained(name_or_path, device="cpu").eval().requires_grad_(False)
        self.tokenizer, self.margin = tokenizer, margin
        theirs = self.encoder.tokenizer
        # None: the caller vouches that the guide reads the training model's token ids
        self.same_tokens = tokenizer is None or (
            type(theirs) is type(tokenizer) and theirs.get_vocab() == tokenizer.get_vocab()
        )
        self._masked: torch.Tensor | None = None  # masked negatives summed over the steps since the last read
        self._steps = 0

    def _rows(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The step's rows as the guide reads them: the same token ids, or the decoded texts re-tokenized."""
        if self.same_tokens:
            return {k: v for k, v in batch.items() if k != PROMPT_MASK}
        texts = self.tokenizer.batch_decode(batch["input_ids"], skip_special_tokens=True)
        tokens = self.encoder.tokenizer(
            texts, padding=True, truncation=True, max_length=self.encoder.max_seq_length, return_tensors="pt"
        )  # fmt: skip
        return dict(tokens)

    def false_negatives(self, batch: dict[str, torch.Tensor], views: int) -> torch.Tensor:
        """This process's anchors' false negatives among the global candidates, laid out as info_nce's logits.

        Every process calls it at every step (it gathers the guide's vectors of all processes).
        """
        device = batch["input_ids"].device
        if self.encoder.device != device:
            self.encoder.to(device)
        with torch.inference_mode():
            rows = {k: v.to(device) for k, v in self._rows(batch).items()}
            g = self.encoder(**rows).float()  # (views * n, dim)
            g = g.view(views, -1, g.shape[-1])  # (views, n, dim)
            hard = gather_no_grad(g[2]) if views > 2 else None  # (world * n, dim)
            offset = rank_and_world()[0] * g.shape[1]
            mask = guided_false_negatives(g[0], gather_no_grad(g[1]), hard, margin=self.margin, label_offset=offset)
        mask = mask.clone()  # out of inference mode: the loss's masked_fill keeps it for backward
        count = mask.sum()
        self._masked = count if self._masked is None else self._masked + count
        self._steps += 1
        return mask

    def read(self) -> dict[str, float]:
        """``masked_negatives``: negatives masked per step (over all processes), mean since the last read.

        Every process calls it at the same steps (one sum over processes).
        """
        if not self._steps or self._masked is None:
            return {}
        total = sum_over_processes(self._masked.float().reshape(1)).item()
        steps, self._masked, self._steps = self._steps, None, 0
        return {"masked_negatives": total / steps}
