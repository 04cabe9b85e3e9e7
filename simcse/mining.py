"""Hard-negative mining: for (anchor, positive) pairs, the corpus sentences an encoder ranks close to the anchor.

Supervised SimCSE gains most from hard negatives (Gao et al., 2021, Table 7: contradictions as hard
negatives); without NLI-style triplets, they are mined with an encoder. The filters are those of
sentence-transformers' ``mine_hard_negatives`` (sampling strategy ``top``), with the same meaning, so
settings carry over (``tests/test_mining.py`` compares the two on the same embeddings):

- candidates: the corpus plus every pair's positive, deduplicated (exact text); each anchor's top
  ``range_max`` by cosine, after removing its own positive(s) and any exact copy of the anchor;
- ``absolute_margin`` drops candidates with ``score + absolute_margin > positive_score``,
  ``relative_margin`` those with ``score > positive_score - |positive_score| * relative_margin``,
  ``max_score`` / ``min_score`` those above / below a score;
- the survivors in score order, the first ``range_min`` skipped, the next ``num_negatives`` kept.

One triplet ``(anchor, positive, negative)`` per kept negative; a pair with none is left out and counted.
:func:`write_triplets` writes them as the ``sent0,sent1,hard_neg`` CSV that supervised training reads.

Example:
    >>> options = MiningOptions(range_min=5, relative_margin=0.05)
    >>> triplets, stats = mine_hard_negatives(encoder, pairs, corpus, options)  # doctest: +SKIP
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simcse.io import StrPath, atomic_write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MiningOptions:
    """Which ranked candidates become negatives (names and meaning as in sentence-transformers).

    Attributes:
        num_negatives: Negatives (triplets) per pair at most.
        range_min: Survivors skipped first (the closest ones are often unlabelled positives).
        range_max: Candidates considered per anchor; None: ``range_min + num_negatives`` (``* 10`` when a
            score filter is set, since some are dropped).
        absolute_margin: Keep a candidate only if ``score + absolute_margin <= positive_score``.
        relative_margin: Keep a candidate only if ``score <= positive_score - |positive_score| * relative_margin``.
        max_score: Keep a candidate only if ``score <= max_score``.
        min_score: Keep a candidate only if ``score >= min_score``.
    """

    num_negatives: int = 1
    range_min: int = 0
    range_max: int | None = None
    absolute_margin: float | None = None
    relative_margin: float | None = None
    max_score: float | None = None
    min_score: float | None = None

    def __post_init__(self) -> None:
        if self.num_negatives < 1:
            raise ValueError(f"num_negatives must be >= 1, got {self.num_negatives}")
        if self.range_min < 0:
            raise ValueError(f"range_min must be >= 0, got {self.range_min}")
        if self.range_max is not None and self.range_max - self.range_min < self.num_negatives:
            raise ValueError(
                f"range_max {self.range_max} leaves {self.range_max - self.range_min} candidates after range_min "
                f"{self.range_min}, fewer than num_negatives {self.num_negatives}"
            )

    @property
    def window(self) -> int:
        """Candidates considered per anchor (``range_max``, resolved)."""
        if self.range_max is not None:
            return self.range_max
        filtered = any(v is not None for v in (self.absolute_margin, self.relative_margin, self.max_score))
        return self.range_min + self.num_negatives * (10 if filtered else 1)


@dataclass
class MiningStats:
    """What mining kept and dropped (counts over all candidates considered)."""

    pairs: int = 0
    triplets: int = 0
    pairs_without_negative: int = 0
    dropped: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the log."""
        drops = ", ".join(f"{n} by {k}" for k, n in self.dropped.items() if n) or "none"
        return (
            f"{self.triplets} triplets from {self.pairs} pairs; {self.pairs_without_negative} pairs without a "
            f"negative; candidates dropped: {drops}"
        )


