"""Several processes, end to end, through the command users run: ``torchrun ... training/train.py``.

Each test launches whole runs (an evaluation and checkpoints inside) as separate processes and reads
what they leave in the run folder. With dropout off, a run of 2 processes x batch 8 must be the run
of 1 process x batch 16 (the same global batches): the same learning rate and loss at every step,
the same final weights, one writer of the run folder, and the same weights after a resume. A NaN on
one process, SIGTERM to one process, a second run into a busy folder and a full disk must end every
process the same way, never with one of them waiting for ever in a collective.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import signal
import subprocess
import time

import numpy as np
import pytest
import torch

from tests.helpers.data import write_corpus, write_triplets
from tests.helpers.launch import (
    FAULTY,
    STEPS,
    assert_same_training,
    assert_same_weights,
    checkpoint,
    command,
    env,
    launch,
    metrics,
    weights,
)
from tests.helpers.paths import REPO

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("mp_data")
    write_corpus(root / "corpus.txt", n=400)
    write_triplets(root / "nli.csv", n=400)
    return {"unsup": str(root / "corpus.txt"), "triplets": str(root / "nli.csv")}


@pytest.fixture(scope="module")
def base(tiny_model_dir: str, small_dev_data: str) -> dict:
    """A 20-step run with an evaluation and a checkpoint every 10 steps; dropout off (deterministic).

    The paper's learning rate, 3e-5: Adam turns float noise in gradients that are zero in exact arithmetic
    into steps of about the learning rate, so the two runs' weights drift apart in proportion to it.
    """
    return dict(
        model_name_or_path=tiny_model_dir, data_dir=small_dev_data, dropout=0.0, max_seq_len=16, learning_rate=3e-5,
        max_steps=STEPS, eval_steps=10, checkpoint_steps=10, keep_last_n=2, eval_batch_size=64, seed=3,
        collapse_check_steps=5,
    )  # fmt: skip


VARIANTS = {
    "unsup": dict(mode="unsup"),
    "moco_queue": dict(mode="unsup", objective="moco", queue_size=48, momentum=0.9),
    # composed, so that CI runs one launch set for all of them: triplets with hard negatives (alpha 0.7) and
    # the gradient cache (each also had a variant of its own before), two sources (unsup + triplets) in one
    # run, Matryoshka at 2 sizes with its ranking distillation and tail-energy term, a guide masking false
    # negatives (its similarities once per step)
    "sources_matryoshka_guide": dict(
        mode="triplets", hard_negative_weight=0.7, grad_cache_chunk_size=6, matryoshka_dims="32,8",
        matryoshka_distill=0.5, matryoshka_energy="0,0.2", guide_model="self", datasets="both",
    ),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_two_processes_train_like_one_end_to_end(base, files, tmp_path, variant):
    cfg = {**base, **VARIANTS[variant]}
    cfg["train_file"] = files[cfg["mode"]]
    if cfg.get("datasets") == "both":
        both = [{"train_file": files["unsup"], "mode": "unsup"}, {"train_file": files["triplets"]}]
        cfg["datasets"] = json.dumps(both)
    if cfg.get("guide_model") == "self":
        cfg["guide_model"] = cfg["model_name_or_path"]
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    launch(1, {**cfg, "batch_size": 16, "output_dir": one})
    run = launch(2, {**cfg, "batch_size": 8, "output_dir": two})

    m1, m2 = metrics(one), metrics(two)
    assert [r["step"] for r in m2] == list(range(1, STEPS + 1))  # one writer: every step once
    for a, b in zip(m1, m2):
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9, abs=1e-12), a["step"]
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), a["step"]
        # the same model scored (a rank statistic: near-tied pairs may swap) and the global batch's spread
        sts = 0.05 if variant == "sources_matryoshka_guide" else 0.02  # two more sizes' float noise on a tiny model
        keys = (("stsb_dev", sts), ("embedding_std", 1e-4), ("batch_uniformity", 1e-4), ("masked_negatives", 0))
        for key, tol in (*keys, ("stsb_dev@8", sts)):
            assert (key in a) == (key in b)
            if key in a:
                assert b[key] == pytest.approx(a[key], abs=tol), (a["step"], key)
    assert m2[-1]["lr"] == 0.0 and m2[STEPS // 2 - 1]["lr"] == pytest.approx(3e-5 / 2)  # linear decay, global steps
    assert_same_training(weights(checkpoint(one, STEPS)), weights(checkpoint(two, STEPS)))
    moved = weights(checkpoint(two, STEPS // 2))  # the tolerance is far below how far training moved them
    assert max((w - moved[k]).abs().max().item() for k, w in weights(checkpoint(two, STEPS)).items()) > 5e-5
    assert_same_training(weights(os.path.join(one, "model")), weights(os.path.join(two, "model")))
    saves = sum("new_best" in r for r in m2)
    assert saves >= 1 and run.stderr.count("saved to") == saves  # only the main process wrote the model folder
    assert not os.path.exists(os.path.join(two, ".simcse.lock"))
    if "matryoshka_dims" in cfg:  # the saved folder records the trained sizes, the card their dev scores
        with open(os.path.join(two, "model", "matryoshka.json"), encoding="utf-8") as f:
            record = json.load(f)
            assert (record["dims"], record["distill"], record["energy"]) == ([32, 8], 0.5, [0.0, 0.2])
        with open(os.path.join(two, "model", "README.md"), encoding="utf-8") as f:
            assert "STS-B dev, first 8 dims" in f.read()
    if "guide_model" in cfg:
        assert sum(r["masked_negatives"] for r in m2) > 0

    if variant == "unsup":
        return  # its resume is inside the composed variant's (an unsup source) and the MoCo one's (with the queue)
    # resume the 2-process run from its step-10 checkpoint: the same final weights again
    final = weights(checkpoint(two, STEPS))
    os.replace(checkpoint(two, STEPS), str(tmp_path / "moved"))
    launch(2, {**cfg, "batch_size": 8, "output_dir": two}, resume=True)
    assert_same_weights(final, weights(checkpoint(two, STEPS)))
    assert [r["step"] for r in metrics(two)] == list(range(1, STEPS + 1))


def test_nan_on_one_process_skips_the_update_on_every_process(base, files, tmp_path):
    out = str(tmp_path / "nan")
    cfg = {**base, "train_file": files["unsup"], "batch_size": 8, "output_dir": out, "max_steps": 4,
           "checkpoint_steps": 1, "keep_last_n": 4, "eval_steps": 4}  # fmt: skip
    groups = str(tmp_path / "groups")
    # process 1's loss is NaN at step 3
    launch(2, cfg, script=FAULTY, timeout=180, SIMCSE_TEST_NAN="1:3", SIMCSE_TEST_GROUPS_LEFT=groups)
    for rank in (0, 1):  # the run ended its process groups (a group left to the interpreter's exit can abort it)
        with open(f"{groups}.{rank}", encoding="utf-8") as f:
            assert f.read().strip() == "initialized=0 held=0", rank
    records = metrics(out)
    assert math.isnan(records[2]["loss"]) and all(math.isfinite(r["loss"]) for i, r in enumerate(records) if i != 2)
    with open(os.path.join(checkpoint(out, 4), "trainer_state.json"), encoding="utf-8") as f:
        assert json.load(f)["nonfinite_skipped"] == 1
    # step 3 changed no weight (on process 0 either: its weights are the checkpoint's), step 4 did
    assert_same_weights(weights(checkpoint(out, 2)), weights(checkpoint(out, 3)), atol=0)
    w3, w4 = weights(checkpoint(out, 3)), weights(checkpoint(out, 4))
    assert any(not torch.equal(w3[k], w4[k]) for k in w3)


def _workers(launcher_pid: int) -> dict[int, int]:
    """``{rank: pid}`` of torchrun's worker processes."""
    found = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
                parent = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/environ", "rb") as f:
                environ = dict(v.split(b"=", 1) for v in f.read().split(b"\0") if b"=" in v)
        except (OSError, ValueError, IndexError):
            continue
        if parent == launcher_pid and b"RANK" in environ:
            found[int(environ[b"RANK"])] = int(pid)
    return found


