"""A cluster on one machine: two nodes of one process each, launched as users launch them (slow).

Each node is its own ``torchrun --nnodes 2 --node_rank R --rdzv_backend c10d --rdzv_endpoint 127.0.0.1:PORT
training/train.py`` with its own HOME, datasets cache, temporary folder and copy of the data (another path,
another modification time), as separate machines have; the run folder (``output_dir``) is the one thing they
share. The run must equal the 1-process run; a process waiting for process 0's long work (slowed on purpose)
must not time out with the training collectives' timeout shortened to seconds; and a failure on process 0
alone must end both nodes at once, each with that failure's message.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from tests.helpers.data import write_corpus
from tests.helpers.launch import FAULTY, assert_same_training, checkpoint, env, launch, metrics
from tests.helpers.launch import weights as read_weights
from tests.helpers.paths import REPO, TRAIN

pytestmark = pytest.mark.slow
STEPS = 8


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def node_env(root, rank: int, **extra: str) -> dict[str, str]:
    """A node's own HOME, datasets cache and temporary folder."""
    home = root / f"node{rank}"
    for sub in ("home", "tmp"):
        (home / sub).mkdir(parents=True, exist_ok=True)
    own = {"HOME": str(home / "home"), "TMPDIR": str(home / "tmp"), "HF_DATASETS_CACHE": str(home / "home" / "ds")}
    return env(**own, **extra)


def run_nodes(root, overrides: dict, *, script: str = TRAIN, timeout: int = 300, **extra: str) -> list[tuple]:
    """Start both nodes (node R reads its own copy ``nodeR/corpus.txt``); wait; ``[(returncode, stderr, seconds)]``."""
    port, procs, started = free_port(), [], time.time()
    for rank in (0, 1):
        data = root / f"node{rank}" / "corpus.txt"
        args = [f"--{k}={v}" for k, v in {**overrides, "train_file": data}.items()]
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node_rank", str(rank),
               "--nproc_per_node", "1", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{port}",
               script, *args]  # fmt: skip
        log = open(root / f"node{rank}.log", "w+", encoding="utf-8")  # noqa: SIM115 (closed below)
        procs.append((subprocess.Popen(cmd, env=node_env(root, rank, **extra), cwd=REPO, stdout=log, stderr=log), log))
    results = []
    for proc, log in procs:
        try:
            proc.wait(timeout=max(1, timeout - (time.time() - started)))
        except subprocess.TimeoutExpired:
            for other, _ in procs:
                other.kill()
            pytest.fail(f"a node did not finish within {timeout} s")
        log.seek(0)
        results.append((proc.returncode, log.read(), time.time() - started))
        log.close()
    return results


@pytest.fixture
def nodes(tmp_path):
    """Each node's copy of the same corpus: another path and another modification time."""
    write_corpus(tmp_path / "corpus.txt", n=200)
    for rank in (0, 1):
        (tmp_path / f"node{rank}").mkdir()
        shutil.copy(tmp_path / "corpus.txt", tmp_path / f"node{rank}" / "corpus.txt")
    os.utime(tmp_path / "node1" / "corpus.txt", (1, 1))
    return tmp_path


@pytest.fixture
def base(tiny_model_dir, small_dev_data) -> dict:
    return dict(
        model_name_or_path=tiny_model_dir, data_dir=small_dev_data, dropout=0.0, max_seq_len=16, learning_rate=3e-5,
        max_steps=STEPS, eval_steps=4, checkpoint_steps=4, eval_batch_size=64, seed=3, batch_size=8,
    )  # fmt: skip


def last_error(log: str) -> str:
    lines = [line for line in log.splitlines() if "error:" in line and line.startswith("simcse train")]
    return lines[-1] if lines else log[-3000:]


