"""MTEB 2 STS tasks fed from the local STS files, so ``mteb.evaluate`` runs offline on the same pairs as ours.

``mteb.get_task(name)`` gives a task's metadata without downloading anything; its data is loaded on
first use. :func:`local_mteb_task` fills the task's evaluation split with the pairs
:func:`simcse.evaluation.tasks.load_task` reads (every subset pooled, as MTEB scores STS12-16) and marks it
loaded, so MTEB scores exactly the pairs our evaluator scores.
"""

from __future__ import annotations

from typing import Any

from simcse.evaluation.tasks import TASKS, load_task
from simcse.io import StrPath

# our task name -> MTEB's
MTEB_NAMES: dict[str, str] = {**{t: t for t in TASKS}, "SICKRelatedness": "SICK-R"}


def local_mteb_task(
    name: str, data_dir: StrPath | None = None, *, stsb_split: str = "test", sick_mode: str = "full"
) -> Any:
    """The MTEB task ``name`` (ours or MTEB's spelling) holding the local pairs of that task.

    The defaults are MTEB's own splits: STS-B test, and SICK-R on all 9,927 pairs. Other splits (e.g.
    ``stsb_split="dev"``) are scored under the task's evaluation split name.

    Args:
        name: One of :data:`MTEB_NAMES` (keys or values).
        data_dir: Data directory (see :func:`simcse.data_dir.resolve_data_dir`).
        stsb_split: STS-B split to read.
        sick_mode: SICK-R pairs to read (``test``, ``dev`` or ``full``).

    Returns:
        An ``mteb`` STS task whose data is loaded.

    Raises:
        ValueError: ``name`` is not one of our STS tasks.
        FileNotFoundError: A data file is missing (the message says how to download the data).
    """
    import mteb
    from datasets import Dataset, DatasetDict

    ours = {v: k for k, v in MTEB_NAMES.items()}.get(name, name)
    if ours not in TASKS:
        raise ValueError(f"{name}: no local data for it; local MTEB tasks: {', '.join(MTEB_NAMES.values())}")
    pairs = load_task(ours, data_dir, stsb_split=stsb_split, sick_mode=sick_mode).subsets
    task = mteb.get_task(MTEB_NAMES[ours])
    rows = {
        "sentence1": [s for p in pairs for s in p.sentences1],
        "sentence2": [s for p in pairs for s in p.sentences2],
        "score": [float(x) for p in pairs for x in p.scores],
    }
    task.dataset = {"default": DatasetDict({task.metadata.eval_splits[0]: Dataset.from_dict(rows)})}
    task.data_loaded = True
    return task
