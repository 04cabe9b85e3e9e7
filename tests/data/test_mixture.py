"""Several sources in one run: each batch from one source, the stated proportions, exact resume, per-source data.

References: a tally of the schedule's own choices (proportions), the single-source run's batches (each
source's batches are the ones a run of its config alone would take), and a run restarted at a step.
"""

from __future__ import annotations

import collections
import dataclasses
from types import SimpleNamespace

import pytest
import torch

from simcse.config.sources import source_configs
from simcse.data.mixture import MixedData, SourceSchedule
from simcse.train.prepared import open_training_data
from tests.helpers.data import cfg_for, write_corpus, write_triplets

CPU = torch.device("cpu")


def _acc(rank: int = 0, world: int = 1) -> SimpleNamespace:
    return SimpleNamespace(process_index=rank, num_processes=world, is_main_process=rank == 0,
                           is_local_main_process=rank == 0)  # fmt: skip


@pytest.mark.parametrize("rule", ["proportional", "round_robin"])
def test_the_schedule_keeps_the_proportions_and_counts_each_sources_steps(rule):
    batches = [6, 3, 1]
    schedule = SourceSchedule(batches, rule, seed=7)
    picks = [schedule(s) for s in range(30)]
    for source in range(3):  # each source's own steps are consecutive: 0, 1, 2, ...
        assert [k for i, k in picks if i == source] == list(range(sum(i == source for i, _ in picks)))
    tally = collections.Counter(i for i, _ in picks)
    if rule == "proportional":  # every pass of 10 steps: 6, 3 and 1
        assert [tally[i] for i in range(3)] == [18, 9, 3]
        assert [i for i, _ in picks[:10]] != [i for i, _ in picks[10:20]]  # each pass shuffled with its own seed
    else:
        assert [i for i, _ in picks[:6]] == [0, 1, 2, 0, 1, 2]
    for steps in (0, 1, 9, 10, 17, 30):
        assert schedule.counts(steps) == [sum(i == s for i, _ in picks[:steps]) for s in range(3)]
    assert SourceSchedule(batches, rule, seed=7)(23) == picks[23]  # a function of the step: exact resume


def _two_sources(tiny_model_dir, tmp_path, rule="proportional", **kw):
    write_corpus(tmp_path / "c.txt", n=64)
    write_triplets(tmp_path / "t.csv", n=32)
    sources = [{"name": "wiki", "train_file": str(tmp_path / "c.txt"), "mode": "unsup"},
               {"name": "nli", "train_file": str(tmp_path / "t.csv"), "mode": "triplets", **kw}]  # fmt: skip
    return cfg_for(tiny_model_dir, str(tmp_path / "c.txt"), tmp_path, batch_size=4, datasets=sources,
                   dataset_sampling=rule, data_cache_dir=str(tmp_path / "cache"), max_steps=40)  # fmt: skip


def _rows(batch):
    return batch["input_ids"].shape[0]


def _texts(batch, start, n):
    """Rows ``start .. start + n`` as token lists without padding (each process pads to its own longest)."""
    ids, mask = batch["input_ids"][start : start + n], batch["attention_mask"][start : start + n]
    return [row[: int(m.sum())].tolist() for row, m in zip(ids, mask)]


def test_each_batch_is_one_sources_own_batch_and_a_resume_continues_exactly(tiny_model_dir, tmp_path):
    from simcse.encoder import Encoder

    cfg = _two_sources(tiny_model_dir, tmp_path)
    tokenizer = Encoder.from_pretrained(tiny_model_dir).tokenizer
    data = open_training_data(cfg, tokenizer, _acc())
    assert isinstance(data, MixedData) and data.steps_per_epoch == 16 + 8  # one pass: 64/4 + 32/4 batches
    full = list(data.batches(0, 24, CPU))
    alone = [open_training_data(c, tokenizer, _acc()) for c in source_configs(cfg)]  # each source's own run
    own = [list(a.batches(0, n, CPU)) for a, n in zip(alone, (16, 8))]
    for step, batch in enumerate(full):
        source, k = data.schedule(step)
        assert _rows(batch) == 4 * (2, 3)[source]  # unsup: 2 views, triplets: 3; never mixed
        assert all(torch.equal(batch[key], own[source][k][key]) for key in batch)
    assert data.state(24)["sources"]["wiki"]["batches"] == 16 and data.state(24)["sources"]["nli"]["batches"] == 8
    resumed = list(open_training_data(cfg, tokenizer, _acc()).batches(9, 24, CPU))
    assert all(torch.equal(a["input_ids"], b["input_ids"]) for a, b in zip(resumed, full[9:]))


