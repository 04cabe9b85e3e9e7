"""The views of a step's unsupervised examples made on the fly: augmentations and next-sentence positives.

:class:`AugmentedViews` wraps the cache's :class:`simcse.data.loader.TokenizedViews` and collates a step's
rows like it, view-major, but each view is the one ``cfg.views`` names (:mod:`simcse.augment`) and the
second view's sentence is ``cfg.positive``'s (the same line, the next one, or one of the next three).
Every random choice is drawn from a generator seeded by ``(seed, step, example, view)``: a step's views do
not depend on how its global batch is split over processes, nor on where a run was resumed.

Word-level views (crop, word deletion, synonyms, word repetition) change the text, which the cache keeps
beside the token ids for them, and tokenize it again here; token-level views (token shuffle, token cutoff,
MLM replacement) change the cached ids. Both run where batches are collated (the loader's workers, or the
training process on CPU); their cost per batch is measured by ``scripts/bench/bench_views.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from simcse.augment import (
    MaskedLMFiller,
    ViewSpec,
    crop,
    mlm_positions,
    parse_view,
    synonym_replacement,
    token_cutoff,
    token_shuffle,
    word_deletion,
    word_repetition,
)
from simcse.augment.spec import count
from simcse.config import TrainConfig
from simcse.data.columns import encode_column
from simcse.encoder.padding import pad_ragged, ragged

NEXT_LINES = {"same": 0, "next": 1, "next3": 3}  # the farthest line a positive may come from
_PARTNER = 1 << 20  # a salt apart from the views' own (view 0, 1, ...)


def view_rng(seed: int, step: int, example: int, view: int) -> np.random.Generator:
    """The generator of one example's view at one step (the same on every process and after a resume)."""
    return np.random.default_rng([seed, step, example, view])


