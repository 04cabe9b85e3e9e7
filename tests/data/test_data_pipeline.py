"""The Arrow data path: formats, the tokenized cache, batches, no_duplicates, the loader, streaming.

References are independent of the code under test: a batch is checked against the tokenizer called
on the sentences and padded by hand (as the pre-Arrow code did), a cache against a rebuild, the
no_duplicates plan against the texts themselves, and a 2-process split against the 1-process batch.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from simcse.config import load_config
from simcse.data.cache import FINGERPRINTS_DIR, file_fingerprint, load_training_views
from simcse.data.loader import MapData
from simcse.data.readers import DataError
from simcse.data.sampler import BatchSchedule
from simcse.data.stream import StreamData
from simcse.train import train
from tests.helpers.data import write_corpus, write_triplets


def cfg_for(model_dir, train_file, tmp_path, **kw):
    base = dict(
        model_name_or_path=model_dir, train_file=str(train_file), batch_size=8, max_seq_len=16,
        output_dir=str(tmp_path / "run"), eval_steps=1000, learning_rate=1e-3, data_cache_dir=str(tmp_path / "cache"),
    )  # fmt: skip
    return load_config(None, {**base, **kw})


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def reference_collate(tokenizer, views: list[list[str]], max_seq_len: int) -> dict[str, torch.Tensor]:
    """The pre-Arrow collation: tokenize each view's sentences, pad every row to the batch's longest."""
    encs = [tokenizer(v, truncation=True, max_length=max_seq_len, padding=False) for v in views]
    keys = [k for k in tokenizer.model_input_names if k in encs[0]]
    seqs = {k: [ids for enc in encs for ids in enc[k]] for k in keys}
    width = max(len(s) for s in seqs["input_ids"])
    out = {}
    for key, values in seqs.items():
        arr = np.full((len(values), width), tokenizer.pad_token_id if key == "input_ids" else 0, dtype=np.int64)
        for r, s in enumerate(values):
            arr[r, : len(s)] = s
        out[key] = torch.from_numpy(arr)
    return out


def assert_batches_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]), k


def test_unsup_batch_equals_the_tokenizer_padded_by_hand(tiny_model_dir, tokenizer, tmp_path):
    lines = write_corpus(tmp_path / "c.txt", n=40)
    views = load_training_views(cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path), tokenizer, verbose=False)
    rows = [5, 0, 39, 12, 7]
    picked = [lines[r] for r in rows]
    assert_batches_equal(views.collate(rows), reference_collate(tokenizer, [picked, picked], 16))


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet"])
def test_every_format_gives_the_same_triplet_batches(tiny_model_dir, tokenizer, tmp_path, fmt):
    import csv

    import pyarrow as pa
    import pyarrow.parquet as pq

    write_triplets(tmp_path / "t.csv", n=24)
    with open(tmp_path / "t.csv", encoding="utf-8", newline="") as f:
        records = list(csv.DictReader(f))
    path = tmp_path / f"t.{fmt}"
    if fmt == "tsv":
        path.write_text("sent0\tsent1\thard_neg\n" + "".join("\t".join(r.values()) + "\n" for r in records))
    elif fmt == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    views = load_training_views(cfg_for(tiny_model_dir, path, tmp_path, mode="triplets"), tokenizer, verbose=False)
    rows = [3, 1, 20]
    expected = [[records[r][c] for r in rows] for c in ("sent0", "sent1", "hard_neg")]
    assert_batches_equal(views.collate(rows), reference_collate(tokenizer, expected, 16))


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("d.jsonl", '{"sent0": "a man", "sent1": "a dog"}\n{"sent0": "x"\n', r"{path}:2: not valid JSON"),
        ("d.jsonl", '{"sent0": "a man", "sent1": "a dog"}\n\n{"sent0": "x"}\n', r"{path}:3: lacks key\(s\) sent1$"),
        ("d.jsonl", '{"sent0": "a man", "sent1": 3}\n', r"{path}:1: expected text, found sent1=int"),
        ("d.jsonl", '["a", "b"]\n', r"{path}:1: expected a JSON object, found list"),
    ],
)
def test_bad_jsonl_rows_are_named_by_file_and_line(tiny_model_dir, tokenizer, tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(DataError, match=message.format(path=re.escape(str(path)))):
        load_training_views(cfg_for(tiny_model_dir, path, tmp_path, mode="pairs"), tokenizer, verbose=False)


def test_cache_is_built_once_reused_and_rebuilt_when_the_source_changes(tiny_model_dir, tokenizer, tmp_path, caplog):
    path = tmp_path / "c.txt"
    write_corpus(path, n=40)
    cfg = cfg_for(tiny_model_dir, path, tmp_path)
    with caplog.at_level("INFO", logger="simcse"):
        first = load_training_views(cfg, tokenizer)
        second = load_training_views(cfg, tokenizer)
    assert caplog.text.count("tokenized ") == 1 and first.folder == second.folder
    kept = sorted(os.listdir(tmp_path / "cache"))  # no temporary folder left; the memo of the file's content hash
    assert kept == sorted([os.path.basename(first.folder), FINGERPRINTS_DIR])
    assert second.data.cache_files and second.data.cache_files[0]["filename"].startswith(first.folder)  # mmapped
    write_corpus(path, n=48, seed=1)  # new content: a new cache, the new rows
    third = load_training_views(cfg, tokenizer, verbose=False)
    assert len(third) == 48 and third.folder != first.folder


def test_copies_of_the_data_at_other_paths_share_one_cache(tiny_model_dir, tokenizer, tmp_path, caplog):
    """A cluster's machines each hold their own copy of the data (another path, another mtime): the cache is
    keyed by the content, so a cache built from one copy serves the others; a copy that differs gets its own."""
    import hashlib
    import shutil

    (tmp_path / "node0").mkdir(), (tmp_path / "node1").mkdir()
    lines = write_corpus(tmp_path / "node0" / "c.txt", n=40)
    shutil.copy(tmp_path / "node0" / "c.txt", tmp_path / "node1" / "c.txt")  # copy: a new mtime, a new path
    os.utime(tmp_path / "node1" / "c.txt", (1, 1))
    cfgs = [cfg_for(tiny_model_dir, tmp_path / f"node{i}" / "c.txt", tmp_path) for i in (0, 1)]
    with caplog.at_level("INFO", logger="simcse"):
        first, second = (load_training_views(cfg, tokenizer) for cfg in cfgs)
    assert caplog.text.count("tokenized ") == 1 and first.folder == second.folder
    expected = hashlib.sha256(("\n".join(lines) + "\n").encode()).hexdigest()  # an independent hash of the bytes
    assert file_fingerprint(str(tmp_path / "node1" / "c.txt")) == f"sha256:{expected}"
    (tmp_path / "node1" / "c.txt").write_text("\n".join(lines[:-1]) + "\n")  # this copy now differs
    assert load_training_views(cfgs[1], tokenizer, verbose=False).folder != first.folder


def test_a_build_interrupted_midway_is_never_used(tiny_model_dir, tokenizer, tmp_path):
    """A tokenizer that fails part-way (as a kill would stop it): no cache folder; the next run builds it."""
    path = tmp_path / "c.txt"
    write_corpus(path, n=3000)
    cfg = cfg_for(tiny_model_dir, path, tmp_path)
    calls = []

    class Failing:
        def __init__(self, tok):
            self.tok = tok

        def __getattr__(self, name):
            return getattr(self.tok, name)

        def __call__(self, texts, **kw):
            calls.append(len(texts))
            if len(calls) == 3:  # the probe, then batch 1 of 3 written, then batch 2 fails
                raise KeyboardInterrupt
            return self.tok(texts, **kw)

    with pytest.raises(KeyboardInterrupt):
        load_training_views(cfg, Failing(tokenizer), verbose=False)
    assert os.listdir(tmp_path / "cache") == [FINGERPRINTS_DIR]  # nothing half-written under a name a run would use
    views = load_training_views(cfg, tokenizer, verbose=False)
    assert len(views) == 3000


def test_no_duplicates_keeps_texts_apart_identically_on_one_and_two_processes(tiny_model_dir, tokenizer, tmp_path):
    # as in NLI files: each premise on 3 rows (with other hypotheses), and some hypotheses repeated too
    rng = np.random.default_rng(0)
    premises = [f"the man {w} plays {k}" for w in "abcdefghijklmnopqrst" for k in range(3)]  # 60
    pairs = [(p, f"a dog {w} runs {rng.integers(0, 150)}") for p in premises for w in "xyz"]  # 180 rows
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    path = tmp_path / "repeats.csv"
    path.write_text("sent0,sent1\n" + "".join(f"{a},{b}\n" for a, b in pairs))
    views = load_training_views(cfg_for(tiny_model_dir, path, tmp_path, mode="pairs"), tokenizer, verbose=False)
    hashes = views.text_hashes()
    one = BatchSchedule(len(views), 8, 1, seed=3, text_hashes=hashes)
    two = BatchSchedule(len(views), 4, 2, seed=3, text_hashes=hashes)
    for step in range(one.steps_per_epoch * 2):
        rows = one.rows(step, 0)
        assert np.array_equal(rows, np.concatenate([two.rows(step, 0), two.rows(step, 1)]))
        if one.duplicates[step // one.steps_per_epoch][1] == 0:  # the data allowed it: no text twice
            used = [t for r in rows for t in set(pairs[r])]
            assert len(used) == len(set(used)), step
    for epoch in (0, 1):  # each epoch's rows are distinct (a row is used at most once)
        plan = one.plan(epoch)
        assert len(set(plan.ravel().tolist())) == plan.size
    report = one.duplicate_report()
    assert report["batches_with_duplicates_before"] > 0 and report["batches_with_duplicates_after"] == 0
    plain = BatchSchedule(len(views), 8, 1, seed=3)  # off: the paper's batches, unchanged
    assert np.array_equal(plain.rows(0, 0), np.random.default_rng([3, 0]).permutation(180)[:8])


def test_no_duplicates_is_reported_by_a_run(tiny_model_dir, tmp_path, small_dev_data):
    path = tmp_path / "repeats.txt"
    path.write_text("".join(f"the man {w} plays\n" for w in "abcdefghij" * 8))  # 10 texts, 8 times each
    cfg = cfg_for(tiny_model_dir, path, tmp_path, no_duplicates=True, max_steps=6, data_dir=small_dev_data)
    state = train(cfg)
    assert state["no_duplicates"]["batches_with_duplicates_before"] == 10  # every plain batch of 8 repeats one
    assert state["no_duplicates"]["batches_with_duplicates_after"] == 0


def test_loader_workers_give_the_batches_of_the_main_thread(tiny_model_dir, tokenizer, tmp_path):
    write_corpus(tmp_path / "c.txt", n=100)
    got = {}
    for workers in (0, 2):
        cfg = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, dataloader_workers=workers, batch_size=4)
        data = MapData(load_training_views(cfg, tokenizer, verbose=False), cfg, rank=1, world_size=2)
        got[workers] = list(data.batches(3, 20, torch.device("cpu")))
        direct = [data.views.collate(data.schedule.rows(s, 1)) for s in range(3, 20)]
    assert len(got[2]) == 17
    for a, b, c in zip(got[0], got[2], direct):
        assert_batches_equal(a, c)
        assert_batches_equal(b, c)


def test_stream_split_by_process_unites_to_the_one_process_batch(tiny_model_dir, tokenizer, tmp_path):
    lines = write_corpus(tmp_path / "c.txt", n=64)
    cfg = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, streaming=True, max_steps=4, shuffle_buffer=16)
    big = load_config(None, {**{k: getattr(cfg, k) for k in ("model_name_or_path", "train_file", "max_seq_len")},
                             "streaming": True, "max_steps": 4, "shuffle_buffer": 16, "batch_size": 16})  # fmt: skip
    one = StreamData(big, tokenizer, 0, 1)
    halves = [StreamData(cfg, tokenizer, r, 2) for r in (0, 1)]
    rows_one = list(one.epoch_rows(0))
    assert sorted(r[0] for r in rows_one) == sorted(lines) and [r[0] for r in rows_one] != lines  # all, shuffled
    split = [list(h.epoch_rows(0)) for h in halves]
    assert rows_one[0::2] == split[0] and rows_one[1::2] == split[1]
    # step k's batch on 2 processes = the 1-process batch of step k (as a set of rows)
    def rows(batch, n):  # each row's tokens without its padding (a batch pads to its own longest row)
        return [tuple(ids[mask.bool()].tolist()) for ids, mask in zip(batch["input_ids"][:n], batch["attention_mask"])]

    b1 = [b for _, b in zip(range(4), one.cpu_batches(0))]
    b2 = [[b for _, b in zip(range(4), h.cpu_batches(0))] for h in halves]
    for k in range(4):
        assert set(rows(b1[k], 16)) == {r for h in (0, 1) for r in rows(b2[h][k], 8)}
    # a later start reads past the earlier rows: the same batches as from the start
    later = [b["input_ids"] for _, b in zip(range(3), halves[1].cpu_batches(5))]  # crosses into epoch 1
    from_start = [b["input_ids"] for _, b in zip(range(8), halves[1].cpu_batches(0))][5:]
    assert all(torch.equal(a, b) for a, b in zip(later, from_start))


def test_the_stream_reader_has_ended_when_the_batches_are_closed(tiny_model_dir, tokenizer, tmp_path):
    """A reader thread left running can be inside native code (Arrow, the tokenizer) while the interpreter
    exits, which aborts the process; closing the batches (the end of training) waits for it to end."""
    write_corpus(tmp_path / "c.txt", n=64)
    cfg = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, streaming=True, max_steps=4, shuffle_buffer=16)
    batches = StreamData(cfg, tokenizer, 0, 1).batches(0, 4, torch.device("cpu"))
    next(batches)
    time.sleep(0.3)  # the reader fills its queue (4 batches ahead) and waits for room
    readers = [t for t in threading.enumerate() if t.name == "simcse-stream"]
    assert len(readers) == 1 and readers[0].is_alive()
    batches.close()
    assert not readers[0].is_alive()


def test_streaming_trains_and_resumes_to_the_uninterrupted_weights(tiny_model_dir, tmp_path, small_dev_data):
    write_corpus(tmp_path / "c.txt", n=40)
    kw = dict(streaming=True, shuffle_buffer=8, max_steps=8, eval_steps=4, data_dir=small_dev_data, seed=5)
    straight = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, output_dir=str(tmp_path / "a"), **kw)
    state = train(straight)
    assert state["step"] == 8 and state["stream"]["examples_per_process"] == 64  # crossed into a 2nd epoch
    broken = cfg_for(tiny_model_dir, tmp_path / "c.txt", tmp_path, output_dir=str(tmp_path / "b"), **kw)
    train(broken, stop_after=4)
    with open(tmp_path / "b" / "checkpoints" / "step-00000004" / "trainer_state.json", encoding="utf-8") as f:
        assert json.load(f)["stream"]["examples_per_process"] == 32  # the position, saved with the checkpoint
    torch.manual_seed(1)
    train(broken, resume=True)
    from safetensors.torch import load_file

    a = load_file(str(tmp_path / "a" / "checkpoints" / "step-00000008" / "model.safetensors"))
    b = load_file(str(tmp_path / "b" / "checkpoints" / "step-00000008" / "model.safetensors"))
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=1e-6, rtol=0, msg=name)


def test_streaming_bad_row_is_named_and_counted(tiny_model_dir, tmp_path, small_dev_data):
    path = tmp_path / "c.txt"
    path.write_bytes(b"".join(b"the man plays %d\n" % i for i in range(30)) + b"a \x00 b\n\n" + b"the dog\n" * 10)
    kw = dict(streaming=True, max_steps=6, data_dir=small_dev_data, shuffle_buffer=4)  # 48 rows: past line 31
    with pytest.raises(DataError, match=re.escape(f"{path}:31: contains a NUL byte")):
        train(cfg_for(tiny_model_dir, path, tmp_path, **kw))
    state = train(cfg_for(tiny_model_dir, path, tmp_path, output_dir=str(tmp_path / "r2"), on_bad_line="skip", **kw))
    assert state["data"] == {"blank_lines": 1, "bad_lines": 1, "truncated_lines": 0}


def test_streaming_config_needs_max_steps(tiny_model_dir, tmp_path):
    with pytest.raises(ValueError, match="streaming needs max_steps > 0"):
        cfg_for(tiny_model_dir, "x.txt", tmp_path, streaming=True)
