"""Corpus encode (``simcse.corpus``, ``simcse encode -o FOLDER``) in one process, and search over its shards.

References: ``Encoder.encode`` on all rows in memory (the shards must hold the same vectors, row for
row), ``top_k_cosine`` / ``QuantizedIndex`` over the whole array (the shard-by-shard search must
find the same rows), and a Python set (the bounded-memory duplicate check).
"""

from __future__ import annotations

import itertools
import json
import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from simcse.cli import main
from simcse.corpus import CorpusError, CorpusSource, EncodeOptions, ShardedEmbeddings, encode_corpus
from simcse.corpus.duplicates import find_duplicate
from simcse.quantize import QuantizedIndex, _unit, calibration_ranges, quantize_binary, quantize_int8
from simcse.search import top_k_cosine
from tests.helpers.corpus import BATCH_TOL, make_texts, read_folder


def assert_same_hits(got: list, want: list, atol: float = 1e-5) -> None:
    """The same rows in the same order; scores within ``atol``."""
    assert [[i for i, _ in h] for h in got] == [[i for i, _ in h] for h in want]
    np.testing.assert_allclose([[s for _, s in h] for h in got], [[s for _, s in h] for h in want], atol=atol)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    return make_texts(45)


@pytest.fixture(scope="module")
def text_file(texts, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.txt"
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return str(path)


@pytest.mark.parametrize("file_format", ["parquet", "npy"])
def test_shards_hold_the_in_memory_vectors_row_for_row(tiny_encoder, texts, text_file, tmp_path, file_format):
    out = tmp_path / "out"
    options = EncodeOptions(shard_size=7, file_format=file_format, batch_size=4, show_progress=False)
    manifest = encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), out, options)
    assert manifest["rows"] == 45 and [s["rows"] for s in manifest["shards"]] == [7] * 6 + [3]
    assert sorted(os.listdir(out)) == ["manifest.json"] + [
        f"shard-{k:05d}.{file_format}" for k in range(7)
    ]  # no settings, progress or temporary files left
    ids, vectors = read_folder(str(out))
    assert ids == list(range(45))
    np.testing.assert_allclose(vectors, tiny_encoder.encode(texts, batch_size=16), atol=BATCH_TOL, rtol=0)
    # each shard is one encode call: the same batches, so the same bits
    np.testing.assert_array_equal(vectors[7:14], tiny_encoder.encode(texts[7:14], batch_size=4))
    ShardedEmbeddings(out).verify()
    assert manifest["settings"]["model_revision"].startswith("sha256:")
    assert manifest["throughput"]["rows_per_process_second"] > 0


def _write_inputs(root, texts: list[str]) -> dict[str, str]:
    ids = [f"doc-{i}" for i in range(len(texts))]
    paths = {k: str(root / f"in.{k}") for k in ("csv", "jsonl", "parquet")}
    with open(paths["csv"], "w", encoding="utf-8", newline="") as f:
        import csv

        writer = csv.writer(f)
        writer.writerow(["doc_id", "body"])
        writer.writerows(zip(ids, texts))
    with open(paths["jsonl"], "w", encoding="utf-8") as f:
        f.writelines(json.dumps({"doc_id": i, "body": t}) + "\n" for i, t in zip(ids, texts))
    pq.write_table(pa.table({"doc_id": np.arange(100, 100 + len(texts)), "body": texts}), paths["parquet"])
    return paths


@pytest.mark.parametrize(("fmt", "file_format"), [("csv", "parquet"), ("jsonl", "npy"), ("parquet", "npy")])
def test_columns_and_ids_from_csv_jsonl_parquet(tiny_encoder, texts, tmp_path, fmt, file_format):
    texts = [*texts[:10], 'a "quoted", multi\nline text']
    path = _write_inputs(tmp_path, texts)[fmt]
    source = CorpusSource(paths=(path,), text_column="body", id_column="doc_id")
    options = EncodeOptions(shard_size=4, file_format=file_format, show_progress=False)
    encode_corpus(tiny_encoder, source, tmp_path / "out", options)
    if file_format == "npy":
        assert os.path.isfile(tmp_path / "out" / "shard-00002.ids.npy")
    ids, vectors = read_folder(str(tmp_path / "out"))
    # Parquet's integer column stays int64; other ids are text
    assert ids == (list(range(100, 111)) if fmt == "parquet" else [f"doc-{i}" for i in range(11)])
    np.testing.assert_allclose(vectors, tiny_encoder.encode(texts), atol=BATCH_TOL, rtol=0)


