"""Training curves of a run: loss, STS-B dev Spearman, alignment and uniformity over steps.

The four panels follow what the SimCSE paper watches during training (its Figure 2 tracks
alignment and uniformity; model selection uses STS-B dev). The data is the run's ``metrics.jsonl``
(one record per step: ``loss``; at evaluation steps also ``stsb_dev``, ``sickr_dev``, ``alignment``
and ``uniformity``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

CURVES_FILE = "training_curves.png"


def read_metrics(path: str) -> list[dict[str, Any]]:
    """Records of a ``metrics.jsonl`` file, in order; a line cut short by a kill is skipped."""
    records = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and "step" in record:
                records.append(record)
    return records


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def _smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is so far)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or v.size == 0:
        return v
    sums = np.cumsum(np.insert(v, 0, 0.0))  # (n + 1,)
    counts = np.minimum(np.arange(1, v.size + 1), window)  # (n,)
    return (sums[1:] - sums[np.arange(1, v.size + 1) - counts]) / counts


def plot_training_curves(records: Sequence[dict[str, Any]], path: str, title: str | None = None) -> str:
    """Write a 2x2 figure (loss, STS dev Spearman, alignment, uniformity vs step) to ``path`` (PNG).

    Args:
        records: ``metrics.jsonl`` records (see :func:`read_metrics`).
        path: Output file; written beside under a temporary name, then renamed (never half-written).
        title: Figure title (e.g. the run's model and recipe).

    Returns:
        ``path``.
    """
    from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

    fig = Figure(figsize=(10, 7), dpi=120)
    axes = fig.subplots(2, 2, sharex=True)
    (ax_loss, ax_sts), (ax_align, ax_unif) = axes
    best_step = _best_step(records)

    steps, loss = _series(records, "loss")
    if steps:
        window = max(1, len(steps) // 20)
        if window > 1:  # noisy per-step values, faint, under their moving average
            ax_loss.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="per step")
            ax_loss.plot(steps, _smooth(loss, window), color="tab:blue", linewidth=1.8, label=f"mean of {window} steps")
            ax_loss.legend(fontsize=8)
        else:
            ax_loss.plot(steps, loss, color="tab:blue", linewidth=1.2)
    ax_loss.set_title("training loss")

    for key, label, style in (("stsb_dev", "STS-B dev", "o-"), ("sickr_dev", "SICK-R dev", "s--")):
        x, y = _series(records, key)
        if x:
            ax_sts.plot(x, y, style, markersize=4, label=label)
            _label_last(ax_sts, x, y, "{:.2f}")
    if ax_sts.lines:
        ax_sts.legend(fontsize=8)
    best_note = f"; best (saved) at step {best_step}" if best_step is not None else ""
    ax_sts.set_title(f"dev Spearman x 100{best_note}")

    for ax, key, color, what in (
        (ax_align, "alignment", "tab:green", "alignment (lower is better)"),
        (ax_unif, "uniformity", "tab:red", "uniformity (lower is better)"),
    ):
        x, y = _series(records, key)
        if x:
            ax.plot(x, y, "o-", color=color, markersize=4)
            _label_last(ax, x, y, "{:.3f}")
        ax.set_title(what)

    for ax in axes.flat:
        if not ax.lines:
            ax.text(0.5, 0.5, "no evaluation yet", ha="center", va="center", transform=ax.transAxes, color="gray")
        if best_step is not None:
            ax.axvline(best_step, color="gray", linestyle=":", linewidth=1)
        ax.grid(True, alpha=0.3)
    for ax in axes[1]:
        ax.set_xlabel("step")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path)
    return path


def _label_last(ax: Any, x: Sequence[int], y: Sequence[float], fmt: str) -> None:
    ax.annotate(fmt.format(y[-1]), (x[-1], y[-1]), xytext=(-6, 6), textcoords="offset points", ha="right", fontsize=8)


def _best_step(records: Sequence[dict[str, Any]]) -> int | None:
    saved = [r["step"] for r in records if r.get("new_best")]
    return saved[-1] if saved else None


def _save(fig: Any, path: str) -> None:
    parent = os.path.dirname(os.path.abspath(path))
    os.makedirs(parent, exist_ok=True)
    # hidden, as simcse.io names temporaries (recover() removes them); the same extension for matplotlib
    tmp = os.path.join(parent, f".{os.path.basename(path)}.tmp-{os.getpid()}{os.path.splitext(path)[1]}")
    try:
        fig.savefig(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
