"""Training curves of a run (loss, dev metrics, alignment, uniformity over steps) and the
alignment-uniformity plot of the SimCSE paper's Figure 2.

The four panels follow what the SimCSE paper watches during training (its Figure 2 tracks
alignment and uniformity; model selection uses STS-B dev). The data is the records of a run's
``metrics.jsonl`` as :mod:`simcse.runs` reads them (one record per step: ``loss``; at evaluation steps
also ``stsb_dev``, ``sickr_dev``, ``alignment`` and ``uniformity``); which file a figure goes to is the
caller's (the run folder's: :mod:`simcse.runs.report`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simcse.io import StrPath


def _series(records: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    pairs = [(r["step"], float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
    return [p[0] for p in pairs], [p[1] for p in pairs]


def smooth(values: Sequence[float], window: int) -> np.ndarray:
    """Trailing moving average (the first points average what there is so far)."""
    v = np.asarray(values, dtype=np.float64)
    if window <= 1 or v.size == 0:
        return v
    sums = np.cumsum(np.insert(v, 0, 0.0))  # (n + 1,)
    counts = np.minimum(np.arange(1, v.size + 1), window)  # (n,)
    return (sums[1:] - sums[np.arange(1, v.size + 1) - counts]) / counts


def plot_training_curves(
    records: Sequence[dict[str, Any]], path: StrPath, title: str | None = None, metric: str = "stsb_dev"
) -> str:
    """Write a 2x2 figure (loss, dev metrics, alignment, uniformity vs step) to ``path`` (PNG).

    Args:
        records: ``metrics.jsonl`` records (see :func:`simcse.runs.folder.read_metrics`).
        path: Output file; written beside under a temporary name, then renamed (never half-written).
        title: Figure title (e.g. the run's model and recipe).
        metric: The metric that selected the best model: the dev panel draws it (bold) with the other
            metrics of its evaluator (``<name>/...``); the default's are STS-B and SICK-R dev Spearman.

    Returns:
        ``path``, as a string.
    """
    from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

    path = os.fspath(path)
    fig = Figure(figsize=(10, 7), dpi=120)
    axes = fig.subplots(2, 2, sharex=True)
    (ax_loss, ax_sts), (ax_align, ax_unif) = axes
    best_step = _best_step(records)

    _draw_loss(ax_loss, records)
    prefix = metric.rsplit("/", 1)[0] + "/" if "/" in metric else ""
    for key, label, style in _dev_lines(records, metric, prefix):
        x, y = _series(records, key)
        if x:
            ax_sts.plot(x, y, style, markersize=4, label=label, linewidth=2.0 if key == metric else 1.0)
            _label_last(ax_sts, x, y, "{:.2f}" if not prefix else "{:.3f}")
    if ax_sts.lines:
        ax_sts.legend(fontsize=8)
    best_note = f"; best (saved) at step {best_step}" if best_step is not None else ""
    ax_sts.set_title(f"dev {prefix[:-1] or 'Spearman x 100'}{best_note}")

    for ax, key, color, what in (
        (ax_align, "alignment", "tab:green", "alignment (lower is better)"),
        (ax_unif, "uniformity", "tab:red", "uniformity (lower is better)"),
    ):
        keys = [key] if any(key in r for r in records) else _keys(records, lambda k, key=key: k.endswith("/" + key))
        for k in keys:
            x, y = _series(records, k)
            if x:
                ax.plot(x, y, "o-", color=color if len(keys) == 1 else None, markersize=4, label=k.rsplit("/", 1)[0])
                _label_last(ax, x, y, "{:.3f}")
        if len(keys) > 1:
            ax.legend(fontsize=8)
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


def _keys(records: Sequence[dict[str, Any]], keep: Any) -> list[str]:
    """Every key of ``records`` that ``keep`` accepts, in the order first seen."""
    return [k for k in dict.fromkeys(k for r in records for k in r) if keep(k)]


def _dev_lines(records: Sequence[dict[str, Any]], metric: str, prefix: str) -> list[tuple[str, str, str]]:
    """(key, label, style) of the dev panel's lines: STS-B / SICK-R dev, or the selecting evaluator's metrics."""
    if not prefix:
        return [("stsb_dev", "STS-B dev", "o-"), ("sickr_dev", "SICK-R dev", "s--")]
    others = _keys(records, lambda k: k.startswith(prefix) and k != metric and "/" not in k[len(prefix):]
                   and k[len(prefix):] not in ("alignment", "uniformity"))  # fmt: skip
    return [(metric, f"{metric} (selects)", "o-")] + [(k, k[len(prefix) :], "s--") for k in others]


def plot_align_uniform(
    path: StrPath,
    points: Sequence[Mapping[str, Any]] = (),
    trajectories: Mapping[str, Sequence[Mapping[str, Any]]] | None = None,
    *,
    title: str = "Alignment vs uniformity",
    color_label: str | None = None,
) -> str:
    """The SimCSE paper's Figure 2 (after Wang & Isola, 2020): uniformity on x, alignment on y, lower is better.

    Args:
        path: Image file (format from its extension), replaced atomically.
        points: One marker each, with ``uniformity``, ``alignment`` and ``label``; optional ``group``
            (marker shape, one legend entry per group) and ``color`` (a value on a colour scale titled
            ``color_label``, e.g. the STS average).
        trajectories: Name -> records in training order (``uniformity``, ``alignment``, ``step``): a line with
            arrows, its last point labelled with its step.
        title: Axes title.
        color_label: Colour bar title, when points carry ``color``.

    Returns:
        ``path``, as a string.
    """
    from matplotlib.figure import Figure  # not pyplot: no global backend or figure state

    path = os.fspath(path)
    fig = Figure(figsize=(7, 5.2), dpi=120)
    ax = fig.subplots()
    _draw_points(fig, ax, points, color_label)
    for name, records in (trajectories or {}).items():
        xs, ys = [r["uniformity"] for r in records], [r["alignment"] for r in records]
        (line,) = ax.plot(xs, ys, marker="o", ms=4, lw=0.8, label=name)
        for i in range(1, len(xs)):
            arrow = {"arrowstyle": "->", "color": line.get_color(), "lw": 1.2}
            ax.annotate("", (xs[i], ys[i]), (xs[i - 1], ys[i - 1]), arrowprops=arrow)
        if xs:
            ax.annotate(f"step {records[-1].get('step', '')}", (xs[-1], ys[-1]), fontsize=7, color=line.get_color(),
                        xytext=(3, 3), textcoords="offset points")  # fmt: skip
    ax.set_xlabel("uniformity (lower is better)")
    ax.set_ylabel("alignment (lower is better)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, alpha=0.3)
    ax.margins(0.2)  # room for the labels of the outermost points
    ax.locator_params(axis="x", nbins=6)  # close models give long tick labels (-3.832): fewer, so they do not overlap
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path)
    return path


def _draw_points(fig: Any, ax: Any, points: Sequence[Mapping[str, Any]], color_label: str | None) -> None:
    """Scatter ``points`` (see :func:`plot_align_uniform`), each labelled, labels moved off close neighbours."""
    values = [p["color"] for p in points if "color" in p]
    scale = {"cmap": "viridis", "vmin": min(values), "vmax": max(values)} if values else {}
    markers = dict(zip(dict.fromkeys(p.get("group") for p in points), "o^sDvP*"))
    mappable = None
    placed: list[tuple[float, float]] = []
    for p in points:
        x, y = p["uniformity"], p["alignment"]
        group = p.get("group")
        style = {"c": [p["color"]], **scale} if "color" in p else {}
        style |= {"marker": markers[group], "s": 80, "edgecolors": "black", "zorder": 3}
        legend = group if group is not None and group not in ax.get_legend_handles_labels()[1] else None
        mappable = ax.scatter([x], [y], label=legend, **style)
        # a label next to an already labelled point moves: left of it when the neighbour is to the right,
        # below-right when it is to the left
        near = [px for px, py in placed if abs(x - px) < 0.1 and abs(y - py) < 0.03]
        placed.append((x, y))
        offset, align = (7, 5), "left"
        if near:
            offset, align = ((-7, 5), "right") if near[0] > x else ((7, -12), "left")
        ax.annotate(p["label"], (x, y), xytext=offset, textcoords="offset points", fontsize=8, ha=align)
    if values and mappable is not None:
        fig.colorbar(mappable, ax=ax, label=color_label or "")


def _draw_loss(ax: Any, records: Sequence[dict[str, Any]]) -> None:
    """The loss panel: per-step values under their moving average, the last one written out (4 significant
    digits); a log axis when the loss spans decades (2.3 to 3e-5), where a linear one shows the tail as zero."""
    steps, loss = _series(records, "loss")
    if steps:
        window = max(1, len(steps) // 20)
        shown = smooth(loss, window)
        if window > 1:  # noisy per-step values, faint, under their moving average
            ax.plot(steps, loss, color="tab:blue", alpha=0.3, linewidth=0.8, label="per step")
            ax.plot(steps, shown, color="tab:blue", linewidth=1.8, label=f"mean of {window} steps")
            ax.legend(fontsize=8)
        else:
            ax.plot(steps, loss, color="tab:blue", linewidth=1.2)
        finite = [v for v in loss if np.isfinite(v)]
        # within a decade (and for negative losses, e.g. simsiam's, or a loss of exactly 0) the linear axis
        # reads better: its tick labels carry an offset and a scale (1e-5) where needed
        if finite and min(finite) > 0 and max(finite) >= 10 * min(finite):
            ax.set_yscale("log")
        _label_last(ax, steps, shown, "{:.4g}")
    ax.set_title("training loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))


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