def test_two_nodes_with_their_own_disks_train_like_one_process(nodes, base, tmp_path):
    one = str(tmp_path / "one")
    launch(1, {**base, "batch_size": 16, "output_dir": one, "train_file": nodes / "corpus.txt",
               "data_cache_dir": str(tmp_path / "cache1")})  # fmt: skip
    shared = str(tmp_path / "shared_out")
    (rc0, log0, _), (rc1, log1, _) = run_nodes(nodes, {**base, "output_dir": shared})
    assert rc0 == 0 and rc1 == 0, (last_error(log0), last_error(log1))
    # each node tokenized its own copy into its own cache (node 1 could not see node 0's)
    for rank in (0, 1):
        cache = nodes / f"node{rank}" / "home" / "ds" / "simcse"
        assert [n for n in os.listdir(cache) if n.startswith("corpus.txt-")], rank
    assert "tokenized " in log0 and "tokenized " in log1
    m1, m2 = metrics(one), metrics(shared)
    assert [r["step"] for r in m2] == list(range(1, STEPS + 1))
    for a, b in zip(m1, m2):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5), a["step"]
        assert b["lr"] == pytest.approx(a["lr"], rel=1e-9, abs=1e-12)
    assert_same_training(read_weights(checkpoint(one, STEPS)), read_weights(checkpoint(shared, STEPS)))
    assert_same_training(read_weights(os.path.join(one, "model")), read_weights(os.path.join(shared, "model")))


def test_waiting_for_process_0s_long_work_outlasts_the_collective_timeout(nodes, base, tmp_path):
    """Process 0 takes 8 s longer to tokenize, evaluate, save the best model and checkpoint; the training
    collectives time out after 4 s. The other node waits on the long-wait group and the run ends well."""
    out = str(tmp_path / "slow")
    cfg = {**base, "output_dir": out, "max_steps": 4, "ddp_timeout": 4, "wait_timeout": 600}
    (rc0, log0, _), (rc1, log1, _) = run_nodes(nodes, cfg, script=FAULTY, SIMCSE_TEST_SLOW="8")
    assert rc0 == 0 and rc1 == 0, (last_error(log0), last_error(log1))
    assert [r["step"] for r in metrics(out)] == [1, 2, 3, 4] and os.path.isdir(checkpoint(out, 4))
    # the control: the same waits with a long-wait timeout of 4 s fail, so the waits above were real
    (rc0, log0, _), (rc1, log1, _) = run_nodes(nodes, {**cfg, "output_dir": out + "2", "wait_timeout": 4},
                                               script=FAULTY, SIMCSE_TEST_SLOW="8")  # fmt: skip
    assert rc1 != 0 and "timed out" in log1.lower() + log0.lower()


@pytest.mark.parametrize("where", ["run folder", "evaluation"])
def test_a_failure_on_process_0_alone_ends_both_nodes_at_once_with_its_message(nodes, base, tmp_path, where):
    out = tmp_path / "fail"
    extra = {}
    if where == "run folder":
        (out / "config.yaml").mkdir(parents=True)  # process 0 cannot write the resolved config
    else:
        extra["SIMCSE_TEST_FAIL"] = "evaluate"  # an out-of-memory error while process 0 evaluates
    cfg = {**base, "output_dir": str(out), "ddp_timeout": 600, "wait_timeout": 600}
    groups = str(tmp_path / "groups")
    (rc0, log0, t0), (rc1, log1, t1) = run_nodes(nodes, cfg, script=FAULTY, timeout=240,
                                                 SIMCSE_TEST_GROUPS_LEFT=groups, **extra)  # fmt: skip
    assert rc0 != 0 and rc1 != 0
    for rank in (0, 1):  # both ended their process groups on the error's way out
        with open(f"{groups}.{rank}", encoding="utf-8") as f:
            assert f.read().strip() == "initialized=0 held=0", rank
    assert max(t0, t1) < 120, (t0, t1)  # at once, not at a timeout (600 s)
    cause = "Is a directory" if where == "run folder" else "CUDA out of memory"
    assert cause in log0
    peer = last_error(log1)  # one line naming process 0 and its error
    assert "process 0 failed while" in peer and cause in peer, peer
