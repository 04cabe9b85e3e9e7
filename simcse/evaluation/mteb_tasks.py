"""MTEB 2 tasks fed from local data (STS files, retrieval sets), so ``mteb.evaluate`` runs offline on what ours scores.

``mteb.get_task(name)`` gives a task's metadata without downloading anything; its data is loaded on
first use. :func:`local_mteb_task` fills the task's evaluation split with the pairs
:func:`simcse.evaluation.tasks.load_task` reads (every subset pooled, as MTEB scores STS12-16) and marks it
loaded, so MTEB scores exactly the pairs our evaluator scores.
"""

from __future__ import annotations

from typing import Any

from simcse.evaluation.retrieval_data import RetrievalData
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


def local_mteb_retrieval_task(data: RetrievalData, borrow: str = "SciFact") -> Any:
    """An MTEB 2 retrieval task holding ``data`` (e.g. from :func:`~simcse.evaluation.retrieval_data.load_beir`).

    MTEB's retrieval task ``borrow`` lends its metadata (an English text-to-text retrieval task; its
    own data is never downloaded); ``data`` fills its evaluation split, so ``mteb.evaluate`` scores
    exactly the queries, corpus and judgements :class:`~simcse.evaluation.retrieval.RetrievalEvaluator`
    scores (main score nDCG@10, trec_eval's measures through pytrec_eval).

    Args:
        data: Queries, corpus and judgements.
        borrow: The MTEB task whose metadata is used.

    Returns:
        An ``mteb`` retrieval task whose data is loaded.
    """
    import mteb
    from datasets import Dataset

    task = mteb.get_task(borrow)
    split = {
        "corpus": Dataset.from_dict({"id": list(data.corpus), "text": list(data.corpus.values())}),
        "queries": Dataset.from_dict({"id": list(data.queries), "text": list(data.queries.values())}),
        "relevant_docs": {q: dict(docs) for q, docs in data.qrels.items()},
        "top_ranked": None,
    }
    task.dataset = {"default": {task.metadata.eval_splits[0]: split}}
    task.data_loaded = True
    return task