def test_two_processes_split_each_global_batch_of_the_same_source(tiny_model_dir, tmp_path):
    from simcse.encoder import Encoder

    cfg = _two_sources(tiny_model_dir, tmp_path)
    tokenizer = Encoder.from_pretrained(tiny_model_dir).tokenizer
    one = list(open_training_data(cfg, tokenizer, _acc()).batches(0, 6, CPU))
    half = dataclasses.replace(cfg, batch_size=2)
    ranks = [list(open_training_data(half, tokenizer, _acc(r, 2)).batches(0, 6, CPU)) for r in (0, 1)]
    for step, whole in enumerate(one):
        views = _rows(whole) // 4
        assert _rows(ranks[0][step]) == 2 * views  # both processes read the same source at every step
        for v in range(views):  # view v of the global batch = rank 0's rows, then rank 1's
            got = _texts(ranks[0][step], 2 * v, 2) + _texts(ranks[1][step], 2 * v, 2)
            assert got == _texts(whole, 4 * v, 4)


def test_a_streamed_source_beside_a_cached_one_round_robin(tiny_model_dir, tmp_path):
    from simcse.encoder import Encoder

    cfg = _two_sources(tiny_model_dir, tmp_path, rule="round_robin", streaming=True)
    data = open_training_data(cfg, Encoder.from_pretrained(tiny_model_dir).tokenizer, _acc())
    batches = list(data.batches(0, 6, CPU))
    assert [_rows(b) for b in batches] == [8, 12] * 3
    assert data.state(6)["sources"]["nli"]["stream"]["examples_per_process"] == 3 * 4


def test_a_single_source_list_trains_on_the_plain_configs_batches(tiny_model_dir, tmp_path):
    from simcse.encoder import Encoder

    write_corpus(tmp_path / "c.txt", n=64)
    plain = cfg_for(tiny_model_dir, str(tmp_path / "c.txt"), tmp_path, batch_size=4)
    listed = cfg_for(tiny_model_dir, "elsewhere.txt", tmp_path, batch_size=4,
                     datasets=[{"train_file": str(tmp_path / "c.txt")}])  # fmt: skip
    tokenizer = Encoder.from_pretrained(tiny_model_dir).tokenizer
    a = list(open_training_data(plain, tokenizer, _acc()).batches(0, 16, CPU))
    b = list(open_training_data(listed, tokenizer, _acc()).batches(0, 16, CPU))
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b))


@pytest.mark.parametrize(
    ("sources", "rule", "message"),
    [
        ([{"train_file": "a.txt", "colums": ["x"]}], "proportional", r"datasets\[0\]: unknown key\(s\) colums"),
        ([{"train_file": "a.txt", "mode": "pair"}], "proportional", r"datasets\[0\]: .*mode"),
        ([{"train_file": "a.txt", "streaming": True}], "proportional", "a streaming source has none; use round_robin"),
        ([{"train_file": "a/x.txt"}, {"train_file": "b/x.txt"}], "round_robin", "several sources are named x.txt"),
        ([], "proportional", "at least one source"),
    ],
)
def test_bad_sources_are_refused_in_one_line(tiny_model_dir, tmp_path, sources, rule, message):
    with pytest.raises(ValueError, match=message):
        cfg_for(tiny_model_dir, "x.txt", tmp_path, datasets=sources, dataset_sampling=rule, max_steps=10)


def test_datasets_and_matryoshka_read_from_yaml_and_the_command_line(tmp_path):
    from simcse.config import load_config

    path = tmp_path / "c.yaml"
    path.write_text("datasets:\n  - {train_file: a.txt, mode: unsup}\n  - {dataset_name: org/qa, mode: pairs}\n")
    cfg = load_config(path, {"matryoshka_dims": "64,32", "matryoshka_weights": "1,0.5"})
    assert cfg.datasets[1] == {"dataset_name": "org/qa", "mode": "pairs"}
    assert cfg.matryoshka_dims == (64, 32) and cfg.matryoshka_weights == (1.0, 0.5)
    with pytest.raises(ValueError, match="expected integers"):
        load_config(None, {"matryoshka_dims": "64,3.5"})
