"""WordNet synonyms through NLTK, found offline in ``$NLTK_DATA`` or ``<data dir>/nltk_data``.

Online users get the data with NLTK's downloader (``python -m nltk.downloader wordnet``); the shared
data folder holds WordNet 3.0 in NLTK's layout (``nltk_data/corpora/wordnet``).
"""

from __future__ import annotations

import functools
import os

from simcse.data_dir import resolve_data_dir


def _wordnet(data_dir: str | None) -> object:
    try:
        import nltk
        from nltk.corpus import wordnet
    except ImportError as err:
        hint = "pip install 'simcse-toolkit[augment]' (or pip install nltk)"
        raise ImportError(f"synonym views need NLTK: {hint}") from err
    local = os.path.join(resolve_data_dir(data_dir), "nltk_data")
    if os.path.isdir(local) and local not in nltk.data.path:
        nltk.data.path.append(local)
    try:
        wordnet.ensure_loaded()
    except LookupError:
        raise LookupError(
            f"synonym views need WordNet: set NLTK_DATA, put it in {local}, or run "
            "python -c \"import nltk; nltk.download('wordnet')\""
        ) from None
    return wordnet


@functools.lru_cache(maxsize=4)
def synonym_lookup(data_dir: str | None = None) -> functools._lru_cache_wrapper:
    """A function ``word -> [synonyms]`` over WordNet (memoised per word).

    A word's synonyms are the lemma names of every synset of the word (``_`` written as a space),
    lower-cased, in WordNet's order, without the word itself and without repeats.
    """
    wordnet = _wordnet(data_dir)

    @functools.lru_cache(maxsize=200_000)
    def synonyms(word: str) -> list[str]:
        found = (lemma.replace("_", " ").lower() for s in wordnet.synsets(word) for lemma in s.lemma_names())
        return [w for w in dict.fromkeys(found) if w != word.lower()]

    return synonyms
