"""Write reports/findings.md and its figures from the result JSONs of ``scripts/findings/reproduce_findings.py``."""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
from typing import Any

from findings_tables import FIG2_RUNS, TABLES, VERDICTS, Table, verdict_align_uniform
from findings_views import VIEW_TABLES, VIEW_VERDICTS

from simcse.evaluation import PAPER_COLUMNS
from simcse.plots import plot_align_uniform as plot_figure2
from simcse.plots import smooth

logger = logging.getLogger("reproduce_findings")

NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"
ALL_TABLES = (*TABLES, *VIEW_TABLES)
VIEWS_RECIPE = "each row's change to the unsup recipe in `scripts/findings/findings_views.py` (dropout 0.1 unless said)"
ALL_VERDICTS = {**VERDICTS, **VIEW_VERDICTS}


def selected_tables(keys: str | None) -> tuple[Table, ...]:
    """The tables named in ``--tables`` (comma-separated keys), or every table."""
    if not keys:
        return ALL_TABLES
    wanted = keys.split(",")
    unknown = sorted(set(wanted) - {t.key for t in ALL_TABLES})
    if unknown:
        raise SystemExit(f"--tables: unknown table(s) {unknown}; known: {[t.key for t in ALL_TABLES]}")
    return tuple(t for t in ALL_TABLES if t.key in wanted)