class AugmentedViews:
    """A step's rows collated with ``cfg.views`` and ``cfg.positive`` (the interface of ``TokenizedViews``).

    Args:
        base: The cache's token ids (and texts, when a view is word-level).
        cfg: The run's config (``views``, ``positive``, ``seed``, ``max_seq_len``, ``augment_model``).
        tokenizer: The training tokenizer (word-level views are tokenized with it).
    """

    def __init__(self, base: Any, cfg: TrainConfig, tokenizer: Any) -> None:
        self.base, self.cfg, self.tokenizer = base, cfg, tokenizer
        self.specs: list[ViewSpec] = [parse_view(v) for v in cfg.views]
        self.reach = NEXT_LINES[cfg.positive]
        self.report, self.pad_id, self.keys = base.report, base.pad_id, list(base.keys)
        self.special = frozenset(int(i) for i in tokenizer.all_special_ids)
        self.cutoff = any(s.kind == "token_cutoff" for s in self.specs)
        self._table = base.data.with_format("arrow")
        # loaded here, before the loader's workers fork (they share it), so that a missing WordNet or a
        # masked LM without its head stops the run at start, on every process
        self._synonyms: Any = None
        if any(s.kind == "synonym" for s in self.specs):
            from simcse.augment.wordnet import synonym_lookup

            self._synonyms = synonym_lookup(cfg.data_dir)
        self.filler = None
        mlm = [s.rate or 0.15 for s in self.specs if s.kind == "mlm"]
        if mlm:
            self.filler = MaskedLMFiller(
                cfg.augment_model or cfg.model_name_or_path, tokenizer.mask_token_id, self.special,
                width=cfg.max_seq_len, max_masks=max(count(max(mlm), cfg.max_seq_len), 1),
            )  # fmt: skip
            _check_vocabulary(self.filler.name_or_path, tokenizer)
            _ = self.filler.model

    def __len__(self) -> int:
        """Examples that can be anchors: with next-sentence positives, every line but the last."""
        return max(len(self.base) - min(self.reach, 1), 0)

    def text_hashes(self) -> np.ndarray:
        """The anchors' text identities (for ``no_duplicates``)."""
        return self.base.text_hashes()[: len(self)]

    def partners(self, rows: Sequence[int], step: int) -> list[int]:
        """The second view's line of each anchor: itself, the next line, or one of the next three (uniformly)."""
        if self.reach == 0:
            return list(rows)
        last = len(self.base) - 1
        if self.reach == 1:
            return [r + 1 for r in rows]
        seed = self.cfg.seed
        return [min(r + int(view_rng(seed, step, r, _PARTNER).integers(1, self.reach + 1)), last) for r in rows]

    def collate(self, rows: Sequence[int], step: int = 0) -> dict[str, torch.Tensor]:
        """Pad the views of ``rows`` at ``step``, view-major: ``(2 * len(rows), seq)``."""
        rows = [int(r) for r in rows]
        sources = [rows, self.partners(rows, step)]
        parts: dict[str, list] = {k: [] for k in [*self.keys, *(["attention_mask"] if self.cutoff else [])]}
        for v, spec in enumerate(self.specs):
            features = self.view(spec, sources[v], rows, step, v)
            for key, lists in parts.items():
                lists.append(ragged(features[key]))
        return pad_ragged(parts, self.pad_id)

    def view(self, spec: ViewSpec, source: list[int], rows: list[int], step: int, v: int) -> dict[str, list]:
        """One view of the lines ``source`` (the anchors ``rows`` seed it): ``{feature: token-id lists}``."""
        table = self._table[source]
        rngs = [view_rng(self.cfg.seed, step, r, v) for r in rows]
        if spec.level == "word":
            texts = [
                " ".join(self._words(spec, t.split(), g)) for t, g in zip(table.column("text_0").to_pylist(), rngs)
            ]
            features = encode_column(self.tokenizer, texts, self.cfg.text_columns[0], self.cfg)
        else:
            features = {k: table.column(f"{k}_0").to_pylist() for k in self.keys}
            if spec.kind == "token_shuffle":
                features["input_ids"] = [
                    token_shuffle(ids, self.special, g) for ids, g in zip(features["input_ids"], rngs)
                ]
            elif spec.kind == "mlm":
                ids = features["input_ids"]
                where = [mlm_positions(x, self.special, spec.rate or 0.15, g) for x, g in zip(ids, rngs)]
                features["input_ids"] = self.filler.fill(ids, where)  # type: ignore[union-attr]
        if self.cutoff:
            ids = features["input_ids"]
            if spec.kind == "token_cutoff":
                features["attention_mask"] = [
                    token_cutoff(x, self.special, spec.rate or 0.1, g) for x, g in zip(ids, rngs)
                ]
            else:
                features["attention_mask"] = [[1] * len(x) for x in ids]
        return features

    def _words(self, spec: ViewSpec, words: list[str], rng: np.random.Generator) -> list[str]:
        if spec.kind == "crop":
            return crop(words, spec.rate or 0.0, rng)
        if spec.kind in ("word_deletion", "delete_one_word"):
            return word_deletion(words, spec.rate, rng)
        if spec.kind == "word_repetition":
            return word_repetition(words, spec.rate or 0.2, rng)
        return synonym_replacement(words, spec.rate, rng, self._synonyms)


def needs_texts(cfg: TrainConfig) -> bool:
    """Whether a view is word-level, so that the cache must keep the texts beside the token ids."""
    return any(parse_view(v).level == "word" for v in cfg.views)


def _check_vocabulary(name: str, tokenizer: Any) -> None:
    """The masked LM must read the training tokenizer's ids: the same vocabulary, or a clear error."""
    from transformers import AutoTokenizer

    theirs = AutoTokenizer.from_pretrained(name)
    if theirs.get_vocab() != tokenizer.get_vocab():
        raise ValueError(f"augment_model {name}: its vocabulary differs from the training tokenizer's (mlm views "
                         "replace token ids: use a masked LM of the same tokenizer)")  # fmt: skip
