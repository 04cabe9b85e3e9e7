"""Reliability: a run killed at any moment resumes to the weights of a run that never stopped.

The run is a separate process (``tests/helpers/train_child.py``) killed with SIGKILL at chosen
moments (asked to, the child blocks inside one file operation, so the kill lands exactly there)
and at a random one, then resumed; SIGTERM must checkpoint and exit 0. Runs in this process cover
non-finite losses, a damaged checkpoint, a fresh start over an old run and an interrupted folder swap.
"""

from __future__ import annotations

import glob
import json
import logging
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from simcse.config import load_config
from simcse.io import atomic_dir, recover
from simcse.runs.checkpoints import list_checkpoints
from simcse.runs.folder import BEST_FILE, STATE_FILE
from simcse.train import train
from tests.helpers.paths import HELPERS, REPO

CHILD = os.path.join(HELPERS, "train_child.py")
WORDS = "a man is playing the guitar woman dog runs in park child eats bread red car old house".split()
TOTAL = 20  # steps; evaluation every 5, a checkpoint every 3 (and at the end), two kept


@pytest.fixture(scope="module")
def run_config(tiny_model_dir: str, small_dev_data: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Config overrides of the tiny run: 96 sentences, dev sets cut to 150 pairs (a fast evaluation)."""
    rng = np.random.default_rng(0)
    corpus = tmp_path_factory.mktemp("reliability") / "corpus.txt"
    corpus.write_text("\n".join(" ".join(rng.choice(WORDS, size=int(rng.integers(3, 12)))) for _ in range(96)) + "\n")
    return dict(
        model_name_or_path=tiny_model_dir, train_file=str(corpus), data_dir=small_dev_data, batch_size=8,
        max_seq_len=16, learning_rate=1e-3, max_steps=TOTAL, eval_steps=5, checkpoint_steps=3, keep_last_n=2,
        eval_batch_size=64, seed=7,  # seed 7: the run improves at every evaluation (see test 3 below)
    )  # fmt: skip


class Child:
    """One training process on ``out`` (stdout and stderr to ``<out>.<n>.log``)."""

    started = 0

    def __init__(self, cfg: dict, out: str, resume: bool = False, pause: str | None = None) -> None:
        Child.started += 1
        self.out, self.flag, self.state_file = out, f"{out}.paused", f"{out}.state.json"
        self.log_file = f"{out}.{Child.started}.log"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        env["PYTHONPATH"] = os.pathsep.join([REPO, env.get("PYTHONPATH", "")])
        env.pop("SIMCSE_CHILD_PAUSE", None)
        if pause:
            env.update(SIMCSE_CHILD_PAUSE=pause, SIMCSE_CHILD_PAUSED=self.flag)
        args = [f"--{k}={v}" for k, v in {**cfg, "output_dir": out}.items()]
        cmd = [sys.executable, CHILD, "--state-out", self.state_file, *(["--resume"] if resume else []), *args]
        with open(self.log_file, "w") as log:
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)

    def log(self) -> str:
        with open(self.log_file, encoding="utf-8", errors="replace") as f:
            return f.read()

    def wait_until(self, condition, what: str, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                pytest.fail(f"child exited with {self.proc.returncode} before {what}:\n{self.log()[-3000:]}")
            if time.monotonic() > deadline:
                self.kill()
                pytest.fail(f"child did not reach {what} in {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.01)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def kill_when_paused(self) -> str:
        """SIGKILL once the child blocks in its chosen file operation; returns that operation."""
        self.wait_until(lambda: os.path.exists(self.flag), "its pause point")
        self.kill()
        with open(self.flag, encoding="utf-8") as f:
            event = f.read()
        os.remove(self.flag)
        return event

    def finish(self, timeout: float = 240) -> dict:
        """Wait for a clean exit (status 0) and return the final state."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"child still running after {timeout} s:\n{self.log()[-3000:]}")
        assert code == 0, self.log()[-3000:]
        with open(self.state_file, encoding="utf-8") as f:
            return json.load(f)


@pytest.fixture(scope="module")
def reference(run_config: dict, tmp_path_factory: pytest.TempPathFactory):
    """The uninterrupted run, a child like the others (the same arithmetic, to the last bit).

    It starts at once, beside the first interrupted run; ``reference()`` waits for it and gives
    its folder and final state.
    """
    out = str(tmp_path_factory.mktemp("reference") / "run")
    child, done = Child(run_config, out), []

    def result() -> tuple[str, dict]:
        if not done:
            done.append((out, child.finish()))
        return done[0]

    yield result
    if not done:
        child.kill()


def metrics(out: str) -> list[dict]:
    path = os.path.join(out, "metrics.jsonl")
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.endswith("\n")]