def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def table_markdown(table: Table, results: dict[str, dict[str, Any]]) -> str:
    """One markdown table: STS-B dev (selection), the 7 test tasks, their average, dev alignment/uniformity."""
    paper = ["paper STS-B dev"] if table.paper_dev else []
    head = ["row", *paper, "STS-B dev", *PAPER_COLUMNS.values(), "Avg.", "align", "uniform", "best step"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for i, (label, rid) in enumerate(table.rows):
        r = results.get(rid, {})
        theirs = [_fmt(table.paper_dev[i], 1)] if table.paper_dev else []
        if "error" in r or not r:
            cells = [*theirs, "failed" if r else "not run"]
            lines.append(f"| {label} | " + " | ".join(cells + [""] * (len(head) - 1 - len(cells))) + " |")
            continue
        dev = r.get("dev") or {}
        cells = [
            *theirs,
            _fmt(dev.get("stsb_dev")),
            *(_fmt(r["test"][t]) for t in PAPER_COLUMNS),
            f"**{_fmt(r['avg'])}**",
            _fmt(dev.get("alignment"), 3),
            _fmt(dev.get("uniformity"), 3),
            str(r.get("best_step", "–")),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_table(table: Table, results: dict[str, dict[str, Any]], path: str) -> None:
    """STS-B dev and training loss over steps, one line per trained row (baselines as dashed levels)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_dev, ax_loss) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = iter(("--", ":", "-."))
    for label, rid in table.rows:
        r = results.get(rid, {})
        if r.get("kind") == "baseline":
            value = r["dev"]["stsb_dev"]
            ax_dev.axhline(value, ls=next(styles), lw=1, color="grey", label=f"{label}: {value:.1f}")
        elif r.get("kind") == "train":
            steps = [c["step"] for c in r["curve"]]
            ax_dev.plot(steps, [c["stsb_dev"] for c in r["curve"]], marker="o", ms=3, label=label)
            ax_loss.plot([s for s, _ in r["loss"]], smooth([v for _, v in r["loss"]], 10), lw=1, label=label)
    ax_dev.set(xlabel="step", ylabel="STS-B dev (Spearman x 100)", title="selection metric")
    ax_loss.set(xlabel="step", ylabel="training loss (10-step mean)", title="training loss")
    ax_dev.legend(fontsize=7)
    ax_loss.legend(fontsize=7)
    fig.suptitle(f"{table.title} (cf. paper {table.paper})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_align_uniform(results: dict[str, dict[str, Any]], start: dict[str, float] | None, path: str) -> None:
    """Paper Figure 2: uniformity (x) vs alignment (y) on STS-B dev, arrows in training order from step 0."""
    first = [{**start, "step": 0}] if start else []
    trajectories = {
        label: first + results[rid]["curve"] for label, rid in FIG2_RUNS if results.get(rid, {}).get("kind") == "train"
    }
    plot_figure2(path, trajectories=trajectories, title="alignment vs uniformity on STS-B dev during training")


def _notes(path: str) -> str:
    """The hand-written block of an existing report (kept across regenerations)."""
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        match = re.search(re.escape(NOTES_START) + r"(.*?)" + re.escape(NOTES_END), text, re.S)
        if match:
            return match.group(1).strip("\n")
    return "(no notes yet)"


def budget_markdown(args: argparse.Namespace, lr: float, sup_lr: float, results: dict[str, dict[str, Any]]) -> str:
    """The shared recipe, and wall time per run."""
    full = selected_tables(getattr(args, "tables", None)) == ALL_TABLES
    trained = [r for r in results.values() if r.get("kind") == "train"]
    train_s = [r["train_s"] for r in trained]
    eval_s = [r["eval_s"] for r in trained]
    total_s = _total_wall(args.out)
    rows: list[tuple[str, str]] = [
        ("start (every row)", f"`{args.model}`"),
        (
            "unsupervised data",
            f"`corpus/wiki_sentences.txt`, its first {args.steps * args.batch_size:,} lines, one pass",
        ),
        ("supervised data", "`nli/nli_for_simcse.csv` (9,338 triplets; `pairs` uses sent0, sent1 only)"),
        ("steps / batch / max_seq_len", f"{args.steps} / {args.batch_size} / {args.max_seq_len}"),
        ("learning rate", f"unsup {lr:g}, supervised {sup_lr:g}; linear decay, no warmup, AdamW, clip 1.0"),
        ("precision", "bf16 autocast, fp32 weights" if args.precision == "bf16" else "fp32"),
        ("seeds", f"{args.seed} for every row; the default unsup run repeated with seed {args.seed + 1}"),
        ("selection", f"STS-B dev (fp32, truncated at {args.max_seq_len}) every {args.eval_steps} steps; best kept"),
        ("test", "STS12-16 ('all'), STS-B test, SICK-R test; Spearman x 100; untruncated; `Avg.` = their mean"),
        ("align / uniform", "on STS-B dev at the selected step (pairs with gold > 4 / all sentences), as in Figure 2"),
        (
            "wall time per run",
            f"training {_mean(train_s)} s (min {_min(train_s)}, max {_max(train_s)}), final "
            f"evaluation {_mean(eval_s)} s; {len(trained)} training runs",
        ),
        (
            "total wall time",
            f"{total_s / 60:.1f} min over all invocations (`{args.workers}` worker(s) x "
            f"`{args.threads or 'default'}` thread(s))",
        ),
    ]
    if not full:  # Tables 1 and 2 alone: no supervised row, one seed
        rows[2] = ("views, positives, two encoders", VIEWS_RECIPE)
        rows[6] = ("seeds", f"{args.seed} for every row (one seed; the seed spread is in reports/findings.md)")
    return "| | |\n|---|---|\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def _mean(xs: list[float]) -> str:
    return f"{sum(xs) / len(xs):.0f}" if xs else "–"


def _min(xs: list[float]) -> str:
    return f"{min(xs):.0f}" if xs else "–"


def _max(xs: list[float]) -> str:
    return f"{max(xs):.0f}" if xs else "–"


def _total_wall(out: str) -> float:
    path = os.path.join(out, "invocations.jsonl")
    if not os.path.isfile(path):
        return 0.0
    return sum(json.loads(line)["wall_s"] for line in open(path, encoding="utf-8") if line.strip())


def sweep_markdown(sweep: list[dict[str, Any]], lr: float) -> str:
    """The learning-rate sweep of the default unsup recipe."""
    if not sweep:
        return f"Fixed at {lr:g} by `--lr` (no sweep)."
    lines = ["| lr | best STS-B dev | at step | 7-task avg |", "|---:|---:|---:|---:|"]
    for s in sweep:
        mark = " (chosen)" if s["lr"] == lr else ""
        lines.append(f"| {s['lr']:g}{mark} | {_fmt(s['stsb_dev'])} | {s['best_step']} | {_fmt(s['avg'])} |")
    return "\n".join(lines)


def timing_markdown(results: dict[str, dict[str, Any]]) -> str:
    """Wall time of every run."""
    lines = ["| run | best step | training s | final eval s |", "|---|---:|---:|---:|"]
    for rid, r in results.items():
        if "error" in r:
            lines.append(f"| {rid} | failed: {r['error'][:80]} | | |")
        else:
            lines.append(
                f"| {rid} | {r.get('best_step', '–')} | {_fmt(r.get('train_s'), 0)} | {_fmt(r.get('eval_s'), 0)} |"
            )
    return "\n".join(lines)


def write_report(
    args: argparse.Namespace,
    lr: float,
    sup_lr: float,
    sweep: list[dict[str, Any]],
    results: dict[str, dict[str, Any]],
    command: str,
) -> None:
    """Assemble reports/findings.md and its figures from the result JSONs."""
    fig_dir = os.path.dirname(os.path.abspath(args.report))
    os.makedirs(fig_dir, exist_ok=True)
    stem = os.path.splitext(os.path.basename(args.report))[0]
    start = (results.get("base:cls") or {}).get("dev")
    tables = selected_tables(getattr(args, "tables", None))
    full = tables == ALL_TABLES
    which = "core findings" if full else "findings of " + ", ".join(f"Table {t.paper.split()[-1]}" for t in tables)
    sections = [
        f"# SimCSE's {which} at CPU scale (`{os.path.basename(args.model.rstrip('/'))}`)\n",
        "Each row starts from the same raw encoder, sees the same data and budget, is selected on STS-B dev and "
        "is scored on the 7-task STS suite. Generated by `scripts/findings/reproduce_findings.py` from the run JSONs; "
        "only the *Notes* block at the end is written by hand.\n",
        f"Rerun (results are cached per run under `{args.out}`):\n\n```\nHF_HUB_OFFLINE=1 {command}\n```\n",
        "## Budget and protocol\n",
        budget_markdown(args, lr, sup_lr, results) + "\n",
        "## Learning rate (picked once, default unsup recipe, STS-B dev)\n",
        sweep_markdown(sweep, lr) + "\n",
        "## Findings at a glance\n",
    ]
    verdicts = [
        f"{i}. **{t.title}** (paper {t.paper}): {ALL_VERDICTS[t.key](results)}" for i, t in enumerate(tables, 1)
    ]
    if full:
        verdicts.append(
            f"{len(tables) + 1}. **Alignment and uniformity** (paper Figure 2): {verdict_align_uniform(results, start)}"
        )
    sections.append("\n".join(verdicts) + "\n")
    columns = "Columns: STS-B dev (selection, best step), the seven test scores, `Avg.` (their mean, bold), "
    sections.append(columns + "alignment and uniformity on STS-B dev at the selected step (lower is better).\n")
    for i, table in enumerate(tables, 1):
        figure = f"{stem}_{table.key}.png"
        plot_table(table, results, os.path.join(fig_dir, figure))
        sections += [
            f"## {i}. {table.title} (paper {table.paper})\n",
            table_markdown(table, results) + "\n",
            f"![{table.title}]({figure})\n",
        ]
    if full:
        figure = f"{stem}_align_uniform.png"
        plot_align_uniform(results, start, os.path.join(fig_dir, figure))
        sections += [
            f"## {len(tables) + 1}. Alignment and uniformity during training (paper Figure 2)\n",
            f"Every {args.eval_steps} steps on STS-B dev; step 0 is the raw encoder's [CLS] "
            "(the state every `cls` run starts from).\n",
            f"![alignment vs uniformity]({figure})\n",
        ]
    sections += [
        "## Wall time per run\n",
        timing_markdown(results) + "\n",
        "## Notes\n",
        f"{NOTES_START}\n{_notes(args.report)}\n{NOTES_END}\n",
    ]
    with open(args.report, "w", encoding="utf-8") as f:
        f.write("\n".join(sections))
    logger.info("report written to %s", args.report)
