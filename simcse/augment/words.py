"""Word-level augmentations of one sentence's words (whitespace split), each drawing from the ``rng`` given.

Every function keeps at least one word and returns a new list; the caller joins it with spaces and
tokenizes it. The ``rng`` (``numpy.random.Generator``) is seeded per example, view and step by
:class:`simcse.data.views.AugmentedViews`, so a view is the same on 1 or N processes and after a resume.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from simcse.augment.spec import count


def crop(words: Sequence[str], rate: float, rng: np.random.Generator) -> list[str]:
    """Remove one contiguous span of ``rate`` of the words (rounded), starting anywhere it fits."""
    n = len(words)
    cut = min(count(rate, n), n - 1)
    if cut <= 0:
        return list(words)
    start = int(rng.integers(0, n - cut + 1))
    return [*words[:start], *words[start + cut :]]


def word_deletion(words: Sequence[str], rate: float | None, rng: np.random.Generator) -> list[str]:
    """Remove ``rate`` of the words (rounded), chosen anywhere; ``rate`` None removes exactly one."""
    n = len(words)
    cut = min(1 if rate is None else count(rate, n), n - 1)
    if cut <= 0:
        return list(words)
    gone = set(rng.choice(n, size=cut, replace=False).tolist())
    return [w for i, w in enumerate(words) if i not in gone]


def word_repetition(words: Sequence[str], rate: float, rng: np.random.Generator) -> list[str]:
    """Write ``rate`` of the words (rounded, at least one) twice in place (ESimCSE's word repetition)."""
    n = len(words)
    if n == 0:
        return []
    twice = set(rng.choice(n, size=min(max(count(rate, n), 1), n), replace=False).tolist())
    return [x for i, w in enumerate(words) for x in ((w, w) if i in twice else (w,))]


STOPWORDS = frozenset(
    "a an the and or but if of to in on at by for from with as is are was were be been being it its this that these "
    "those he she they we you i me him her them us my his their our your not no do does did has have had will would "
    "can could shall should may might must also than then there here who whom which what when where why how".split()
)
_PUNCT = "\"'.,;:!?()[]{}«»“”‘’"


def _core(word: str) -> tuple[str, str, str]:
    """``("(", "word", "),")``: the word without the punctuation around it."""
    stripped = word.strip(_PUNCT)
    if not stripped:
        return word, "", ""
    start = word.index(stripped)
    return word[:start], stripped, word[start + len(stripped) :]


def synonym_replacement(
    words: Sequence[str], rate: float | None, rng: np.random.Generator, synonyms: Callable[[str], list[str]]
) -> list[str]:
    """Replace one word (``rate`` None) or ``rate`` of the words (rounded, at least one) by a synonym.

    Candidates are alphabetic words of 3+ letters, not stopwords, that ``synonyms`` (e.g.
    :func:`simcse.augment.wordnet.wordnet_synonyms`) knows; each chosen one takes a synonym drawn
    uniformly from its list, keeping the punctuation around it and a capital first letter.
    """
    out = list(words)
    options = {}
    for i, w in enumerate(words):
        _, core, _ = _core(w)
        if len(core) >= 3 and core.isalpha() and core.lower() not in STOPWORDS and (found := synonyms(core.lower())):
            options[i] = found
    if not options:
        return out
    want = 1 if rate is None else max(count(rate, len(words)), 1)
    chosen = rng.choice(sorted(options), size=min(want, len(options)), replace=False)
    for i in chosen.tolist():
        before, core, after = _core(words[i])
        new = options[i][int(rng.integers(len(options[i])))]
        if core[0].isupper():
            new = new[0].upper() + new[1:]
        out[i] = before + new + after
    return out
