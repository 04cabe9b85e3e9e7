"""``training/train.py`` with a fault injected, for tests of what every process does when one fails.

Usage (alone or under ``torchrun``)::

    python train_entry.py --key value ...     (the arguments of training/train.py)

Faults, from the environment:
- ``SIMCSE_TEST_NAN=RANK:STEP``: the loss of process RANK is NaN at step STEP (1-based).
- ``SIMCSE_TEST_FSIZE=BYTES``: no file may grow past BYTES (``RLIMIT_FSIZE``): a write beyond it fails
  with the OS's "File too large", as a full disk fails with "No space left on device".
- ``SIMCSE_TEST_SLOW=SECONDS``: process 0 takes SECONDS longer over each of its long jobs alone: building
  the tokenized cache, evaluating, writing the best model, writing its part of a checkpoint (as a large
  corpus, a large dev set or network storage would).
- ``SIMCSE_TEST_FAIL=evaluate``: process 0 fails while evaluating (as an out-of-memory error on GPU 0 would).
- ``SIMCSE_TEST_GROUPS_LEFT=PATH``: no fault; at exit, every process writes to ``PATH.<rank>`` whether a
  process group is still joined and whether simcse still holds one (``initialized=0 held=0`` when the
  command ended them all, as it must: a group left to the interpreter's exit can abort the process).
- ``SIMCSE_TEST_ENCODE_LOG=PATH``: no fault; every process appends ``<rank> <number of texts>`` to ``PATH.<rank>``
  at each ``Encoder.encode`` call (evaluation is the only caller while training), to see who encoded what.

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


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def slow_down(seconds: float) -> None:
    import time

    import accelerate

    import simcse.data.cache as data
    import simcse.encoder
    import simcse.evaluation.dev as dev

    def slowed(real):
        def run(*args, **kwargs):
            if rank() == 0:
                time.sleep(seconds)
            return real(*args, **kwargs)

        return run

    data._build = slowed(data._build)
    dev.DevEvaluator.__call__ = slowed(dev.DevEvaluator.__call__)
    simcse.encoder.Encoder.save = slowed(simcse.encoder.Encoder.save)
    accelerate.Accelerator.save_state = slowed(accelerate.Accelerator.save_state)


def fail_evaluating() -> None:
    import simcse.evaluation.dev as dev

    real = dev.DevEvaluator.__call__

    def evaluate(*args, **kwargs):
        if rank() == 0:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB (simulated on process 0)")
        return real(*args, **kwargs)

    dev.DevEvaluator.__call__ = evaluate


def log_encoding(path: str) -> None:
    import simcse.encoder

    real = simcse.encoder.Encoder.encode

    def encode(self, sentences, *args, **kwargs):
        with open(f"{path}.{rank()}", "a", encoding="utf-8") as f:
            f.write(f"{rank()} {len(sentences)}\n")
        return real(self, sentences, *args, **kwargs)

    simcse.encoder.Encoder.encode = encode


def report_groups_at_exit(path: str) -> None:
    """At exit, write ``initialized=<0|1> held=<0|1>`` to ``path.<rank>`` (see the module's docstring)."""
    import atexit

    def report() -> None:
        import torch.distributed as dist

        import simcse.distributed

        initialized = int(dist.is_available() and dist.is_initialized())
        held = int(bool(simcse.distributed._WAIT))
        with open(f"{path}.{rank()}", "w", encoding="utf-8") as f:
            f.write(f"initialized={initialized} held={held}\n")

    atexit.register(report)


def main() -> None:
    if os.environ.get("SIMCSE_TEST_GROUPS_LEFT"):
        report_groups_at_exit(os.environ["SIMCSE_TEST_GROUPS_LEFT"])
    if os.environ.get("SIMCSE_TEST_ENCODE_LOG"):
        log_encoding(os.environ["SIMCSE_TEST_ENCODE_LOG"])
    if os.environ.get("SIMCSE_TEST_SLOW"):
        slow_down(float(os.environ["SIMCSE_TEST_SLOW"]))
    if os.environ.get("SIMCSE_TEST_FAIL") == "evaluate":
        fail_evaluating()
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
