"""What a view is: ``none`` (the sentence itself) or one augmentation with its rate, parsed from the config.

A view is written ``kind`` or ``kind:rate`` (``crop:0.1``, ``mlm:0.15``, ``delete_one_word``). Word-level
kinds change the text (split on whitespace) and need it re-tokenized; token-level kinds change the token
ids the cache holds. :func:`parse_view` refuses an unknown kind or a rate out of range in one line.
"""

from __future__ import annotations

from dataclasses import dataclass

# kind -> (level, default rate, whether a rate may be given); None: the kind takes no rate
KINDS: dict[str, tuple[str, float | None, bool]] = {
    "none": ("none", None, False),
    "crop": ("word", None, True),  # a contiguous span of this fraction of the words removed
    "word_deletion": ("word", None, True),  # this fraction of the words removed, anywhere
    "delete_one_word": ("word", None, False),
    "synonym": ("word", None, True),  # one word (or this fraction) replaced by a WordNet synonym
    "word_repetition": ("word", 0.2, True),  # this fraction of the words written twice (ESimCSE)
    "mlm": ("token", 0.15, True),  # this fraction of the tokens masked and filled by a masked LM
    "token_shuffle": ("token", None, False),  # the tokens between [CLS] and [SEP] permuted
    "token_cutoff": ("token", 0.1, True),  # this fraction of the tokens hidden from attention (ConSERT)
}
NEEDS_RATE = ("crop", "word_deletion")


@dataclass(frozen=True)
class ViewSpec:
    """One view: its ``kind`` (a key of :data:`KINDS`) and ``rate`` (a fraction; None where the kind has none)."""

    kind: str
    rate: float | None = None

    @property
    def level(self) -> str:
        """``none``, ``word`` (re-tokenized text) or ``token`` (on the cached token ids)."""
        return KINDS[self.kind][0]

    def __str__(self) -> str:
        return self.kind if self.rate is None else f"{self.kind}:{self.rate:g}"


def parse_view(text: str) -> ViewSpec:
    """``"crop:0.1"`` -> ``ViewSpec("crop", 0.1)``; an unknown kind or a bad rate raises ValueError."""
    kind, _, rate_text = text.strip().partition(":")
    if kind not in KINDS:
        raise ValueError(f"view {text!r}: unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    _, default, takes_rate = KINDS[kind]
    if rate_text and not takes_rate:
        raise ValueError(f"view {text!r}: {kind} takes no rate")
    if not rate_text:
        if kind in NEEDS_RATE:
            raise ValueError(f"view {text!r}: {kind} needs a rate, e.g. {kind}:0.1")
        return ViewSpec(kind, default)
    try:
        rate = float(rate_text)
    except ValueError:
        raise ValueError(f"view {text!r}: rate {rate_text!r} is not a number") from None
    if not 0 < rate < 1:
        raise ValueError(f"view {text!r}: rate must be in (0, 1), got {rate:g}")
    return ViewSpec(kind, rate)


def count(rate: float, n: int) -> int:
    """How many of ``n`` items a ``rate`` touches: rounded half up."""
    return int(rate * n + 0.5)
