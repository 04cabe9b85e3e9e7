"""Corpus encode across processes, end to end: SIGKILL then ``--resume``, ``torchrun`` with 2 processes, Ray.

Every run is the command users run (``python -m simcse.cli encode``, ``torchrun ... -m simcse.cli encode``,
``encode_with_ray``); the reference is an uninterrupted single-process run of the same command.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.helpers.corpus import BATCH_TOL, make_texts, read_folder
from tests.helpers.paths import HELPERS, REPO

CHILD = os.path.join(HELPERS, "encode_child.py")
ENV = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def env(**extra: str) -> dict[str, str]:
    out = {**os.environ, **ENV, **extra}
    out["PYTHONPATH"] = os.pathsep.join([REPO, out.get("PYTHONPATH", "")])
    return out


def encode_args(model: str, inputs: list[str], out: str, *extra: str) -> list[str]:
    return ["encode", "--model", model, "--pooler", "avg", "--no-progress", "--batch-size", "8", *inputs,
            "-o", out, *extra]  # fmt: skip


def run(args: list[str], launcher: list[str] | None = None, **extra_env: str) -> subprocess.CompletedProcess[str]:
    cmd = [*(launcher or [sys.executable]), CHILD, *args]
    return subprocess.run(cmd, env=env(**extra_env), capture_output=True, text=True, cwd=REPO, timeout=600, check=False)


def assert_groups_ended(prefix: str, world: int = 2) -> None:
    """Every process ended its process groups before exit (``SIMCSE_TEST_GROUPS_LEFT=prefix``)."""
    for rank in range(world):
        with open(f"{prefix}.{rank}", encoding="utf-8") as f:
            assert f.read().strip() == "initialized=0 held=0", rank


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("corpus") / "corpus.jsonl"
    texts = make_texts(600, seed=1)
    path.write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(texts)))
    return str(path)


@pytest.fixture(scope="module")
def reference(tiny_model_dir, corpus, tmp_path_factory) -> str:
    """The uninterrupted single-process run."""
    out = str(tmp_path_factory.mktemp("reference") / "out")
    proc = run(encode_args(tiny_model_dir, [corpus], out, "--id-column", "id", "--shard-size", "50"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def assert_same_output(out: str, ref: str, exact: bool = True) -> None:
    ids, vectors = read_folder(out)
    ref_ids, ref_vectors = read_folder(ref)
    assert ids == ref_ids
    if exact:
        np.testing.assert_array_equal(vectors, ref_vectors)
    else:
        np.testing.assert_allclose(vectors, ref_vectors, atol=BATCH_TOL, rtol=0)
    assert sorted(os.listdir(out)) == sorted(os.listdir(ref))  # nothing left over


class Child:
    """One encode process that a test kills."""

    def __init__(self, args: list[str], tmp_path, pause: str | None = None, slow: float = 0.0) -> None:
        self.flag = str(tmp_path / "paused")
        extra = {"SIMCSE_CHILD_PAUSE": pause, "SIMCSE_CHILD_PAUSED": self.flag} if pause else {}
        extra.update({"SIMCSE_CHILD_SLOW": str(slow)} if slow else {})
        self.log = tmp_path / f"child-{time.monotonic_ns()}.log"
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([sys.executable, CHILD, *args], env=env(**extra), stdout=log,
                                         stderr=subprocess.STDOUT, cwd=REPO)  # fmt: skip

    def kill_when_paused(self, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.flag):
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            assert time.monotonic() < deadline, "the child never reached its pause point"
            time.sleep(0.02)
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        with open(self.flag) as f:
            event = f.read()
        os.remove(self.flag)
        return event


@pytest.mark.slow
def test_sigkill_at_any_moment_then_resume_equals_the_uninterrupted_run(tiny_model_dir, corpus, reference, tmp_path):
    out = str(tmp_path / "out")
    args = encode_args(tiny_model_dir, [corpus], out, "--id-column", "id", "--shard-size", "50")
    progress = os.path.join(out, "progress")

    def done() -> int:
        return len([n for n in os.listdir(progress) if n.endswith(".json")]) if os.path.isdir(progress) else 0

    # killed at chosen moments: a shard file written but not yet renamed into place...
    assert "shard-00002.parquet" in Child(args, tmp_path, r"replace .*\.shard-00002\.parquet\.tmp").kill_when_paused()
    # ... at random moments while shards are being written (after one more shard, plus 0-20 ms; each file put
    # in place 0.2 s late, so that the kill lands before the next shard even when this machine is loaded:
    # in a CI rehearsal, three kills without the delay let 10 of the 12 shards through) ...
    rng = random.Random(0)
    for _ in range(3):
        child, target = Child([*args, "--resume"], tmp_path, slow=0.2), done() + 1
        while done() < target:
            assert child.proc.poll() is None, child.log.read_text()[-3000:]
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.02))
        child.proc.send_signal(signal.SIGKILL)
        child.proc.wait()
    assert 4 <= done() < 10, f"{done()} shards done: the random kills came too late for the next ones"
    # ... with shard 10's file renamed but its record not yet, and with the manifest not yet renamed
    for pause in (r"replace .*\.shard-00010\.json\.tmp-", r"replace .*\.manifest\.json\.tmp-"):
        assert "replace" in Child([*args, "--resume"], tmp_path, pause).kill_when_paused()
    assert not os.path.exists(os.path.join(out, "manifest.json")) and done() == 12
    proc = run([*args, "--resume"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_output(out, reference)
    again = run(args)  # a finished folder is never written again without --overwrite
    assert again.returncode == 1 and "finished; --overwrite to redo it" in again.stderr


TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]


@pytest.mark.slow
def test_two_processes_write_the_rows_of_one(tiny_model_dir, corpus, reference, tmp_path):
    out = str(tmp_path / "out")
    groups = str(tmp_path / "groups")
    proc = run(encode_args(tiny_model_dir, [corpus], out, "--id-column", "id", "--shard-size", "50"), TORCHRUN,
               SIMCSE_TEST_GROUPS_LEFT=groups)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_groups_ended(groups)  # a group left to the interpreter's exit can abort a finished process
    assert_same_output(out, reference)  # the same shards, so the same batches: the same bits
    with open(os.path.join(out, "manifest.json")) as f:
        assert json.load(f)["processes"] == 2
    # a repeated id in shards of different processes is found at the end, named by file and line
    dup = tmp_path / "dup.jsonl"
    with open(corpus) as f:
        lines = f.read().splitlines()
    lines[120] = lines[120].replace('"d120"', '"d7"')  # shard 2 (process 0) repeats an id of shard 0 (process 0)
    lines[75] = lines[75].replace('"d75"', '"d3"')  # shard 1 (process 1) repeats one of shard 0: found first
    dup.write_text("\n".join(lines) + "\n")
    proc = run(encode_args(tiny_model_dir, [str(dup)], str(tmp_path / "dup"), "--id-column", "id", "--shard-size",
                           "50"), TORCHRUN, SIMCSE_TEST_GROUPS_LEFT=groups + "-failed")  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if "simcse encode: error:" in line]
    assert proc.returncode != 0 and errors, proc.stderr[-3000:]
    assert_groups_ended(groups + "-failed")  # on the error's way out too
    assert errors[0].endswith(f"{dup}:76: duplicate id 'd3' (first at {dup}:4); ids must be unique")


def search_hits(model: str, folder: str, queries: list[str], capsys, *extra: str) -> list[list[dict]]:
    """``simcse search --corpus-embeddings FOLDER`` (in this process): each query's hits, best first."""
    from simcse.cli import main

    capsys.readouterr()
    args = ["--model", model, "--pooler", "avg", "--corpus-embeddings", folder, "--format", "jsonl", "-k", "5"]
    assert main(["search", *args, *extra, *queries]) == 0
    return [json.loads(line)["hits"] for line in capsys.readouterr().out.splitlines()]


