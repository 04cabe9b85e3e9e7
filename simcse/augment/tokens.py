"""Token-level augmentations of one sentence's token ids (special tokens such as [CLS] and [SEP] stay put).

:func:`token_shuffle` and :func:`token_cutoff` follow ConSERT (Yan et al., 2021); :class:`MaskedLMFiller`
is the paper's MLM replacement (Gao et al., 2021, Table 1): a fraction of the tokens is masked and each
is filled with a masked language model's top prediction other than the token it replaces.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from simcse.augment.spec import count


def _content(ids: Sequence[int], special: frozenset[int]) -> list[int]:
    """Positions of the tokens that are not special."""
    return [i for i, t in enumerate(ids) if t not in special]


def token_shuffle(ids: Sequence[int], special: frozenset[int], rng: np.random.Generator) -> list[int]:
    """The non-special tokens in a random order (the special ones keep their places)."""
    out, where = list(ids), _content(ids, special)
    for pos, src in zip(where, rng.permutation(where).tolist()):
        out[pos] = ids[src]
    return out


def token_cutoff(ids: Sequence[int], special: frozenset[int], rate: float, rng: np.random.Generator) -> list[int]:
    """An attention mask hiding ``rate`` of the non-special tokens (rounded, at least one, never all).

    The token keeps its position (unlike a deletion); no other token attends to it and pooling skips it.
    """
    mask, where = [1] * len(ids), _content(ids, special)
    cut = min(max(count(rate, len(where)), 1), len(where) - 1)
    for pos in rng.choice(where, size=max(cut, 0), replace=False).tolist() if cut > 0 else []:
        mask[pos] = 0
    return mask


def mlm_positions(ids: Sequence[int], special: frozenset[int], rate: float, rng: np.random.Generator) -> list[int]:
    """The positions a ``rate`` MLM replacement masks: ``rate`` of the non-special tokens (at least one), sorted."""
    where = _content(ids, special)
    if not where:
        return []
    chosen = rng.choice(where, size=min(max(count(rate, len(where)), 1), len(where)), replace=False)
    return sorted(chosen.tolist())


class MaskedLMFiller:
    """Fill masked positions with a masked language model's top predictions (on the CPU, in eval mode).

    Sentences run in chunks of a fixed shape (``chunk`` rows of ``width`` tokens, padding rows and tokens
    masked out of attention), so a sentence's fill never depends on which sentences share its batch: the
    views are the same however a step's rows are split over processes.

    Args:
        name_or_path: Any ``AutoModelForMaskedLM`` folder or hub name sharing the training tokenizer's vocabulary.
        mask_id: The tokenizer's [MASK] id.
        special: The tokenizer's special-token ids (never predicted).
        width: Tokens per row of a chunk (at least the longest sentence: the training ``max_seq_len``).
        chunk: Rows per forward.
        max_masks: The most positions a sentence has masked; the vocabulary head (most of the cost: a
            30k-word projection per token) runs on that many hidden states per row, not on every token.
    """

    def __init__(
        self, name_or_path: str, mask_id: int, special: frozenset[int], width: int = 32, chunk: int = 16,
        max_masks: int | None = None,
    ) -> None:  # fmt: skip
        self.name_or_path, self.mask_id, self.special = name_or_path, mask_id, special
        self.width, self.chunk, self.max_masks = width, chunk, max_masks or width
        self._model: Any = None

    @property
    def model(self) -> Any:
        """The masked LM, loaded on first use (in the process that collates: a loader worker or the main one)."""
        if self._model is None:
            from transformers import AutoModelForMaskedLM

            model, info = AutoModelForMaskedLM.from_pretrained(self.name_or_path, output_loading_info=True)
            fresh = [k for k in info["missing_keys"] if "predictions" in k or "lm_head" in k]
            if fresh:  # a head drawn at random would fill the masks with noise, differently in every process
                raise ValueError(f"{self.name_or_path}: no masked-LM head in the checkpoint (missing {fresh[0]}); "
                                 "mlm views need a masked LM (set augment_model)")  # fmt: skip
            self._model = model.eval()
        return self._model

    def __call__(self, ids: Sequence[int], positions: Sequence[int]) -> list[int]:
        """``ids`` with each of ``positions`` replaced by the top prediction for it, all masked at once."""
        return self.fill([ids], [positions])[0]

    def fill(self, sentences: Sequence[Sequence[int]], positions: Sequence[Sequence[int]]) -> list[list[int]]:
        """Each sentence with its ``positions`` masked and filled (see :meth:`__call__`), in fixed-shape chunks."""
        import torch

        out = [list(ids) for ids in sentences]
        todo = [i for i, p in enumerate(positions) if p]
        for start in range(0, len(todo), self.chunk):
            part = todo[start : start + self.chunk]
            masked = torch.zeros((self.chunk, self.width), dtype=torch.long)  # (chunk, width)
            attend = torch.zeros_like(masked)
            for row, i in enumerate(part):
                if len(sentences[i]) > self.width:
                    raise ValueError(f"mlm view: a sentence of {len(sentences[i])} tokens is longer than {self.width}")
                masked[row, : len(sentences[i])] = torch.tensor(sentences[i])
                masked[row, list(positions[i])] = self.mask_id
                attend[row, : len(sentences[i])] = 1
            gather = torch.zeros((self.chunk, self.max_masks), dtype=torch.long)  # (chunk, max_masks): positions
            for row, i in enumerate(part):
                if len(positions[i]) > self.max_masks:
                    raise ValueError(f"mlm view: {len(positions[i])} masked positions, more than {self.max_masks}")
                gather[row, : len(positions[i])] = torch.tensor(list(positions[i]))
            logits = self._logits(masked, attend, gather)  # (chunk, max_masks, vocab)
            logits[..., list(self.special)] = float("-inf")  # never a special token
            for row, i in enumerate(part):
                where = list(positions[i])
                scores = logits[row, : len(where)]  # (masked, vocab)
                scores[torch.arange(len(where)), torch.tensor([sentences[i][p] for p in where])] = float("-inf")
                for p, token in zip(where, scores.argmax(dim=1).tolist()):  # the top prediction that changes it
                    out[i][p] = int(token)
        return out

    def _logits(self, ids: Any, attend: Any, gather: Any) -> Any:
        """``(chunk, max_masks, vocab)`` float32 logits at the ``gather`` positions of each row (fixed shapes)."""
        import torch

        model = self.model
        head = getattr(model, "cls", None) or getattr(model, "lm_head", None)  # BERT-like, RoBERTa-like
        with torch.no_grad():
            if head is None:  # another architecture: the full vocabulary projection at every token
                logits = model(input_ids=ids, attention_mask=attend).logits  # (chunk, width, vocab)
                return logits.gather(1, gather[..., None].expand(-1, -1, logits.shape[-1])).float()
            hidden = model.base_model(input_ids=ids, attention_mask=attend)[0]  # (chunk, width, dim)
            picked = hidden.gather(1, gather[..., None].expand(-1, -1, hidden.shape[-1]))  # (chunk, max_masks, dim)
            return head(picked).float()
