"""Resumable checkpoints: written to a temporary folder, renamed into place, pruned after.

A checkpoint folder ``checkpoints/step-00000125`` holds Accelerate's state (model, optimizer,
scheduler, every process's RNG states) and ``trainer_state.json`` (step, best metric, counters).
The data position is the step itself (:class:`simcse.data.BatchSchedule` is a function of it).
A folder is complete exactly when it has its final name: a run killed while writing leaves only a
``.tmp-*`` folder, which resume ignores with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from typing import Any

from simcse.io import atomic_write_text

logger = logging.getLogger(__name__)

STATE_FILE = "trainer_state.json"
_NAME = re.compile(r"^step-(\d+)$")


def checkpoint_root(output_dir: str) -> str:
    """Folder holding the run's checkpoints."""
    return os.path.join(output_dir, "checkpoints")


def save_checkpoint(accelerator: Any, output_dir: str, step: int, state: dict[str, Any], keep_last_n: int) -> str:
    """Save a checkpoint for ``step`` on every process; the main process renames and prunes."""
    root = checkpoint_root(output_dir)
    final = os.path.join(root, f"step-{step:08d}")
    tmp = os.path.join(root, f".tmp-step-{step:08d}")
    if accelerator.is_main_process:
        os.makedirs(root, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)  # left by a run killed mid-write
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        atomic_write_text(os.path.join(tmp, STATE_FILE), json.dumps({**state, "step": step}, indent=2))
        if os.path.exists(final):
            shutil.rmtree(final)
        os.replace(tmp, final)
        for old in list_checkpoints(output_dir)[:-keep_last_n]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def list_checkpoints(output_dir: str) -> list[str]:
    """Complete checkpoints, oldest first; warns about partial folders left by a crash."""
    root = checkpoint_root(output_dir)
    if not os.path.isdir(root):
        return []
    found = []
    for name in os.listdir(root):
        path = os.path.join(root, name)
        match = _NAME.match(name)
        if match and os.path.isfile(os.path.join(path, STATE_FILE)):
            found.append((int(match.group(1)), path))
        elif name.startswith(".tmp-"):
            logger.warning("ignoring partial checkpoint %s (the run stopped while writing it)", path)
    return [p for _, p in sorted(found)]


def load_latest(accelerator: Any, output_dir: str) -> dict[str, Any] | None:
    """Restore the newest complete checkpoint into the prepared objects; return its trainer state."""
    checkpoints = list_checkpoints(output_dir)
    if not checkpoints:
        return None
    latest = checkpoints[-1]
    accelerator.load_state(latest)
    with open(os.path.join(latest, STATE_FILE), encoding="utf-8") as f:
        state = json.load(f)
    logger.info("resumed from %s (step %d)", latest, state["step"])
    return state
