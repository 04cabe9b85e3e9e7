"""The tables of reports/findings.md (which runs each compares) and the verdict on each of the paper's findings.

Used by ``scripts/findings/reproduce_findings.py`` (the grid) through ``findings_report.py`` (the report).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CLEAR_MARGIN = 2.0  # points of Spearman x 100 that count as "a clear margin"
# Raw-encoder baselines (no training): label -> pooler.
BASELINES = {"avg": "avg", "cls": "cls_before_pooler", "avg_first_last": "avg_first_last"}


@dataclass(frozen=True)
class Table:
    """One report table: rows of (label, run id); ``base:<name>`` rows are raw-encoder baselines."""

    key: str
    title: str
    paper: str
    rows: tuple[tuple[str, str], ...]
    curves: tuple[str, ...] = field(default=())  # run ids drawn in the table's figure
    paper_dev: tuple[float, ...] = field(default=())  # the paper's STS-B dev of each row (BERT-base), if given


TABLES = (
    Table(
        "baselines",
        "Unsupervised SimCSE vs. the raw encoder's pooling baselines",
        "Table 5, BERT rows",
        (
            ("raw encoder, avg (no training)", "base:avg"),
            ("raw encoder, [CLS] (no training)", "base:cls"),
            ("raw encoder, first-last avg (no training)", "base:avg_first_last"),
            ("unsup SimCSE (seed 42)", "unsup"),
            ("unsup SimCSE (seed 43)", "unsup_seed2"),
        ),
        ("unsup", "unsup_seed2"),
    ),
    Table(
        "dropout",
        "Dropout as data augmentation",
        "Table 3",
        (
            ("p = 0 (no dropout)", "dropout_0"),
            ("p = 0.05", "dropout_0.05"),
            ("p = 0.1 (default)", "unsup"),
            ("p = 0.2", "dropout_0.2"),
            ("p = 0.5", "dropout_0.5"),
            ("fixed 0.1 (same mask for both views)", "fixed_0.1"),
        ),
    ),
    Table(
        "pooling",
        "Pooling method and MLP head",
        "Table 6",
        (
            ("[CLS] w/ MLP (train and test)", "mlp_kept"),
            ("[CLS] w/ MLP (train only, default)", "unsup"),
            ("[CLS] w/o MLP", "no_mlp"),
            ("first-last avg., no MLP", "first_last_avg"),
        ),
    ),
    Table(
        "temperature",
        "Temperature",
        "Table D.1",
        (("tau = 0.01", "tau_0.01"), ("tau = 0.05 (default)", "unsup"), ("tau = 0.1", "tau_0.1"), ("tau = 1", "tau_1")),
    ),
    Table(
        "supervised",
        "Supervised SimCSE on the shared NLI triplets",
        "Table 4, hard negatives",
        (
            ("unsup SimCSE (reference)", "unsup"),
            ("NLI entailment pairs, no hard negative", "sup_pairs"),
            ("+ contradiction hard negative, alpha = 1", "sup_hardneg_a1"),
            ("+ contradiction hard negative, alpha = 2", "sup_hardneg_a2"),
        ),
    ),
)
FIG2_RUNS = (("unsup SimCSE", "unsup"), ("fixed 0.1", "fixed_0.1"), ("no dropout", "dropout_0"))
def _get(results: dict[str, dict[str, Any]], rid: str) -> dict[str, Any] | None:
    r = results.get(rid)
    return r if r and "error" not in r else None


def _dev(r: dict[str, Any]) -> float:
    return float(r["dev"]["stsb_dev"])


def verdict_baselines(results: dict[str, dict[str, Any]]) -> str:
    """Finding 1: unsup SimCSE beats every pooling baseline of the raw encoder by a clear margin."""
    bases = [r for name in BASELINES if (r := _get(results, f"base:{name}"))]
    runs = [
        (label, r) for label, rid in (("seed 42", "unsup"), ("seed 43", "unsup_seed2")) if (r := _get(results, rid))
    ]
    if not bases or not runs:
        return "not enough runs finished to judge."
    best_avg, best_dev = max(b["avg"] for b in bases), max(_dev(b) for b in bases)
    parts, ok = [], True
    for label, r in runs:
        d_avg, d_dev = r["avg"] - best_avg, _dev(r) - best_dev
        ok &= d_avg >= CLEAR_MARGIN and d_dev >= CLEAR_MARGIN
        parts.append(f"{label}: {d_avg:+.2f} on the 7-task average, {d_dev:+.2f} on STS-B dev")
    word = "**Reproduces**" if ok else "**Does not reproduce**"
    cls = _get(results, "base:cls")
    if cls is not None:
        r = runs[0][1]
        parts.append(
            f"over the raw [CLS] it starts from ({runs[0][0]}): {r['avg'] - cls['avg']:+.2f} avg, "
            f"{_dev(r) - _dev(cls):+.2f} STS-B dev"
        )
    return (
        f"{word} (clear margin = at least {CLEAR_MARGIN:g} points on both): unsup SimCSE minus the best "
        f"baseline ({best_avg:.2f} avg, {best_dev:.2f} STS-B dev): " + "; ".join(parts) + ". "
        "Paper (BERT-base): first-last avg. 56.70 -> unsup SimCSE 76.25 on the average."
    )


def verdict_dropout(results: dict[str, dict[str, Any]]) -> str:
    """Finding 2: p = 0.1 beats no dropout and the fixed mask; the fixed mask collapses."""
    ref = _get(results, "unsup")
    rows = {
        rid: r
        for rid in ("dropout_0", "dropout_0.05", "dropout_0.2", "dropout_0.5", "fixed_0.1")
        if (r := _get(results, rid))
    }
    if ref is None or "dropout_0" not in rows or "fixed_0.1" not in rows:
        return "not enough runs finished to judge."
    gaps = {rid: (ref["avg"] - rows[rid]["avg"], _dev(ref) - _dev(rows[rid])) for rid in ("dropout_0", "fixed_0.1")}
    ok = all(a > 0 and d > 0 for a, d in gaps.values())
    everything = {"unsup": ref, **rows}
    labels = {rid: label for label, rid in TABLES[1].rows}
    best = labels[max(everything, key=lambda k: _dev(everything[k]))]
    text = "; ".join(f"p = 0.1 minus *{labels[rid]}*: {a:+.2f} avg, {d:+.2f} STS-B dev" for rid, (a, d) in gaps.items())
    word = "**Reproduces**" if ok else "**Does not reproduce**"
    return (
        f"{word} (no dropout and fixed 0.1 both worse than p = 0.1 on the average and on STS-B dev): {text}. "
        f"Best row by STS-B dev: *{best}*. Paper (STS-B dev): p = 0 71.1, 0.05 81.1, **0.1 82.5**, 0.2 80.5, "
        "0.5 71.0, fixed 0.1 43.6."
    )


def verdict_best(results: dict[str, dict[str, Any]], table: Table, expected: str, paper: str) -> str:
    """Generic finding: is the paper's best row also the best row here (by STS-B dev and by average)?"""
    rows = {label: r for label, rid in table.rows if (r := _get(results, rid)) and r.get("kind") == "train"}
    if len(rows) < 2:
        return "not enough runs finished to judge."
    by_dev = max(rows, key=lambda k: _dev(rows[k]))
    by_avg = max(rows, key=lambda k: rows[k]["avg"])
    spread = max(_dev(r) for r in rows.values()) - min(_dev(r) for r in rows.values())
    ok = expected in (by_dev, by_avg)
    word = (
        "**Reproduces**"
        if by_dev == expected and by_avg == expected
        else ("**Partly**" if ok else "**Does not reproduce**")
    )
    text = (
        f"{word}: best by STS-B dev is *{by_dev}*, best by average is *{by_avg}* (paper's best: *{expected}*; "
        f"STS-B dev spread across rows {spread:.2f} points)."
    )
    if expected in rows:
        gap_dev, gap_avg = _dev(rows[by_dev]) - _dev(rows[expected]), rows[by_avg]["avg"] - rows[expected]["avg"]
        text += f" The paper's best trails the best row by {gap_dev:.2f} dev and {gap_avg:.2f} avg{_noise(results)}."
    return f"{text} Paper: {paper}"


