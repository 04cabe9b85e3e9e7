"""Views made per step (simcse/data/views.py): the same on 1 and 2 processes and after a resume, next-sentence
positives, word-level views re-tokenized from the kept text, and the view configurations refused at start."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from simcse.augment import crop, token_shuffle
from simcse.config import load_config
from simcse.data.cache import load_training_views
from simcse.data.loader import MapData
from simcse.data.views import AugmentedViews, view_rng
from tests.helpers.data import write_corpus


def cfg_for(model_dir, train_file, tmp_path, **kw):
    base = dict(
        model_name_or_path=model_dir, train_file=str(train_file), batch_size=8, max_seq_len=24,
        output_dir=str(tmp_path / "run"), data_cache_dir=str(tmp_path / "cache"), seed=5,
    )  # fmt: skip
    return load_config(None, {**base, **kw})


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def rows_of(batch: dict, views: int = 2) -> list[list[tuple[int, ...]]]:
    """``[view][row]``: each row's attended token ids (padding dropped)."""
    n = batch["input_ids"].shape[0] // views
    ids, mask = batch["input_ids"].tolist(), batch["attention_mask"].tolist()
    rows = [tuple(t for t, m in zip(i, k) if m) for i, k in zip(ids, mask)]
    return [rows[v * n : (v + 1) * n] for v in range(views)]


def make(cfg, tokenizer, world_size=1, rank=0):
    return MapData(
        AugmentedViews(load_training_views(cfg, tokenizer, verbose=False), cfg, tokenizer), cfg, rank, world_size
    )


def test_views_are_the_same_on_one_and_two_processes_and_after_a_resume(tiny_model_dir, tokenizer, tmp_path):
    write_corpus(tmp_path / "c.txt", n=80)
    kw = dict(views="word_deletion:0.3,token_shuffle", positive="next3")
    one = make(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, batch_size=8, **kw), tokenizer)
    halves = [make(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, batch_size=4, **kw), tokenizer, 2, r)
              for r in (0, 1)]  # fmt: skip
    for step in range(0, 12):
        whole = rows_of(one.views.collate(one.schedule.rows(step, 0), step))
        parts = [rows_of(h.views.collate(h.schedule.rows(step, r), step)) for r, h in enumerate(halves)]
        assert whole == [parts[0][v] + parts[1][v] for v in range(2)], step
    # a resumed run (a fresh loader, from step 5, with loader workers) makes the same views
    fresh = make(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, batch_size=4, dataloader_workers=2, **kw),
                 tokenizer, 2, 1)  # fmt: skip
    resumed = list(fresh.batches(5, 9, torch.device("cpu")))
    for step, batch in zip(range(5, 9), resumed):
        assert rows_of(batch) == rows_of(halves[1].views.collate(halves[1].schedule.rows(step, 1), step))
    # the views change with the step (an example seen again in another epoch is augmented anew)
    rows = one.schedule.rows(0, 0)
    assert rows_of(one.views.collate(rows, 0)) != rows_of(one.views.collate(rows, 1))


def test_word_views_retokenize_the_augmented_text_token_views_change_the_ids(tiny_model_dir, tokenizer, tmp_path):
    lines = write_corpus(tmp_path / "c.txt", n=40)
    cfg = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, views="crop:0.3,token_shuffle")
    data = make(cfg, tokenizer)
    rows, step = [int(r) for r in data.schedule.rows(2, 0)], 2
    views = rows_of(data.views.collate(rows, step))
    special = frozenset(tokenizer.all_special_ids)
    for j, r in enumerate(rows):
        cropped = " ".join(crop(lines[r].split(), 0.3, view_rng(cfg.seed, step, r, 0)))
        assert views[0][j] == tuple(tokenizer(cropped, truncation=True, max_length=24)["input_ids"])
        plain = tokenizer(lines[r], truncation=True, max_length=24)["input_ids"]
        assert views[1][j] == tuple(token_shuffle(plain, special, view_rng(cfg.seed, step, r, 1)))