def test_a_dataset_folder_is_streamed_like_its_file(tiny_encoder, texts, tmp_path):
    """``--dataset`` goes through ``datasets.load_dataset(..., streaming=True)``; a local folder is a dataset too."""
    (tmp_path / "ds").mkdir()
    path = _write_inputs(tmp_path / "ds", texts[:12])["parquet"]
    for name in ("in.csv", "in.jsonl"):
        os.remove(tmp_path / "ds" / name)
    options = EncodeOptions(shard_size=5, show_progress=False)
    encode_corpus(tiny_encoder, CorpusSource(dataset=str(tmp_path / "ds"), text_column="body", id_column="doc_id"),
                  tmp_path / "hub", options)  # fmt: skip
    encode_corpus(tiny_encoder, CorpusSource(paths=(path,), text_column="body", id_column="doc_id"),
                  tmp_path / "file", options)  # fmt: skip
    hub_ids, hub_vectors = read_folder(str(tmp_path / "hub"))
    file_ids, file_vectors = read_folder(str(tmp_path / "file"))
    assert [str(i) for i in file_ids] == hub_ids  # hub ids are kept as text
    np.testing.assert_array_equal(hub_vectors, file_vectors)


def test_int8_and_binary_shards_are_the_projects_quantization(tiny_encoder, texts, text_file, tmp_path):
    emb = tiny_encoder.encode(texts, batch_size=16)
    ranges = calibration_ranges(_unit(tiny_encoder.encode(texts[:20])))  # --calibration-rows 20
    for dtype, want in (("int8", quantize_int8(_unit(emb), ranges)), ("binary", quantize_binary(emb))):
        options = EncodeOptions(shard_size=10, dtype=dtype, calibration_rows=20, show_progress=False)
        encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), tmp_path / dtype, options)
        _, codes = read_folder(str(tmp_path / dtype))
        assert codes.dtype == want.dtype and codes.shape == want.shape
        assert np.mean(codes == want) > 0.99  # a value on a bucket's edge may fall either side at 1e-6
        corpus = ShardedEmbeddings(tmp_path / dtype)
        queries = tiny_encoder.encode(texts[:5])
        index = QuantizedIndex(dtype, codes, emb.shape[1], ranges if dtype == "int8" else None)
        assert_same_hits(corpus.search(queries, top_k=4), index.search(queries, top_k=4))


def test_search_shard_by_shard_equals_search_in_memory(tiny_encoder, texts, text_file, tmp_path):
    encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), tmp_path / "f",
                  EncodeOptions(shard_size=8, file_format="npy", show_progress=False))  # fmt: skip
    corpus = ShardedEmbeddings(tmp_path / "f")
    _, vectors = read_folder(str(tmp_path / "f"))
    queries = tiny_encoder.encode(["a man plays the guitar", "red car", "the dog runs"])
    assert_same_hits(corpus.search(queries, top_k=5), top_k_cosine(queries, vectors, 5), atol=1e-6)
    # int8 codes made shard by shard (ranges from the first shard), candidates rescored by the float rows
    index = QuantizedIndex.build(vectors, "int8", calibration=vectors[:8])
    want = index.search(queries, top_k=3, rescore_multiplier=3, rescore_embeddings=vectors)
    assert_same_hits(corpus.search(queries, top_k=3, precision="int8", rescore_multiplier=3), want)


def test_search_command_reads_a_folder(tiny_model_dir, text_file, texts, tmp_path, capsys):
    out = str(tmp_path / "vectors")
    model = ["--model", tiny_model_dir, "--pooler", "avg", "--no-progress"]
    assert main(["encode", *model, text_file, "-o", out, "--shard-size", "10"]) == 0
    assert main(["search", *model, "--corpus-embeddings", out, "--format", "jsonl", "-k", "2", texts[3]]) == 0
    hit = json.loads(capsys.readouterr().out.splitlines()[0])["hits"][0]
    assert (hit["row"], hit["id"], hit["text"]) == (3, 3, texts[3])  # the text comes from the recorded input
    assert main(["search", "--model", tiny_model_dir, "--pooler", "cls", "--corpus-embeddings", out, "q"]) == 1
    assert "encoded with model" in capsys.readouterr().err


