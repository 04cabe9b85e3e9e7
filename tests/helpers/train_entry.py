"""``training/train.py`` with a fault injected, for tests of what every process does when one fails.

Usage (alone or under ``torchrun``)::

    python train_entry.py --key value ...     (the arguments of training/train.py)

Faults, from the environment:
- ``SIMCSE_TEST_NAN=RANK:STEP``: the loss of process RANK is NaN at step STEP (1-based).
- ``SIMCSE_TEST_FSIZE=BYTES``: no file may grow past BYTES (``RLIMIT_FSIZE``): a write beyond it fails
  with the OS's "File too large", as a full disk fails with "No space left on device".

Everything else is the entry point users run, unchanged.
"""

import os
import resource
import runpy
import signal
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def inject_nan(rank: int, step: int) -> None:
    import torch

    import simcse.train.step as training

    real, calls = training.compute_loss, [0]

    def compute_loss(*args, **kwargs):
        loss = real(*args, **kwargs)
        calls[0] += 1
        if int(os.environ.get("RANK", "0")) == rank and calls[0] == step:
            return loss * torch.tensor(float("nan"))
        return loss

    training.compute_loss = compute_loss


def main() -> None:
    if os.environ.get("SIMCSE_TEST_NAN"):
        rank, step = (int(x) for x in os.environ["SIMCSE_TEST_NAN"].split(":"))
        inject_nan(rank, step)
    if os.environ.get("SIMCSE_TEST_FSIZE"):
        limit = int(os.environ["SIMCSE_TEST_FSIZE"])
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit then fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    script = os.path.join(REPO, "training", "train.py")
    sys.argv = [script, *sys.argv[1:]]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
