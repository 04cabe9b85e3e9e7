"""A tiny training run in its own process, for tests that kill it (SIGKILL) or pre-empt it (SIGTERM).

Usage::

    python train_child.py [--resume] [--state-out FILE] --key=value ...   (TrainConfig overrides)

On success the final trainer state is written as JSON to ``--state-out``. To stop at an exact
moment, set ``SIMCSE_CHILD_PAUSE`` to a regular expression: the child then waits, for ever, just
before the first ``os.replace``/``shutil.rmtree`` whose description (``replace SRC -> DST`` or
``rmtree PATH``) matches it, after writing that description to the file ``SIMCSE_CHILD_PAUSED``.
The test sees that file appear and kills the child there.
"""

import argparse
import json
import logging
import os
import re
import shutil
import sys
import time

from simcse.config import load_config, parse_overrides
from simcse.train import train


def pause_at(pattern: str, flag: str) -> None:
    """Make the matching file operation block, so a kill lands exactly there."""
    regex = re.compile(pattern)
    real_replace, real_rmtree = os.replace, shutil.rmtree

    def check(event: str) -> None:
        if regex.search(event):
            with open(flag + ".part", "w", encoding="utf-8") as f:
                f.write(event)
            real_replace(flag + ".part", flag)
            while True:
                time.sleep(60)

    def replace(src, dst, *args, **kwargs):
        check(f"replace {src} -> {dst}")
        return real_replace(src, dst, *args, **kwargs)

    def rmtree(path, *args, **kwargs):
        check(f"rmtree {path}")
        return real_rmtree(path, *args, **kwargs)

    os.replace, shutil.rmtree = replace, rmtree


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--state-out")
    args, rest = parser.parse_known_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
    if os.environ.get("SIMCSE_CHILD_PAUSE"):
        pause_at(os.environ["SIMCSE_CHILD_PAUSE"], os.environ["SIMCSE_CHILD_PAUSED"])
    state = train(load_config(None, parse_overrides(rest)), resume=args.resume)
    if args.state_out:
        with open(args.state_out, "w", encoding="utf-8") as f:
            json.dump(state, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