def _noise(results: dict[str, dict[str, Any]]) -> str:
    """The seed-to-seed spread of the default run, the yardstick for calling a gap a tie."""
    a, b = _get(results, "unsup"), _get(results, "unsup_seed2")
    if a is None or b is None:
        return ""
    spread_dev, spread_avg = abs(_dev(a) - _dev(b)), abs(a["avg"] - b["avg"])
    return f" (seed-to-seed spread of the default run: {spread_dev:.2f} dev, {spread_avg:.2f} avg)"


def verdict_supervised(results: dict[str, dict[str, Any]]) -> str:
    """Finding 5: contradiction hard negatives help (alpha = 1 over pairs); supervised beats unsupervised."""
    pairs, a1, a2, unsup = (_get(results, k) for k in ("sup_pairs", "sup_hardneg_a1", "sup_hardneg_a2", "unsup"))
    if pairs is None or a1 is None:
        return "not enough runs finished to judge."
    d_avg, d_dev = a1["avg"] - pairs["avg"], _dev(a1) - _dev(pairs)
    word = "**Reproduces**" if d_avg > 0 and d_dev > 0 else "**Does not reproduce**"
    text = f"{word} (hard negative, alpha = 1, minus pairs only): {d_avg:+.2f} avg, {d_dev:+.2f} STS-B dev."
    if a2 is not None:
        text += f" alpha = 2 minus alpha = 1: {a2['avg'] - a1['avg']:+.2f} avg, {_dev(a2) - _dev(a1):+.2f} STS-B dev."
    if unsup is not None:
        best_sup = max((r for r in (pairs, a1, a2) if r), key=lambda r: r["avg"])
        text += f" Best supervised minus unsup SimCSE: {best_sup['avg'] - unsup['avg']:+.2f} avg."
    return (
        text + " Paper (STS-B dev, BERT-base, full NLI train sets, batch 512): entailment pairs 84.9 -> + contradiction"
        " hard negatives 86.2 (alpha = 1 chosen)."
    )


