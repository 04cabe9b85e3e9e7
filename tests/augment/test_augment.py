"""Each augmentation on fixed inputs against a hand-written expectation (and WordNet / the masked LM itself)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from simcse.augment import (
    MaskedLMFiller,
    crop,
    mlm_positions,
    parse_view,
    synonym_replacement,
    token_cutoff,
    token_shuffle,
    word_deletion,
    word_repetition,
)

WORDS = "w0 w1 w2 w3 w4 w5 w6 w7 w8 w9".split()


def rngs(n: int = 20):
    return [np.random.default_rng(seed) for seed in range(n)]


def test_crop_removes_one_contiguous_span_of_the_fraction():
    starts = set()
    for rate, gone in ((0.1, 1), (0.2, 2), (0.3, 3)):
        for rng in rngs():
            out = crop(WORDS, rate, rng)
            assert len(out) == 10 - gone
            start = next(i for i, (a, b) in enumerate(zip([*out, None], WORDS)) if a != b)  # first word missing
            assert out == WORDS[:start] + WORDS[start + gone :]  # the removed words are one span
            starts.add(start)
    assert len(starts) > 3  # the span's place is drawn
    assert crop(["only"], 0.3, np.random.default_rng(0)) == ["only"]  # a sentence keeps a word


def test_word_deletion_removes_the_fraction_keeping_the_order():
    for rate, gone in ((0.1, 1), (0.2, 2), (0.3, 3), (None, 1)):  # None: delete one word
        for rng in rngs():
            out = word_deletion(WORDS, rate, rng)
            assert len(out) == 10 - gone and out == [w for w in WORDS if w in out]
    assert word_deletion(["one"], None, np.random.default_rng(0)) == ["one"]


def test_word_repetition_writes_the_fraction_twice_in_place():
    out = word_repetition(WORDS, 0.2, np.random.default_rng(1))
    assert len(out) == 12
    doubled = [w for w in WORDS if out.count(w) == 2]
    assert len(doubled) == 2 and all(out[out.index(w) + 1] == w for w in doubled)
    assert [w for i, w in enumerate(out) if i == 0 or out[i - 1] != w] == WORDS


def test_view_specs_parse_and_refuse():
    assert (parse_view("crop:0.2").kind, parse_view("crop:0.2").rate) == ("crop", 0.2)
    assert parse_view("mlm").rate == 0.15 and parse_view("synonym").rate is None
    for bad, message in (("crop", "needs a rate"), ("blur", "unknown kind"), ("crop:1.5", r"in \(0, 1\)"),
                         ("token_shuffle:0.1", "takes no rate"), ("crop:x", "not a number")):  # fmt: skip
        with pytest.raises(ValueError, match=message):
            parse_view(bad)


@pytest.fixture(scope="module")
def wordnet(shared_data):
    from simcse.augment.wordnet import synonym_lookup

    return synonym_lookup(shared_data)


@pytest.mark.slow  # loading WordNet: ~8 s
def test_synonyms_come_from_wordnets_synsets_of_the_word(wordnet, shared_data):
    import nltk
    from nltk.corpus import wordnet as wn

    nltk.data.path.append(os.path.join(shared_data, "nltk_data"))
    words = "The quick brown fox jumps over the lazy dog.".split()
    seen = set()
    for rng in rngs(30):
        out = synonym_replacement(words, None, rng, wordnet)
        changed = [i for i, (a, b) in enumerate(zip(words, out)) if a != b]
        assert len(changed) == 1 and len(out) == len(words)
        i = changed[0]
        core = words[i].strip(".").lower()
        lemmas = {n.replace("_", " ").lower() for s in wn.synsets(core) for n in s.lemma_names()} - {core}
        assert out[i].rstrip(".").lower() in lemmas and out[i].endswith(".") == words[i].endswith(".")
        assert core != "the"  # stopwords are never replaced
        seen.add(i)
    assert len(seen) >= 3  # the word replaced is drawn
    assert synonym_replacement(["xqzv", "the"], None, np.random.default_rng(0), wordnet) == ["xqzv", "the"]


SPECIAL = frozenset({101, 102})
IDS = [101, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 102]


def test_token_shuffle_permutes_the_tokens_between_the_special_ones():
    out = token_shuffle(IDS, SPECIAL, np.random.default_rng(0))
    assert out[0] == 101 and out[-1] == 102 and sorted(out[1:-1]) == IDS[1:-1] and out != IDS


def test_token_cutoff_hides_the_fraction_never_a_special_token():
    for rng in rngs():
        mask = token_cutoff(IDS, SPECIAL, 0.2, rng)
        assert len(mask) == len(IDS) and mask.count(0) == 2 and mask[0] == mask[-1] == 1


@pytest.fixture(scope="module")
def tiny_mlm_dir(tmp_path_factory):
    from tests.helpers.models import build_tiny_mlm_dir

    return build_tiny_mlm_dir(str(tmp_path_factory.mktemp("tiny_mlm")))


def test_mlm_fills_the_masks_with_the_models_top_prediction(tiny_mlm_dir):
    from transformers import AutoTokenizer, BertForMaskedLM

    tok = AutoTokenizer.from_pretrained(tiny_mlm_dir)
    special = frozenset(tok.all_special_ids)
    ids = tok("a man is playing the guitar in the park")["input_ids"]
    where = mlm_positions(ids, special, 0.3, np.random.default_rng(3))
    assert len(where) == round(0.3 * (len(ids) - 2)) and not {0, len(ids) - 1} & set(where)
    out = MaskedLMFiller(tiny_mlm_dir, tok.mask_token_id, special)(ids, where)
    model = BertForMaskedLM.from_pretrained(tiny_mlm_dir).eval()
    masked = torch.tensor([[tok.mask_token_id if i in where else t for i, t in enumerate(ids)]])
    with torch.no_grad():
        logits = model(input_ids=masked).logits[0]
    for i, t in enumerate(ids):
        if i not in where:
            assert out[i] == t
            continue
        ranked = [int(x) for x in logits[i].argsort(descending=True) if int(x) not in special and int(x) != t]
        assert out[i] == ranked[0]  # the top prediction that is a change and not a special token


def test_mlm_view_without_a_masked_lm_head_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="no masked-LM head"):
        _ = MaskedLMFiller(tiny_model_dir, 4, frozenset()).model


def test_mlm_fill_of_a_sentence_does_not_depend_on_its_batch(tiny_mlm_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_mlm_dir)
    special = frozenset(tok.all_special_ids)
    texts = ["a man is playing the guitar", "the old dog runs in the park", "a child eats bread", "red car"] * 5
    ids = [tok(t)["input_ids"] for t in texts]
    where = [mlm_positions(x, special, 0.3, np.random.default_rng(i)) for i, x in enumerate(ids)]
    filler = MaskedLMFiller(tiny_mlm_dir, tok.mask_token_id, special, width=16, chunk=4)
    together = filler.fill(ids, where)  # 20 sentences: 5 chunks
    alone = [filler(x, p) for x, p in zip(ids, where)]
    split = filler.fill(ids[:7], where[:7]) + filler.fill(ids[7:], where[7:])  # another split: other chunks
    assert together == alone == split
    few = MaskedLMFiller(tiny_mlm_dir, tok.mask_token_id, special, width=16, chunk=4, max_masks=max(map(len, where)))
    assert few.fill(ids, where) == together  # the head on the masked positions only: the same fill
