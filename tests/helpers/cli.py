"""The ``simcse`` command run as a user runs it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers.paths import REPO


def simcse(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run(
        [sys.executable, "-m", "simcse.cli", *args], input=stdin, capture_output=True, text=True, cwd=REPO, env=env,
        timeout=600, check=False,
    )  # fmt: skip