def verdict_align_uniform(results: dict[str, dict[str, Any]], start: dict[str, float] | None) -> str:
    """Finding 6: how alignment and uniformity move from step 0 to the last evaluation."""
    parts = []
    for label, rid in FIG2_RUNS:
        r = _get(results, rid)
        if r is None or not r["curve"]:
            continue
        first = start or r["curve"][0]
        last = r["curve"][-1]
        parts.append(
            f"*{label}*: uniformity {first['uniformity']:.2f} -> {last['uniformity']:.2f}, "
            f"alignment {first['alignment']:.3f} -> {last['alignment']:.3f}"
        )
    if not parts:
        return "not enough runs finished to judge."
    return (
        "From step 0 (the raw encoder's [CLS]) to the last evaluation: " + "; ".join(parts) + ". Paper: all "
        "three improve uniformity; the fixed-mask and no-dropout runs let alignment degrade sharply while "
        "unsup SimCSE keeps it steady."
    )


def verdict_pooling(results: dict[str, dict[str, Any]]) -> str:
    """Finding 3, plus what training adds to the one pooling that also has a raw baseline."""
    text = verdict_best(
        results,
        TABLES[2],
        "[CLS] w/ MLP (train only, default)",
        "MLP in training only is best for unsup, by "
        "about 1 point on STS-B dev over the other three (all within ~1.6 points).",
    )
    trained, raw = _get(results, "first_last_avg"), _get(results, "base:avg_first_last")
    if trained is not None and raw is not None:
        text += (
            f" Training with first-last avg. pooling vs. the same pooling untrained: {trained['avg'] - raw['avg']:+.2f}"
            f" avg, {_dev(trained) - _dev(raw):+.2f} STS-B dev."
        )
    return text


def verdict_temperature(results: dict[str, dict[str, Any]]) -> str:
    """Finding 4: the paper's best tau, and whether tau = 1 is the worst row."""
    text = verdict_best(results, TABLES[3], "tau = 0.05 (default)", "tau = 0.05 is best; tau = 1 is far behind.")
    rows = {rid: r for _, rid in TABLES[3].rows if (r := _get(results, rid))}
    if "tau_1" in rows and len(rows) > 1:
        worst = all(_dev(rows["tau_1"]) <= _dev(r) and rows["tau_1"]["avg"] <= r["avg"] for r in rows.values())
        text += f" tau = 1 is the worst row on both metrics: {'yes' if worst else 'no'}."
    return text


VERDICTS = {
    "baselines": verdict_baselines,
    "dropout": verdict_dropout,
    "pooling": verdict_pooling,
    "temperature": verdict_temperature,
    "supervised": verdict_supervised,
}
