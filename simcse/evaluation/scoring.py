"""Score an encoder on the STS suite: each distinct sentence encoded once, SentEval's protocol."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any, Literal

import numpy as np
import torch

from simcse.evaluation.metrics import aggregate, alignment, cosine_pairs, uniformity
from simcse.evaluation.sharding import encode_split
from simcse.evaluation.tasks import PAPER_COLUMNS, STS_SUBSETS, TASKS, STSTask, load_task
from simcse.io import StrPath

logger = logging.getLogger(__name__)

EncodeFn = Callable[[list[str]], np.ndarray]

# A pair of identical sentences (52 in STS12 SMTeuroparl) shares one embedding, so its cosine is
# exactly 1; computed, it is 1 up to float noise, and the rank order among such pairs would be that
# noise. They are set to 1.0 so they tie (Spearman's average rank). Nothing is rounded: a collapsed
# model's cosines may all lie within 1e-5 of each other and still carry its (weak) ranking.


def headline(task: STSTask, scores: dict[str, float]) -> float:
    """The number the SimCSE paper reports: ``all`` for STS12-16, the single split otherwise."""
    return scores["all"] if task.name in STS_SUBSETS else scores[task.subsets[0].name]


def evaluate_sts(
    encode: EncodeFn,
    tasks: Sequence[StrPath] = TASKS,
    data_dir: StrPath | None = None,
    stsb_split: str = "test",
    sick_mode: str = "test",
    align_uniform: bool = True,
    loaded: dict[str, STSTask] | None = None,
) -> dict:
    """Evaluate ``encode`` (a list of sentences -> ``(n, dim)`` array) on STS tasks.

    Args:
        encode: Embedding function; called once with every distinct sentence of every task.
        tasks: Task names or custom file paths.
        data_dir: Data directory.
        stsb_split: STS-B split scored (``test`` for the paper's table, ``dev`` for model selection).
        sick_mode: ``test`` (SentEval), ``dev`` (trial) or ``full`` (MTEB: all pairs).
        align_uniform: Also report alignment and uniformity on the STS-B split.
        loaded: Already loaded tasks by name (avoids re-reading files during training).

    Returns:
        ``{"tasks": {name: {"score": headline, "spearman": {...}, "n_pairs": n}},
        "avg": mean headline, "alignment": ..., "uniformity": ..., "n_sentences": ...}``.
    """
    task_objs = [
        (loaded or {}).get(t) or load_task(t, data_dir, stsb_split=stsb_split, sick_mode=sick_mode) for t in tasks
    ]
    if align_uniform and not any(t.name == "STSBenchmark" for t in task_objs):
        task_objs.append(load_task("STSBenchmark", data_dir, stsb_split=stsb_split))
        extra_stsb = True
    else:
        extra_stsb = False
    # one forward per distinct sentence across the whole run
    vocab: dict[str, int] = {}
    for task in task_objs:
        for sub in task.subsets:
            for s in (*sub.sentences1, *sub.sentences2):
                vocab.setdefault(s, len(vocab))
    sentences = list(vocab)
    emb = np.asarray(encode(sentences), dtype=np.float32)
    if emb.shape[0] != len(sentences):
        raise ValueError(f"encode returned {emb.shape[0]} rows for {len(sentences)} sentences")

    result: dict = {"tasks": {}, "n_sentences": len(sentences)}
    for task in task_objs[: len(task_objs) - extra_stsb]:
        per_subset = {}
        for sub in task.subsets:
            i1 = np.array([vocab[s] for s in sub.sentences1])
            i2 = np.array([vocab[s] for s in sub.sentences2])
            cos = np.where(i1 == i2, 1.0, cosine_pairs(emb[i1], emb[i2]))  # (n,) identical sentences: exactly 1
            per_subset[sub.name] = (sub.scores, cos)
        scores = aggregate(per_subset)
        if len(task.subsets) == 1:
            scores = {task.subsets[0].name: scores[task.subsets[0].name]}
        result["tasks"][task.name] = {
            "score": headline(task, scores),
            "spearman": scores,
            "n_pairs": int(sum(len(s) for s in task.subsets)),
        }
    result["avg"] = float(np.mean([r["score"] for r in result["tasks"].values()]))
    if align_uniform:
        stsb = next(t for t in task_objs if t.name == "STSBenchmark").subsets[0]
        keep = stsb.scores > 4.0
        e1 = torch.from_numpy(emb[[vocab[s] for s, k in zip(stsb.sentences1, keep) if k]])
        e2 = torch.from_numpy(emb[[vocab[s] for s, k in zip(stsb.sentences2, keep) if k]])
        distinct = sorted({vocab[s] for s in (*stsb.sentences1, *stsb.sentences2)})
        result["alignment"] = alignment(e1, e2)
        result["uniformity"] = uniformity(torch.from_numpy(emb[distinct]))
        result["align_uniform_split"] = stsb.name
    return result


def score_suite(
    encoder: Any,
    tasks: Sequence[StrPath] = TASKS,
    data_dir: StrPath | None = None,
    *,
    batch_size: int = 128,
    precision: Literal["fp32", "bf16"] = "fp32",
    device: str | None = None,
    max_seq_length: int | None = None,
    truncate_dim: int | None = None,
    align_uniform: bool = True,
    show_progress_bar: bool = False,
    split_across_processes: bool = False,
    **evaluate_kwargs: Any,
) -> dict:
    """Score an :class:`~simcse.Encoder` on STS tasks (default: the paper's 7 test sets).

    The one way the CLI, the seed runner and the scripts score a model, so their numbers agree.

    Args:
        encoder: The encoder (put in eval mode; moved to ``device`` if given).
        tasks: Task names or custom files.
        data_dir: Data directory.
        batch_size: Sentences per forward pass.
        precision: ``bf16`` encodes under bfloat16 autocast (see :meth:`simcse.Encoder.encode`).
        device: Torch device to move the encoder to; None leaves it where it is.
        max_seq_length: Truncation length to set on the encoder (e.g. the model's own limit rather than the
            training length a saved folder records); None keeps the encoder's.
        truncate_dim: Score the first N dimensions of every vector (Matryoshka-style, see
            :func:`simcse.quantize.truncate_embeddings`); cosine, alignment and uniformity normalise them.
        align_uniform: Also report alignment and uniformity on STS-B.
        show_progress_bar: Show a tqdm bar while encoding.
        split_across_processes: Every process of the run calls this together; each encodes a share of the
            sentences (see :mod:`simcse.evaluation.sharding`) and all get the same result.
        **evaluate_kwargs: ``stsb_split``, ``sick_mode``, ``loaded``: see :func:`evaluate_sts`.

    Returns:
        :func:`evaluate_sts`'s result.
    """
    if device is not None:
        encoder.to(device)
    if max_seq_length is not None:
        encoder.max_seq_length = max_seq_length
    encoder.eval()

    def encode(sentences: list[str]) -> np.ndarray:
        return encoder.encode(
            sentences, batch_size=batch_size, precision=precision, show_progress_bar=show_progress_bar,
            truncate_dim=truncate_dim,
        )  # fmt: skip

    run = (lambda sentences: encode_split(encode, sentences)) if split_across_processes else encode
    return evaluate_sts(run, list(tasks), data_dir, align_uniform=align_uniform, **evaluate_kwargs)


def format_table(result: dict) -> str:
    """The SimCSE paper's table row (STS12 ... SICK-R Avg.) plus any other task, as fixed-width text."""
    names = [t for t in PAPER_COLUMNS if t in result["tasks"]]
    names += [t for t in result["tasks"] if t not in PAPER_COLUMNS]
    heads = [PAPER_COLUMNS.get(t, t) for t in names] + ["Avg."]
    values = [f"{result['tasks'][t]['score']:.2f}" for t in names] + [f"{result['avg']:.2f}"]
    widths = [max(len(h), len(v)) for h, v in zip(heads, values)]
    lines = [
        " | ".join(h.rjust(w) for h, w in zip(heads, widths)),
        " | ".join(v.rjust(w) for v, w in zip(values, widths)),
    ]
    if "alignment" in result:
        lines.append(
            f"alignment {result['alignment']:.4f}  uniformity {result['uniformity']:.4f}"
            f"  (STS-B {result['align_uniform_split']})"
        )
    return "\n".join(lines)
