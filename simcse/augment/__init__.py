"""Views beyond dropout: the augmentations that make the two views of an unsupervised example differ.

- :mod:`~simcse.augment.spec`: a view's kind and rate, parsed from the config (``crop:0.1``).
- :mod:`~simcse.augment.words`: crop, word deletion, word repetition, synonym replacement (on the words).
- :mod:`~simcse.augment.tokens`: token shuffle, token cutoff, MLM replacement (on the token ids).
- :mod:`~simcse.augment.wordnet`: WordNet synonyms through NLTK (offline data or NLTK's downloader).

:class:`simcse.data.views.AugmentedViews` applies them to a step's rows, seeded by (seed, step, example, view).
"""

from simcse.augment.spec import KINDS, ViewSpec, parse_view
from simcse.augment.tokens import MaskedLMFiller, mlm_positions, token_cutoff, token_shuffle
from simcse.augment.words import crop, synonym_replacement, word_deletion, word_repetition

__all__ = [
    "KINDS",
    "MaskedLMFiller",
    "ViewSpec",
    "crop",
    "mlm_positions",
    "parse_view",
    "synonym_replacement",
    "token_cutoff",
    "token_shuffle",
    "word_deletion",
    "word_repetition",
]