def last_step(out: str) -> int:
    records = metrics(out)
    return records[-1]["step"] if records else 0


def weights(path: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(path)


def assert_same_weights(got: str, want: str) -> None:
    a, b = weights(got), weights(want)
    assert a.keys() == b.keys()
    for name in b:
        torch.testing.assert_close(a[name], b[name], atol=1e-6, rtol=0, msg=name)


def assert_checkpoint_loads(path: str) -> None:
    """Every file of a checkpoint folder reads back, and the folder's name matches its step."""
    with open(os.path.join(path, STATE_FILE), encoding="utf-8") as f:
        assert os.path.basename(path) == f"step-{json.load(f)['step']:08d}"
    weights(os.path.join(path, "model.safetensors"))
    for name in ("optimizer.bin", "scheduler.bin", "random_states_0.pkl"):
        torch.load(os.path.join(path, name), weights_only=False)


def assert_same_run(out: str, state: dict, reference: tuple[str, dict]) -> None:
    """Same final state, checkpoints, best model and metric lines as the reference; nothing left over."""
    ref_out, ref_state = reference
    assert {k: v for k, v in state.items() if k != "best_metric"} == {
        k: v for k, v in ref_state.items() if k != "best_metric"
    }
    assert state["best_metric"] == pytest.approx(ref_state["best_metric"], abs=1e-9)
    names = [os.path.basename(p) for p in list_checkpoints(out)]
    assert names == [os.path.basename(p) for p in list_checkpoints(ref_out)] == ["step-00000018", "step-00000020"]
    assert sorted(os.listdir(os.path.join(out, "checkpoints"))) == names  # no partial or half-pruned folder
    for path in list_checkpoints(out):
        assert_checkpoint_loads(path)
    final = os.path.join("checkpoints", f"step-{TOTAL:08d}", "model.safetensors")
    assert_same_weights(os.path.join(out, final), os.path.join(ref_out, final))
    # the best model: same weights, and its record matches the bookkeeping
    assert_same_weights(
        os.path.join(out, "model", "model.safetensors"), os.path.join(ref_out, "model", "model.safetensors")
    )
    with open(os.path.join(out, "model", BEST_FILE), encoding="utf-8") as f:
        best = json.load(f)
    assert (best["step"], best["value"]) == (state["best_step"], pytest.approx(state["best_metric"], abs=1e-9))
    assert sorted(os.listdir(out)) == ["checkpoints", "config.yaml", "metrics.jsonl", "model", "training_curves.png"]
    # one metrics line per step: the lines written after the resumed checkpoint were dropped, then rewritten
    got, want = metrics(out), metrics(ref_out)
    assert [r["step"] for r in got] == list(range(1, TOTAL + 1))
    for g, w in zip(got, want):
        assert g.keys() - {"new_best"} == w.keys() - {"new_best"}
        assert g["loss"] == pytest.approx(w["loss"], abs=1e-6) and g["lr"] == pytest.approx(w["lr"])
        assert g.get("stsb_dev") == pytest.approx(w.get("stsb_dev"), abs=1e-6)


@pytest.mark.slow
def test_sigkill_at_any_moment_resumes_to_the_uninterrupted_weights(run_config, reference, tmp_path):
    out = str(tmp_path / "run")
    ckpts = os.path.join(out, "checkpoints")

    # 1. killed while writing checkpoint 6: Accelerate's files are in place, trainer_state.json not yet.
    #    The best model, saved by the evaluation at step 5, is newer than the last complete checkpoint.
    child = Child(run_config, out, pause=r"replace \S*/\.tmp-step-00000006/\.trainer_state\.json\.tmp-")
    child.kill_when_paused()
    assert sorted(os.listdir(ckpts)) == [".tmp-step-00000006", "step-00000003"]
    assert not os.path.exists(os.path.join(ckpts, ".tmp-step-00000006", STATE_FILE))
    with open(os.path.join(out, "model", BEST_FILE), encoding="utf-8") as f:
        assert json.load(f)["step"] == 5

    # 2. resumed from step 3, the partial folder ignored with a warning and the best model kept as the
    #    best so far; killed while pruning step 3 (renamed out of the way, not yet deleted)
    child = Child(run_config, out, resume=True, pause=r"rmtree \S*/\.tmp-removing-step-00000003$")
    child.kill_when_paused()
    log = child.log()
    assert "ignoring" in log and ".tmp-step-00000006" in log
    assert "(step 3)" in log and "stays the best so far" in log
    assert sorted(os.listdir(ckpts)) == [".tmp-removing-step-00000003", "step-00000006", "step-00000009"]

    # 3. killed between the two renames that replace the best model folder (the old one moved aside,
    #    the new one not yet in place), if the run improves after step 9; else while writing checkpoint 12
    improves = any(r.get("new_best") and r["step"] > 9 for r in metrics(reference()[0]))
    pause = r"replace \S*/\.model\.tmp-\S+ -> \S*/model$" if improves else r"replace \S*/\.tmp-step-00000012/\."
    child = Child(run_config, out, resume=True, pause=pause)
    child.kill_when_paused()
    if improves:
        from simcse import Encoder

        assert not os.path.exists(os.path.join(out, "model"))
        with pytest.raises(FileNotFoundError, match=r"interrupted.*\.model\.old-"):
            Encoder.from_pretrained(os.path.join(out, "model"))

    # 4. killed at a random moment a few steps after the checkpoint it resumes from (more kills, for a
    #    soak test: SIMCSE_TEST_KILLS=20; another sequence of moments: SIMCSE_TEST_SEED)
    rng = random.Random(int(os.environ.get("SIMCSE_TEST_SEED", "0")))
    for _ in range(int(os.environ.get("SIMCSE_TEST_KILLS", "1"))):
        child = Child(run_config, out, resume=True)
        # a line beyond those left by the last run, so the moment falls in this one
        target = min(last_step(out) + rng.randint(1, 4), TOTAL - 1)
        child.wait_until(lambda t=target: last_step(out) >= t, f"step {target}")
        time.sleep(rng.uniform(0, 0.3))
        child.kill()

    # 5. resumed to the end
    state = Child(run_config, out, resume=True).finish()
    assert_same_run(out, state, reference())


@pytest.mark.slow
def test_sigterm_saves_exits_0_and_resume_continues_from_there(run_config, reference, tmp_path):
    out = str(tmp_path / "run")
    child = Child(run_config, out)
    child.wait_until(lambda: last_step(out) >= 4, "step 4")
    child.proc.send_signal(signal.SIGTERM)
    stopped = child.finish()["step"]
    assert 4 <= stopped < TOTAL
    assert "SIGTERM received" in child.log()
    assert last_step(out) == stopped
    assert os.path.basename(list_checkpoints(out)[-1]) == f"step-{stopped:08d}"
    child = Child(run_config, out, resume=True)
    state = child.finish()
    assert f"(step {stopped})" in child.log()
    assert_same_run(out, state, reference())


def test_damaged_newest_checkpoint_falls_back_and_fresh_start_is_refused(run_config, reference, tmp_path, caplog):
    ref_out, ref_state = reference()
    out = str(tmp_path / "run")
    shutil.copytree(ref_out, out)
    newest = os.path.join(out, "checkpoints", f"step-{TOTAL:08d}", "model.safetensors")
    with open(newest, "r+b") as f:
        f.truncate(1000)  # damaged after it was written (a disk fault; a kill cannot do this)
    before = {p: os.path.getsize(p) for p in glob.glob(os.path.join(out, "**"), recursive=True) if os.path.isfile(p)}
    with pytest.raises(FileExistsError, match="resume it"):
        train(load_config(None, {**run_config, "output_dir": out}))  # a fresh start would mix with them
    assert before == {p: os.path.getsize(p) for p in before}
    with caplog.at_level(logging.WARNING, logger="simcse"):
        state = train(load_config(None, {**run_config, "output_dir": out}), resume=True)
    assert "cannot load checkpoint" in caplog.text and f"step-{TOTAL:08d}" in caplog.text
    assert state["step"] == TOTAL and state["best_step"] == ref_state["best_step"]
    # (this process may use more threads than the children: equal to float rounding, not to the bit)
    assert_same_weights(newest, os.path.join(ref_out, "checkpoints", f"step-{TOTAL:08d}", "model.safetensors"))


def test_nonfinite_losses_are_skipped_and_counted(run_config, tmp_path, monkeypatch, caplog):
    import simcse.train.step as training

    real, calls = training.compute_loss, []

    def flaky(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return loss * float("nan") if len(calls) in (2, 3) else loss

    monkeypatch.setattr(training, "compute_loss", flaky)
    out = str(tmp_path / "run")
    overrides = dict(max_steps=4, eval_steps=4, checkpoint_steps=1, keep_last_n=4, output_dir=out)
    before = signal.getsignal(signal.SIGTERM)
    with caplog.at_level(logging.WARNING, logger="simcse"):
        state = train(load_config(None, {**run_config, **overrides}))
    assert signal.getsignal(signal.SIGTERM) is before  # train gives SIGTERM back when it is done
    assert state["nonfinite_skipped"] == 2
    assert "step 2: non-finite loss, update skipped (1 in a row)" in caplog.text
    assert "step 3: non-finite loss, update skipped (2 in a row)" in caplog.text
    assert "2 step(s) with a non-finite loss" in caplog.text  # the summary at the end
    w = [weights(os.path.join(p, "model.safetensors")) for p in list_checkpoints(out)]
    for name in w[0]:
        assert torch.equal(w[0][name], w[1][name]) and torch.equal(w[1][name], w[2][name]), name  # no update
    assert any(not torch.equal(w[2][n], w[3][n]) for n in w[0])  # step 4 updated again
    with open(os.path.join(list_checkpoints(out)[-1], STATE_FILE), encoding="utf-8") as f:
        assert json.load(f)["nonfinite_skipped"] == 2


def test_nonfinite_losses_in_a_row_stop_with_a_clear_error(run_config, tmp_path):
    # a temperature this small turns every cosine into an infinite logit, so the loss is NaN
    overrides = dict(temperature=1e-40, max_nonfinite_steps=3, output_dir=str(tmp_path / "run"))
    with pytest.raises(FloatingPointError, match=r"3 non-finite losses in a row at step 3 \(max_nonfinite_steps=3\)"):
        train(load_config(None, {**run_config, **overrides}))
    assert list_checkpoints(str(tmp_path / "run")) == []


def test_folder_swap_interrupted_between_its_two_renames_is_recovered(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    real = os.replace

    def dies_before_second_rename(src, dst):
        if os.fspath(dst) == str(target):
            raise KeyboardInterrupt  # stands for a kill: nothing after this line runs
        return real(src, dst)

    monkeypatch.setattr(os, "replace", dies_before_second_rename)
    with pytest.raises(KeyboardInterrupt), atomic_dir(str(target)) as tmp:
        (tmp_path / os.path.basename(tmp) / "weights").write_text("new")
    monkeypatch.setattr(os, "replace", real)
    assert not target.exists()
    assert sorted(p.name.split("-")[0] for p in tmp_path.iterdir()) == [".model.old", ".model.tmp"]
    recover(str(target))
    assert (target / "weights").read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