class Flaky:
    """An encoder that fails on its ``fail_at``-th encode call (a crash in the middle of a run)."""

    def __init__(self, encoder, fail_at: int) -> None:
        self.encoder, self.fail_at, self.calls = encoder, fail_at, 0

    def __getattr__(self, name):
        return getattr(self.encoder, name)

    def encode(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("out of memory (simulated)")
        return self.encoder.encode(*args, **kwargs)


def test_resume_keeps_complete_shards_and_redoes_damaged_ones(tiny_encoder, text_file, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    options = EncodeOptions(shard_size=6, show_progress=False)
    encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), ref, options)
    with pytest.raises(RuntimeError, match="simulated"):
        encode_corpus(Flaky(tiny_encoder, 5), CorpusSource(paths=(text_file,)), out, options)
    assert not (out / "manifest.json").exists() and len(os.listdir(out / "progress")) == 5  # 4 shards + the note
    with pytest.raises(CorpusError, match="unfinished encode run; continue it with --resume"):
        encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), out, options)
    with open(out / "shard-00001.parquet", "r+b") as f:  # damaged after it was written: redone
        f.seek(100)
        f.write(b"\0\0\0\0")
    counting = Flaky(tiny_encoder, 0)
    resume = EncodeOptions(shard_size=6, show_progress=False, resume=True)
    encode_corpus(counting, CorpusSource(paths=(text_file,)), out, resume)
    assert counting.calls == 8 - 3  # shards 0, 2, 3 kept; 1 and 4..7 encoded
    ids, vectors = read_folder(str(out))
    ref_ids, ref_vectors = read_folder(str(ref))
    assert ids == ref_ids
    np.testing.assert_array_equal(vectors, ref_vectors)  # the same shards, so the same batches and bits
    with pytest.raises(CorpusError, match="finished; --overwrite to redo it"):
        encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), out, options)
    assert encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), out, resume)["rows"] == 45  # nothing to do


def test_resume_with_another_model_or_pooler_is_refused(tiny_encoder, text_file, tmp_path):
    from simcse import Encoder
    from tests.helpers.models import build_tiny_bert_dir

    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        encode_corpus(Flaky(tiny_encoder, 2), CorpusSource(paths=(text_file,)), out,
                      EncodeOptions(shard_size=10, show_progress=False))  # fmt: skip
    other = Encoder.from_pretrained(build_tiny_bert_dir(str(tmp_path / "other"), seed=1), pooler="avg")
    resume = EncodeOptions(shard_size=10, show_progress=False, resume=True)
    with pytest.raises(CorpusError, match=r"made with other settings than this run \(model_revision: 'sha256:"):
        encode_corpus(other, CorpusSource(paths=(text_file,)), out, resume)
    cls = Encoder.from_pretrained(os.path.dirname(tiny_encoder.model.config.name_or_path + "/"), pooler="cls")
    with pytest.raises(CorpusError, match="pooler: 'avg' there, 'cls' now"):
        encode_corpus(cls, CorpusSource(paths=(text_file,)), out, resume)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    with pytest.raises(CorpusError, match="is not an encode output folder"):
        encode_corpus(tiny_encoder, CorpusSource(paths=(text_file,)), tmp_path / "mine",
                      EncodeOptions(overwrite=True, show_progress=False))  # fmt: skip


BAD_INPUTS = [
    ("c.txt", "a man\n\nred car\n", [], "c.txt:2: empty line"),
    ("c.txt", "a man\n  \n", [], "c.txt:2: empty line"),
    ("c.csv", "id,text\n1,a man\n2,\n", ["--id-column", "id"], "c.csv:3: empty text in column 'text'"),
    ("c.csv", "text\na man\n", ["--id-column", "id"], "c.csv:1: no column 'id' (has text)"),
    ("c.jsonl", '{"id": 1, "text": "a"}\n{"text": "b"}\n', ["--id-column", "id"], "c.jsonl:2: lacks key(s) id"),
    ("c.jsonl", '{"id": "x", "text": "a"}\n{"id": "y", "text": "b"}\n{"id": "x", "text": "c"}\n',
     ["--id-column", "id", "--shard-size", "1"], "c.jsonl:3: duplicate id 'x' (first at c.jsonl:1)"),
    ("c.jsonl", '{"id": 1, "text": "a"}\n{"id": 1.5, "text": "b"}\n', ["--id-column", "id"],
     "c.jsonl:2: id column 'id' holds float"),
    ("c.txt", "a\n", ["--id-column", "id"], "a text file has no columns, so no id column 'id'"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "content", "extra", "message"), BAD_INPUTS)