def test_next_sentence_positives_are_the_following_lines(tiny_model_dir, tokenizer, tmp_path):
    lines = write_corpus(tmp_path / "c.txt", n=40)
    encode = [tuple(tokenizer(line, truncation=True, max_length=24)["input_ids"]) for line in lines]
    data = make(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, positive="next"), tokenizer)
    assert len(data.views) == 39  # the last line has no next one: never an anchor
    rows = [int(r) for r in data.schedule.rows(0, 0)]
    anchors, positives = rows_of(data.views.collate(rows, 0))
    assert list(anchors) == [encode[r] for r in rows] and list(positives) == [encode[r + 1] for r in rows]
    three = make(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, positive="next3"), tokenizer)
    gaps = [p - r for step in range(4) for r, p in zip(rows, three.views.partners(rows, step))]
    assert set(gaps) == {1, 2, 3}  # one of the next three lines, drawn
    assert three.views.partners([38], 0)[0] == 39  # never past the last line


def test_token_cutoff_rows_give_the_same_embeddings_grouped_by_length(tiny_model_dir, tokenizer, tmp_path):
    from simcse import Encoder
    from simcse.train.model import grouped_forward

    write_corpus(tmp_path / "c.txt", n=40)
    data = make(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, views="none,token_cutoff:0.3"), tokenizer)
    batch = data.views.collate(data.schedule.rows(0, 0), 0)
    mask = batch["attention_mask"][8:]
    assert ((mask[:, 1:] - mask[:, :-1]) > 0).any()  # holes inside rows: hidden tokens
    encoder = Encoder.from_pretrained(tiny_model_dir, pooler="avg").eval()
    torch.testing.assert_close(
        grouped_forward(encoder, batch, 3), grouped_forward(encoder, batch, 0), atol=1e-5, rtol=0
    )


REFUSED = [
    (dict(views="none,crop:0.1", mode="pairs", train_file="x.csv"), "mode is pairs"),
    (dict(views="none,crop:0.1", streaming=True, max_steps=5), "streaming: false"),
    (dict(views="none,delete_one_word", objective="contrastive"), "needs labelled pairs"),
    (dict(positive="next", same_dropout_mask=True), "same_dropout_mask"),
    (dict(views="none,mlm", grad_cache_chunk_size=4), "grad_cache_chunk_size"),
    (dict(two_encoders=True, objective="byol"), "momentum encoder already"),
    (dict(two_encoders=True, objective="moco"), "momentum encoder already"),
    (dict(views="none,none,crop:0.1"), "2 views"),
    (dict(views="token_shuffle,none", prompt="query: "), "token-level views"),
    (dict(augment_model="x"), "mlm views only"),
    (dict(views="none,crop"), "needs a rate"),
    (dict(views="none,crop:0.1", datasets=[{"train_file": "a.txt"}, {"train_file": "b.txt"}]), "not with datasets"),
    (dict(positive="next", guide_model="guide"), "guide_model scores"),
]


@pytest.mark.parametrize(("overrides", "message"), REFUSED)
def test_view_configurations_an_objective_cannot_use_are_refused_at_start(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


@pytest.mark.parametrize("objective", ["infonce", "nt_xent", "byol", "barlow_twins", "swav", "simsiam", "moco"])
def test_every_two_view_objective_takes_views(objective):
    cfg = load_config(None, dict(objective=objective, views="crop:0.1,synonym", positive="next3", batch_size=8))
    assert cfg.augments


def test_two_encoders_embed_each_side_with_its_own_weights(tiny_model_dir, tokenizer, tmp_path):
    from simcse.train.model import build_model

    write_corpus(tmp_path / "c.txt", n=40)
    cfg = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, two_encoders=True, pooler="avg", dropout=0.0)
    model = build_model(cfg).eval()
    assert model.second is not None
    ours = {id(p) for p in model.encoder.parameters()}
    assert not ours & {id(p) for p in model.second.parameters()}  # separate weights
    batch = load_training_views(cfg, tokenizer, verbose=False).collate(list(range(8)))
    before = model(**batch)
    with torch.no_grad():
        for p in model.second.parameters():
            p.add_(0.1)
    after = model(**batch)
    torch.testing.assert_close(after[:8], before[:8])  # the first side: the encoder, untouched
    assert (after[8:] - before[8:]).abs().max() > 1e-3  # the second side: the copy
    np.testing.assert_allclose(before[:8].detach().numpy(), before[8:].detach().numpy(), atol=1e-5)  # same start