def select_negatives(
    ids: np.ndarray,
    scores: np.ndarray,
    positive_scores: np.ndarray,
    excluded: Sequence[set[int]],
    options: MiningOptions,
    stats: MiningStats | None = None,
) -> list[list[tuple[int, float]]]:
    """Apply the exclusions, score filters and rank window to each anchor's ranked candidates.

    Args:
        ids: ``(n, m)`` candidate indices per anchor, best first.
        scores: ``(n, m)`` their scores.
        positive_scores: ``(n,)`` each anchor's score with its positive.
        excluded: Per anchor, candidate indices never to return (its positives, copies of the anchor).
        options: The filters.
        stats: Counts of dropped candidates are added here when given.

    Returns:
        Per anchor, up to ``num_negatives`` ``(index, score)`` pairs, best first.
    """
    s = np.array(scores, dtype=np.float64)  # (n, m), -inf marks a dropped candidate
    pos = np.asarray(positive_scores, dtype=np.float64)[:, None]  # (n, 1)
    for row, skip in enumerate(excluded):
        s[row, np.isin(ids[row], list(skip))] = -np.inf
    rules = {
        "absolute_margin": None if options.absolute_margin is None else s + options.absolute_margin > pos,
        "relative_margin": None if options.relative_margin is None else s > pos - np.abs(pos) * options.relative_margin,
        "max_score": None if options.max_score is None else s > options.max_score,
        "min_score": None if options.min_score is None else s < options.min_score,
    }
    for name, drop in rules.items():
        if drop is not None:
            drop &= np.isfinite(s)
            if stats is not None:
                stats.dropped[name] = stats.dropped.get(name, 0) + int(drop.sum())
            s[drop] = -np.inf
    order = np.argsort(-s, axis=1, kind="stable")[:, : options.window]  # survivors first, by score
    order = order[:, options.range_min : options.range_min + options.num_negatives]  # (n, <= num_negatives)
    return [[(int(ids[r, c]), float(s[r, c])) for c in order[r] if np.isfinite(s[r, c])] for r in range(len(order))]


def mine_hard_negatives(
    encoder: Any,
    pairs: Sequence[tuple[str, str]],
    corpus: Sequence[str],
    options: MiningOptions | None = None,
    batch_size: int = 64,
    show_progress_bar: bool = False,
) -> tuple[list[tuple[str, str, str]], MiningStats]:
    """Mine hard negatives for ``(anchor, positive)`` pairs from ``corpus`` with ``encoder`` (cosine, exact).

    Args:
        encoder: A :class:`simcse.Encoder` (anything with ``encode(sentences, batch_size=, normalize=)``).
        pairs: ``(anchor, positive)`` texts; an anchor may have several positives (all are excluded).
        corpus: Candidate negatives; every pair's positive is added, and exact duplicates are merged.
        options: The filters (default: the closest candidate, one per pair).
        batch_size: Sentences per forward pass.
        show_progress_bar: Show tqdm bars while encoding.

    Returns:
        The ``(anchor, positive, negative)`` triplets in pair order, and the counts.
    """
    from simcse.search import top_k_cosine

    options = options or MiningOptions()
    candidates = list(dict.fromkeys([*corpus, *(p for _, p in pairs)]))
    where = {text: i for i, text in enumerate(candidates)}
    anchors = list(dict.fromkeys(a for a, _ in pairs))
    row_of = {text: i for i, text in enumerate(anchors)}
    positives: dict[str, set[int]] = {}
    for a, p in pairs:
        positives.setdefault(a, set()).add(where[p])
    excluded = [positives[a] | ({where[a]} if a in where else set()) for a, _ in pairs]

    kw = {"batch_size": batch_size, "normalize": True, "show_progress_bar": show_progress_bar}
    anchor_vecs = encoder.encode(anchors, **kw)  # (n_anchors, dim)
    candidate_vecs = encoder.encode(candidates, **kw)  # (n_candidates, dim)
    rows = np.array([row_of[a] for a, _ in pairs])
    pos_ids = np.array([where[p] for _, p in pairs])
    positive_scores = np.einsum("nd,nd->n", anchor_vecs[rows], candidate_vecs[pos_ids])  # (n_pairs,)

    k = min(options.window + max(len(e) for e in excluded), len(candidates))
    hits = top_k_cosine(anchor_vecs, candidate_vecs, k)  # per anchor: (index, cosine), best first
    ids = np.array([[i for i, _ in hits[r]] for r in rows])  # (n_pairs, k)
    scores = np.array([[s for _, s in hits[r]] for r in rows])  # (n_pairs, k)
    stats = MiningStats(pairs=len(pairs))
    chosen = select_negatives(ids, scores, positive_scores, excluded, options, stats)
    triplets = [(a, p, candidates[i]) for (a, p), negs in zip(pairs, chosen) for i, _ in negs]
    stats.triplets = len(triplets)
    stats.pairs_without_negative = sum(not negs for negs in chosen)
    logger.info("mined %s", stats.summary())
    return triplets, stats


def write_triplets(path: StrPath, triplets: list[tuple[str, str, str]]) -> None:
    """Write a ``sent0,sent1,hard_neg`` CSV through a temporary file and a rename."""
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("sent0", "sent1", "hard_neg"))
    writer.writerows(triplets)
    atomic_write_text(path, buffer.getvalue())