def test_sigterm_to_one_process_checkpoints_the_same_step_on_all_and_exits_0(base, files, tmp_path):
    out = str(tmp_path / "term")
    cfg = {**base, "train_file": files["unsup"], "batch_size": 8, "output_dir": out, "max_steps": 2000,
           "eval_steps": 10000, "checkpoint_steps": 10000}  # fmt: skip
    proc = subprocess.Popen(
        command(2, cfg), env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        deadline = time.time() + 180
        while not (os.path.isfile(os.path.join(out, "metrics.jsonl")) and len(metrics(out)) >= 3):
            assert proc.poll() is None and time.time() < deadline, "the run ended or stalled before step 3"
            time.sleep(0.2)
        workers = _workers(proc.pid)
        assert sorted(workers) == [0, 1]
        os.kill(workers[1], signal.SIGTERM)  # pre-emption of one process only
        output, _ = proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    saved = os.listdir(os.path.join(out, "checkpoints"))
    assert len(saved) == 1 and saved[0].startswith("step-")
    step = int(saved[0].split("-")[1])
    assert 3 <= step < 2000
    folder = os.path.join(out, "checkpoints", saved[0])
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(os.listdir(folder))  # both processes saved it
    with open(os.path.join(folder, "trainer_state.json"), encoding="utf-8") as f:
        assert json.load(f)["step"] == step
    assert metrics(out)[-1]["step"] == step


def test_second_run_into_a_live_runs_folder_is_refused_and_a_killed_runs_lock_taken_over(base, files, tmp_path):
    out = str(tmp_path / "busy")
    cfg = {**base, "train_file": files["unsup"], "batch_size": 8, "output_dir": out, "max_steps": 5000,
           "eval_steps": 10000, "checkpoint_steps": 10000}  # fmt: skip
    first = subprocess.Popen(command(1, cfg), env=env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while not (os.path.isfile(os.path.join(out, "metrics.jsonl")) and metrics(out)):
            assert first.poll() is None and time.time() < deadline, "the first run ended or stalled"
            time.sleep(0.2)
        second = launch(1, {**cfg, "max_steps": 2}, expect_ok=False, timeout=120)
        assert second.returncode == 1
        last = second.stderr.strip().splitlines()[-1]
        assert last.startswith("simcse train: error: ") and "another run is using this folder" in last
        assert f"pid {first.pid} " in last, last
        written = sorted(os.listdir(out))
        first.kill()  # SIGKILL: no chance to release the lock
        first.wait(timeout=60)
    finally:
        if first.poll() is None:
            first.kill()
    assert ".simcse.lock" in written
    # the next run takes the dead run's lock over (and says so); here a fresh start into a folder without checkpoints
    third = launch(1, {**cfg, "max_steps": 2, "eval_steps": 2})
    assert f"taking over the lock of pid {first.pid} " in third.stderr
    assert not os.path.exists(os.path.join(out, ".simcse.lock"))


def _digests(folder: str) -> dict[str, str]:
    found = {}
    for root, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                found[os.path.relpath(path, folder)] = hashlib.sha256(f.read()).hexdigest()
    return found


def test_full_disk_during_a_save_stops_every_process_in_one_line_and_keeps_what_was_saved(base, files, tmp_path):
    out = str(tmp_path / "full")
    cfg = {**base, "train_file": files["unsup"], "batch_size": 8, "output_dir": out, "max_steps": 4,
           "eval_steps": 2, "checkpoint_steps": 2}  # fmt: skip
    launch(2, cfg)
    before = {sub: _digests(os.path.join(out, sub)) for sub in ("model", "checkpoints")}
    # continue to step 8 where no file may grow past 60 kB: the weights (about 130 kB) cannot be written
    run = launch(2, {**cfg, "max_steps": 8}, script=FAULTY, resume=True, expect_ok=False, timeout=180,
                 SIMCSE_TEST_FSIZE="60000")  # fmt: skip
    assert run.returncode != 0
    errors = [line for line in run.stderr.splitlines() if line.startswith("simcse train: error: ")]
    assert len(errors) == 2, run.stderr[-3000:]  # one line from each process, no traceback of ours
    cause = next(e for e in errors if "File too large" in e)
    assert "could not write the " in cause and "Nothing saved before was changed" in cause and "--resume" in cause
    assert any("process 0 failed while writing the" in e for e in errors)  # the other process names the cause
    assert {sub: _digests(os.path.join(out, sub)) for sub in before} == before  # untouched
    leftovers = [n for n in os.listdir(os.path.join(out, "checkpoints")) if n.startswith(".tmp-")]
    assert not leftovers  # nothing half-written
    assert not os.path.exists(os.path.join(out, ".simcse.lock"))
    launch(2, {**cfg, "max_steps": 8}, resume=True)  # space is back: the run continues
    assert metrics(out)[-1]["step"] == 8 and np.isfinite(metrics(out)[-1]["loss"])


def test_seeds_on_two_processes_equal_each_seeds_one_process_run(base, files, tmp_path):
    """``--seeds`` trains one run after another in the same processes: the process group must outlive each run."""
    cfg = {**base, "train_file": files["unsup"], "max_steps": 6, "eval_steps": 3, "checkpoint_steps": 6}
    test_file = tmp_path / "sts.tsv"  # the test suite each seed's model is scored on: 60 STS-B dev pairs
    with open(os.path.join(base["data_dir"], "senteval", "STS", "STSBenchmark", "sts-dev.csv"), encoding="utf-8") as f:
        rows = [line.rstrip("\n").split("\t") for line in f][:60]
    test_file.write_text("".join(f"{r[5]}\t{r[6]}\t{r[4]}\n" for r in rows), encoding="utf-8")
    seeds = ["--seeds", "1", "2", "--test-tasks", str(test_file)]
    one, two = tmp_path / "one", tmp_path / "two"
    for n_proc, out, batch in ((1, one, 16), (2, two, 8)):
        args = [*command(n_proc, {**cfg, "batch_size": batch, "output_dir": out}), *seeds]
        run = subprocess.run(args, capture_output=True, text=True, env=env(), timeout=300, cwd=REPO)
        assert run.returncode == 0, run.stderr[-4000:]
    for seed in (1, 2):
        a, b = one / f"seed-{seed}", two / f"seed-{seed}"
        assert_same_training(weights(checkpoint(str(a), 6)), weights(checkpoint(str(b), 6)))
        for x, y in zip(metrics(str(a)), metrics(str(b))):
            assert y["loss"] == pytest.approx(x["loss"], abs=1e-5), (seed, x["step"])
    assert (two / "seeds.md").is_file()
    w1, w2 = weights(checkpoint(str(two / "seed-1"), 6)), weights(checkpoint(str(two / "seed-2"), 6))
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)  # the seeds differ


def test_sigterm_is_seen_within_steps_whatever_logging_steps_is(base, files, tmp_path):
    """With nothing read for 100,000 steps, a pre-emption still stops the run at once (with a checkpoint)."""
    out = str(tmp_path / "term")
    cfg = {**base, "train_file": files["unsup"], "batch_size": 8, "output_dir": out, "max_steps": 100_000,
           "eval_steps": 100_000, "checkpoint_steps": 100_000, "logging_steps": 100_000,
           "collapse_check_steps": 0}  # fmt: skip
    proc = subprocess.Popen(command(2, cfg), env=env(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)  # fmt: skip
    try:
        lines = []
        for line in proc.stdout:  # the main process logs the data once it is loaded: training starts next
            lines.append(line)
            if "training examples" in line:
                break
        time.sleep(3)  # some steps in
        workers = _workers(proc.pid)
        assert sorted(workers) == [0, 1], "".join(lines)[-3000:]
        os.kill(workers[1], signal.SIGTERM)
        signalled = time.time()
        output, _ = proc.communicate(timeout=120)
        assert time.time() - signalled < 60  # not 100,000 steps later
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, output[-3000:]
    saved = os.listdir(os.path.join(out, "checkpoints"))
    assert len(saved) == 1 and 1 <= int(saved[0].split("-")[1]) < 100_000
    folder = os.path.join(out, "checkpoints", saved[0])
    assert {"random_states_0.pkl", "random_states_1.pkl"} <= set(os.listdir(folder))
