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

    Each sentence is run alone (no padding), so its fill does not depend on the other sentences of its
    batch: the views are the same however the batch is split over processes.

    Args:
        name_or_path: Any ``AutoModelForMaskedLM`` folder or hub name sharing the training tokenizer's vocabulary.
        mask_id: The tokenizer's [MASK] id.
        special: The tokenizer's special-token ids (never predicted).
    """

    def __init__(self, name_or_path: str, mask_id: int, special: frozenset[int]) -> None:
        self.name_or_path, self.mask_id, self.special = name_or_path, mask_id, special
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
        import torch

        if not positions:
            return list(ids)
        masked = torch.tensor([ids])  # (1, seq)
        masked[0, list(positions)] = self.mask_id
        with torch.no_grad():
            logits = self.model(input_ids=masked, attention_mask=torch.ones_like(masked)).logits[0]  # (seq, vocab)
        logits = logits[list(positions)].float()  # (masked, vocab)
        logits[:, list(self.special)] = float("-inf")  # never a special token
        logits[torch.arange(len(positions)), torch.tensor([ids[p] for p in positions])] = float("-inf")  # a change
        out = list(ids)
        for p, token in zip(positions, logits.argmax(dim=1).tolist()):
            out[p] = int(token)
        return out
