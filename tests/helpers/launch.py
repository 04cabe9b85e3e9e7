"""Runs in separate processes, launched as users launch them (``python`` / ``torchrun ... training/train.py``),
and what to read back from their run folders."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

import torch

from tests.helpers.paths import HELPERS, REPO, TRAIN

FAULTY = os.path.join(HELPERS, "train_entry.py")  # training/train.py with a fault injected
STEPS = 20


def command(n_proc: int, overrides: dict, script: str = TRAIN, resume: bool = False) -> list[str]:
    """The README's command: ``python training/train.py`` or ``torchrun --nproc_per_node N training/train.py``."""
    args = [f"--{k}={v}" for k, v in overrides.items()] + (["--resume"] if resume else [])
    if n_proc == 1:
        return [sys.executable, script, *args]
    # --standalone: the rendezvous picks a free port itself (no race with other runs for a fixed one)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(n_proc)]
    return [*launcher, script, *args]


def env(**extra: str) -> dict[str, str]:
    base = {"OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TQDM_DISABLE": "1"}
    return {**os.environ, "PYTHONPATH": REPO, **base, **extra}


def launch(n_proc: int, overrides: dict, *, script: str = TRAIN, resume: bool = False, timeout: int = 240,
           expect_ok: bool = True, **extra_env: str) -> subprocess.CompletedProcess:  # fmt: skip
    """Run to the end (a hang fails the test at ``timeout``)."""
    proc = subprocess.run(
        command(n_proc, overrides, script, resume), capture_output=True, text=True, env=env(**extra_env),
        timeout=timeout, cwd=REPO,
    )  # fmt: skip
    if expect_ok:
        assert proc.returncode == 0, proc.stderr[:4000] + "\n...\n" + proc.stderr[-4000:]
    return proc


def metrics(out: str) -> list[dict]:
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def weights(folder: str) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(os.path.join(folder, "model.safetensors"))


def checkpoint(out: str, step: int) -> str:
    return os.path.join(out, "checkpoints", f"step-{step:08d}")


def assert_same_weights(a: dict, b: dict, atol: float = 1e-5) -> None:
    assert a.keys() == b.keys() and len(a) > 0
    for name in a:
        torch.testing.assert_close(b[name], a[name], atol=atol, rtol=0, msg=name)


def assert_same_training(a: dict, b: dict) -> None:
    """Weights of one run and of the same run on 2 processes: 1e-5, but for a few coordinates at 5e-5.

    The two sum a step's gradients in another order (one batch vs an all-reduce of two halves), so they
    differ by float noise; where a gradient is zero in exact arithmetic (a bias before a LayerNorm...)
    the noise is all there is, and Adam, which divides by its size, turns it into steps of about the
    learning rate. Measured: 3 of 31,104 coordinates beyond 1e-5 (at most 1.7e-5) after 20 steps.
    """
    assert a.keys() == b.keys() and len(a) > 0
    diff = torch.cat([(b[k] - a[k]).abs().flatten() for k in a])
    assert diff.max() <= 5e-5 and (diff > 1e-5).float().mean() <= 1e-3, (diff.max(), (diff > 1e-5).sum())


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_probe(n_proc, out, overrides):
    args = [f"--{k}={v}" for k, v in overrides.items()]
    probe = os.path.join(HELPERS, "grad_probe.py")
    if n_proc == 1:
        cmd = [sys.executable, probe, "--out", out, *args]
    else:
        # torchrun + Accelerator(cpu=True) gives MULTI_CPU with gloo; this accelerate's
        # `launch --cpu --num_processes 2` would need mpirun for several CPU processes
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(n_proc),
            "--master_port", str(_free_port()), probe, "--out", out, *args,
        ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return torch.load(out)