@pytest.mark.slow
def test_ray_actor_pool_gives_the_rows_of_one_process(tiny_model_dir, corpus, reference, tmp_path, capsys):
    """One Ray session: the output has a manifest (the settings ``simcse encode`` records), the search over it
    finds what the search over the single-process output finds, and a second run is refused."""
    import ray

    from simcse.corpus import CorpusError, ShardedEmbeddings
    from simcse.corpus.ray import encode_with_ray

    out = str(tmp_path / "ray")
    kwargs = {"id_column": "id", "input_format": "jsonl", "num_actors": 2, "num_cpus": 1, "rows_per_call": 64,
              "pooler": "avg", "batch_size": 8}  # fmt: skip
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}  # ray.init sets its own
    ray.init(num_cpus=3, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {**ENV, "PYTHONPATH": REPO}})  # fmt: skip
    try:
        manifest = encode_with_ray(tiny_model_dir, [corpus], out, **kwargs)
        with pytest.raises(CorpusError, match=r"ray: finished \(manifest.json\); pass overwrite=True"):
            encode_with_ray(tiny_model_dir, [corpus], out, **kwargs)  # refused before Ray does any work
    finally:
        ray.shutdown()
        for sig, handler in handlers.items():  # the later tests of this pytest process see the default handling
            signal.signal(sig, handler)
    ids, vectors = read_folder(out)  # through the manifest: Ray's order, ids identify the rows
    ref_ids, ref_vectors = read_folder(reference)
    assert sorted(ids) == sorted(ref_ids) and len(ids) == len(set(ids))
    where = {i: n for n, i in enumerate(ids)}
    np.testing.assert_allclose(vectors[[where[i] for i in ref_ids]], ref_vectors, atol=BATCH_TOL, rtol=0)
    with open(os.path.join(reference, "manifest.json")) as f:
        ref_manifest = json.load(f)
    assert manifest["settings"] == {**ref_manifest["settings"], "shard_size": None}  # no shard size on Ray
    files = [name for shard in manifest["shards"] for name in shard["files"]]
    assert sorted(os.listdir(out)) == sorted(["manifest.json", *files]) and len(files) > 1
    ShardedEmbeddings(out).verify()  # row counts add up (read_folder) and checksums match
    assert manifest["throughput"]["rows_per_second"] > 0 and manifest["processes"] == 2
    # simcse search over Ray's folder finds the same hits as over simcse encode's (same ids, texts and scores)
    with open(corpus) as f:
        texts = [json.loads(line)["text"] for line in f]
    queries = [texts[3], texts[420], "red car 17", "the dog runs 5"]  # top-6 scores >= 2e-4 apart: no near-ties
    want = search_hits(tiny_model_dir, reference, queries, capsys)
    # Ray's rows are not the input's rows: texts are found by id, from the recorded input or from a --corpus
    # in another order (here reversed: a lookup by row number would show other texts)
    assert manifest["input"]["rows_in_input_order"] is False
    (tmp_path / "reversed.jsonl").write_text("".join(json.dumps({"id": f"d{i}", "text": t}) + "\n"
                                                     for i, t in reversed(list(enumerate(texts)))))  # fmt: skip
    for extra in ([], ["--corpus", str(tmp_path / "reversed.jsonl")]):
        got = search_hits(tiny_model_dir, out, queries, capsys, *extra)
        assert len(got) == len(want) == len(queries)
        for g, w in zip(got, want):
            assert [(h["id"], h["text"]) for h in g] == [(h["id"], h["text"]) for h in w]
            np.testing.assert_allclose([h["score"] for h in g], [h["score"] for h in w], atol=1e-5, rtol=0)
    assert want[0][0]["id"] == "d3" and want[1][0]["id"] == "d420"