def test_bad_input_is_one_line_naming_file_and_line(tiny_model_dir, tmp_path, capsys, name, content, extra, message):
    (tmp_path / name).write_text(content, encoding="utf-8")
    rc = main(["encode", "--model", tiny_model_dir, "--no-progress", str(tmp_path / name), "-o", str(tmp_path / "o"),
               *extra])  # fmt: skip
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("simcse encode: error:")]
    assert rc == 1 and len(err) == 1 and message in err[0].replace(f"{tmp_path}/", ""), err


def test_duplicate_check_agrees_with_a_set(tmp_path):
    """Many buckets, string and integer ids, shards of equal and of uneven sizes (Ray's files): the first
    repeat by its second row, as a set finds it."""
    from simcse.corpus.shards import write_shard

    rng = np.random.default_rng(0)
    uneven = [0, 37, *sorted(rng.choice(np.arange(38, 3000), size=28, replace=False).tolist()), 3000]
    for kind, bounds in (("str", list(range(0, 3001, 100))), ("int", list(range(0, 3001, 100))), ("str", uneven)):
        ids = rng.choice(10**9, size=3000, replace=False)
        ids[2500] = ids[1200]  # the first repeat...
        ids[2900] = ids[10]  # ...and a later one
        folder = tmp_path / f"{kind}-{len(bounds)}-{bounds[1]}"
        folder.mkdir()
        records = []
        for k, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            part = ids[lo:hi].astype(str) if kind == "str" else ids[lo:hi]
            files = write_shard(str(folder), k, part, np.zeros((len(part), 2), np.float32), "parquet")
            records.append({"files": files, "rows": len(part), "first_row": lo})
        first_repeat = next(i for i in range(3000) if ids[i] in set(ids[:i]))
        value, a, b = find_duplicate(str(folder), records)
        assert (a, b) == (1200, first_repeat) and str(value) == str(ids[1200])
        assert find_duplicate(str(folder), [r for r in records if r["first_row"] + r["rows"] <= 2500]) is None


def test_small_output_keeps_its_behaviour_and_refuses_corpus_options(tiny_model_dir, text_file, tmp_path, capsys):
    assert main(["encode", "--model", tiny_model_dir, text_file, "-o", str(tmp_path / "v.npy"), "--resume"]) == 1
    assert "--resume needs a folder as --output" in capsys.readouterr().err


def test_the_wait_for_other_processes_ends_on_their_failure_or_a_timeout(tmp_path):
    from simcse.corpus.folder import note_failure, record_path, wait_for_shards, write_json

    (tmp_path / "progress").mkdir()
    for k in (0, 2):  # process 0's shards of 2 processes
        write_json(record_path(str(tmp_path), k), {"settings_sha256": "s", "rows": 1})
    with pytest.raises(CorpusError, match=r"missing shards 1, 3 of process\(es\) 1\..*on storage they all share"):
        wait_for_shards(str(tmp_path), 4, 2, "s", timeout=0.3)
    note_failure(str(tmp_path), 1, "CUDA error: out of memory")
    with pytest.raises(CorpusError, match=r"rank 1 failed: .*: CUDA error: out of memory"):
        wait_for_shards(str(tmp_path), 4, 2, "s", timeout=3600)


def test_ray_output_checks_come_before_any_ray_work(tiny_model_dir, tmp_path):
    """An object store URI with a manifest, and an earlier run's folder, are refused in one line (no Ray started)."""
    from simcse.corpus.folder import write_json
    from simcse.corpus.ray import encode_with_ray

    with pytest.raises(CorpusError, match=r"^s3://b/v: the manifest .* manifest=False to write Ray's Parquet"):
        encode_with_ray(tiny_model_dir, ["s3://b/in/"], "s3://b/v", id_column="id")
    write_json(str(tmp_path / "settings.json"), {"model": "m"})  # a run killed before its manifest
    with pytest.raises(CorpusError, match=r"unfinished encode run \(Ray runs do not resume\); pass overwrite=True"):
        encode_with_ray(tiny_model_dir, ["in.jsonl"], tmp_path, id_column="id", input_format="jsonl")
