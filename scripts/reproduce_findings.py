"""Reproduce the SimCSE paper's core findings at CPU scale (Gao, Yao & Chen, EMNLP 2021).

Every row starts from the same encoder, sees the same data and the same step budget, is selected
on STS-B dev (the trainer keeps the best checkpoint) and is scored on the 7-task STS suite (test).
Tables: unsupervised SimCSE vs pooling baselines (paper Table 5), dropout (Table 3), pooling and
MLP head (Table 6), temperature (Table D.1), supervised NLI with/without hard negatives (Table 4),
and alignment/uniformity during training (Figure 2).

Each run writes ``<out>/runs/<id>-<hash>/result.json``; a run whose result exists is skipped, and a
run killed mid-way resumes from its last checkpoint. The markdown report is rebuilt from the JSONs
at the end (``--report-only`` rebuilds it alone). Text between the ``notes`` markers of an existing
report is kept.

Example (the CPU grid of reports/findings.md; ``--lr`` skips the learning-rate sweep)::

    HF_HUB_OFFLINE=1 python scripts/reproduce_findings.py --workers 2 --threads 1

    # the same grid on bert-base-uncased with a GPU
    python scripts/reproduce_findings.py --model bert-base-uncased --steps 2000 --lr 3e-5 \
        --out runs/findings-bert-base --report reports/findings-bert-base.md
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import itertools
import json
import logging
import math
import multiprocessing
import os
import re
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger("reproduce_findings")

# paper's column order; "Avg." is the mean of these seven test scores
TASK_COLUMNS = {
    "STS12": "STS12",
    "STS13": "STS13",
    "STS14": "STS14",
    "STS15": "STS15",
    "STS16": "STS16",
    "STSBenchmark": "STS-B",
    "SICKRelatedness": "SICK-R",
}
CLEAR_MARGIN = 2.0  # points of Spearman x 100 that count as "a clear margin"
NOTES_START, NOTES_END = "<!-- notes:start -->", "<!-- notes:end -->"

# ---------------------------------------------------------------------------------------------- grid
# Run id -> changes to the default unsupervised recipe. Several tables share a run (e.g. "unsup").
UNSUP_RUNS: dict[str, dict[str, Any]] = {
    "unsup": {},
    "unsup_seed2": {"seed": 43},
    "dropout_0": {"dropout": 0.0},
    "dropout_0.05": {"dropout": 0.05},
    "dropout_0.2": {"dropout": 0.2},
    "dropout_0.5": {"dropout": 0.5},
    "fixed_0.1": {"same_dropout_mask": True},
    "mlp_kept": {"mlp_only_train": False},
    "no_mlp": {"pooler": "cls_before_pooler"},
    "first_last_avg": {"pooler": "avg_first_last"},
    "tau_0.01": {"temperature": 0.01},
    "tau_0.1": {"temperature": 0.1},
    "tau_1": {"temperature": 1.0},
}
# Supervised runs: changes to the supervised recipe (NLI CSV, MLP kept).
SUP_RUNS: dict[str, dict[str, Any]] = {
    "sup_pairs": {"mode": "pairs"},
    "sup_hardneg_a1": {"mode": "triplets", "hard_negative_weight": 0.0},
    "sup_hardneg_a2": {"mode": "triplets", "hard_negative_weight": math.log(2.0)},
}
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
LR_SWEEP_DEFAULT = "3e-5,1e-4,3e-4,1e-3"


# ------------------------------------------------------------------------------------------ configs
def base_overrides(args: argparse.Namespace, lr: float) -> dict[str, Any]:
    """The shared recipe: same start, same budget, same evaluation for every row."""
    return {
        "model_name_or_path": args.model,
        "data_dir": args.data_dir,
        "max_steps": args.steps,
        "batch_size": args.batch_size,
        "max_seq_len": args.max_seq_len,
        "learning_rate": lr,
        "warmup_steps": 0,
        "eval_steps": args.eval_steps,
        "seed": args.seed,
        "mixed_precision": args.precision if args.precision == "bf16" else "no",
        "keep_last_n": 1,
    }


def unsup_overrides(args: argparse.Namespace, lr: float, change: dict[str, Any]) -> dict[str, Any]:
    """Default unsup recipe (cls + MLP in training only, dropout 0.1, tau 0.05) plus ``change``."""
    recipe = {
        "mode": "unsup",
        "train_file": "corpus/wiki_sentences.txt",
        # one pass over exactly the sentences the budget reaches (tokenizing all 200k costs ~1 min a run)
        "max_train_samples": args.steps * args.batch_size,
        "pooler": "cls",
        "mlp_only_train": True,
        "dropout": 0.1,
        "temperature": 0.05,
    }
    return {**base_overrides(args, lr), **recipe, **change}


def sup_overrides(args: argparse.Namespace, lr: float, change: dict[str, Any]) -> dict[str, Any]:
    """Supervised recipe: NLI CSV, cls + MLP kept at test time, dropout 0.1, tau 0.05, plus ``change``."""
    recipe = {
        "train_file": "nli/nli_for_simcse.csv",
        "pooler": "cls",
        "mlp_only_train": False,
        "dropout": 0.1,
        "temperature": 0.05,
    }
    return {**base_overrides(args, lr), **recipe, **change}


def run_dir(out: str, run_id: str, overrides: dict[str, Any]) -> str:
    """``<out>/runs/<id>-<hash of the full config>``: a changed budget or model never reuses a result."""
    digest = hashlib.sha1(json.dumps(overrides, sort_keys=True).encode()).hexdigest()[:8]
    return os.path.join(out, "runs", f"{run_id}-{digest}")


# ------------------------------------------------------------------------------------ worker side
def _setup_worker(threads: int | None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if threads:
        import torch

        torch.set_num_threads(threads)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def score_suite(encoder: Any, data_dir: str, precision: str) -> dict[str, Any]:
    """7-task STS test suite, untruncated (up to the model's length), SentEval protocol."""
    import torch

    from simcse import evaluate_sts

    encoder.to(_device())
    encoder.max_seq_length = min(int(encoder.tokenizer.model_max_length), 512)
    autocast = torch.autocast(encoder.device.type, dtype=torch.bfloat16, enabled=precision == "bf16")

    def encode(sentences: list[str]) -> Any:
        with autocast:
            return encoder.encode(sentences, batch_size=128)

    result = evaluate_sts(encode, data_dir=data_dir, stsb_split="test")
    return {
        "test": {t: result["tasks"][t]["score"] for t in TASK_COLUMNS},
        "avg": result["avg"],
        "test_alignment": result["alignment"],
        "test_uniformity": result["uniformity"],
    }


def score_dev(encoder: Any, data_dir: str, max_seq_len: int) -> dict[str, float]:
    """STS-B dev and SICK-R dev with the trainer's evaluator (fp32), sentences truncated at ``max_seq_len``
    as the trainer truncated them when this grid was run (reports/findings.md states it)."""
    from simcse.training import DevEvaluator

    encoder.to(_device())
    encoder.max_seq_length = max_seq_len
    return DevEvaluator(data_dir, batch_size=128)(encoder, use_head=True)


def run_baseline(job: dict[str, Any]) -> dict[str, Any]:
    """Score the raw encoder with one pooling mode (no training)."""
    from simcse import Encoder

    t0 = time.time()
    dev = score_dev(Encoder.from_pretrained(job["model"], pooler=job["pooler"]), job["data_dir"], job["max_seq_len"])
    suite = score_suite(Encoder.from_pretrained(job["model"], pooler=job["pooler"]), job["data_dir"], job["precision"])
    return {"kind": "baseline", "pooler": job["pooler"], "dev": dev, **suite, "eval_s": time.time() - t0}


def _read_metrics(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def run_training(job: dict[str, Any]) -> dict[str, Any]:
    """Train one config (resuming a checkpoint if one exists), then score its best model on the suite."""
    from simcse import Encoder
    from simcse.config import load_config
    from simcse.training import train

    out = job["dir"]
    has_checkpoint = (
        bool([n for n in os.listdir(os.path.join(out, "checkpoints")) if n.startswith("step-")])
        if (os.path.isdir(os.path.join(out, "checkpoints")))
        else False
    )
    if not has_checkpoint:
        shutil.rmtree(out, ignore_errors=True)  # a run killed before its first checkpoint restarts clean
    cfg = load_config(None, {**job["overrides"], "output_dir": out})
    t0 = time.time()
    state = train(cfg, resume=has_checkpoint)
    train_s = time.time() - t0
    records = _read_metrics(os.path.join(out, "metrics.jsonl"))
    evals = [r for r in records if "stsb_dev" in r]
    best = next((r for r in evals if r["step"] == state["best_step"]), None)
    result: dict[str, Any] = {
        "kind": "train",
        "overrides": job["overrides"],
        "best_step": state["best_step"],
        "dev": {k: best[k] for k in ("stsb_dev", "sickr_dev", "alignment", "uniformity")} if best else None,
        "curve": [{k: r[k] for k in ("step", "stsb_dev", "sickr_dev", "alignment", "uniformity")} for r in evals],
        "loss": [[r["step"], r["loss"]] for r in records],
        "train_s": train_s,
    }
    if best is None or not os.path.isdir(os.path.join(out, "model")):
        raise RuntimeError(f"{out}: no checkpoint was saved (STS-B dev never finite: {[r['stsb_dev'] for r in evals]})")
    t1 = time.time()
    result.update(score_suite(Encoder.from_pretrained(os.path.join(out, "model")), job["data_dir"], job["precision"]))
    result["eval_s"] = time.time() - t1
    shutil.rmtree(os.path.join(out, "checkpoints"), ignore_errors=True)  # the result is final; free the disk
    return result


def execute(job: dict[str, Any]) -> dict[str, Any]:
    """Worker entry point: run one job and write its result JSON (cached: an existing one is returned)."""
    path = job["result_path"]
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    _setup_worker(job["threads"])
    os.makedirs(os.path.dirname(path), exist_ok=True)
    result = run_baseline(job) if job["kind"] == "baseline" else run_training(job)
    result["id"] = job["id"]
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, path)
    return result


# ------------------------------------------------------------------------------------- scheduling
def train_job(args: argparse.Namespace, run_id: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """A picklable description of one training run."""
    directory = run_dir(args.out, run_id, overrides)
    return {
        "kind": "train",
        "id": run_id,
        "dir": directory,
        "overrides": overrides,
        "result_path": os.path.join(directory, "result.json"),
        "data_dir": args.data_dir,
        "precision": args.precision,
        "threads": args.threads,
    }


def baseline_job(args: argparse.Namespace, name: str, pooler: str) -> dict[str, Any]:
    """A picklable description of one raw-encoder baseline."""
    digest = hashlib.sha1(f"{args.model}|{args.max_seq_len}|{args.precision}".encode()).hexdigest()[:8]
    return {
        "kind": "baseline",
        "id": f"base:{name}",
        "model": args.model,
        "pooler": pooler,
        "data_dir": args.data_dir,
        "max_seq_len": args.max_seq_len,
        "precision": args.precision,
        "threads": args.threads,
        "result_path": os.path.join(args.out, "baselines", f"{name}-{digest}.json"),
    }


def run_all(jobs: list[dict[str, Any]], workers: int) -> dict[str, dict[str, Any]]:
    """Run jobs in ``workers`` fresh processes (a crash loses one run, not the grid); id -> result."""
    results: dict[str, dict[str, Any]] = {}
    context = multiprocessing.get_context("spawn")
    # a fresh process per run (Python >= 3.11): no state leaks between runs
    fresh = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context, **fresh) as pool:
        futures = {pool.submit(execute, job): job for job in jobs}
        for future in cf.as_completed(futures):
            job = futures[future]
            try:
                results[job["id"]] = future.result()
                logger.info("done: %s", job["id"])
            except Exception as err:  # report and go on: the other runs are still worth having
                logger.error("FAILED: %s (%s: %s)", job["id"], type(err).__name__, err)
                results[job["id"]] = {"id": job["id"], "error": f"{type(err).__name__}: {err}"}
    return results


def choose_lr(args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """``--lr`` if given, else the best STS-B dev of the default unsup recipe over ``--lr-sweep``."""
    if args.lr is not None:
        return args.lr, []
    lrs = [float(x) for x in args.lr_sweep.split(",")]
    jobs = {lr: train_job(args, "unsup", unsup_overrides(args, lr, UNSUP_RUNS["unsup"])) for lr in lrs}
    for lr, job in jobs.items():
        job["id"] = f"lr={lr:g}"
    results = run_all(list(jobs.values()), args.workers)
    sweep = [
        {
            "lr": lr,
            "stsb_dev": results[job["id"]].get("dev", {}).get("stsb_dev", float("nan")),
            "best_step": results[job["id"]].get("best_step"),
            "avg": results[job["id"]].get("avg"),
        }
        for lr, job in jobs.items()
    ]
    finite = [s for s in sweep if math.isfinite(s["stsb_dev"])]
    if not finite:
        raise RuntimeError("every learning rate of the sweep failed; see the log")
    return max(finite, key=lambda s: s["stsb_dev"])["lr"], sweep


def grid_jobs(args: argparse.Namespace, lr: float, sup_lr: float) -> list[dict[str, Any]]:
    """Every distinct run of the grid, the ones the findings hinge on first."""
    jobs = [baseline_job(args, name, pooler) for name, pooler in BASELINES.items()]
    jobs += [train_job(args, rid, unsup_overrides(args, lr, change)) for rid, change in UNSUP_RUNS.items()]
    jobs += [train_job(args, rid, sup_overrides(args, sup_lr, change)) for rid, change in SUP_RUNS.items()]
    return jobs


# --------------------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 2) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) and math.isfinite(value) else "–"


def table_markdown(table: Table, results: dict[str, dict[str, Any]]) -> str:
    """One markdown table: STS-B dev (selection), the 7 test tasks, their average, dev alignment/uniformity."""
    head = ["row", "STS-B dev", *TASK_COLUMNS.values(), "Avg.", "align", "uniform", "best step"]
    lines = ["| " + " | ".join(head) + " |", "|---|" + "---:|" * (len(head) - 1)]
    for label, rid in table.rows:
        r = results.get(rid, {})
        if "error" in r or not r:
            lines.append(f"| {label} | " + " | ".join(["failed" if r else "not run"] + [""] * (len(head) - 2)) + " |")
            continue
        dev = r.get("dev") or {}
        cells = [
            _fmt(dev.get("stsb_dev")),
            *(_fmt(r["test"][t]) for t in TASK_COLUMNS),
            f"**{_fmt(r['avg'])}**",
            _fmt(dev.get("alignment"), 3),
            _fmt(dev.get("uniformity"), 3),
            str(r.get("best_step", "–")),
        ]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _smooth(values: list[float], window: int = 10) -> list[float]:
    out, acc = [], 0.0
    for i, v in enumerate(values):
        acc += v - (values[i - window] if i >= window else 0.0)
        out.append(acc / min(i + 1, window))
    return out


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
            ax_loss.plot([s for s, _ in r["loss"]], _smooth([v for _, v in r["loss"]]), lw=1, label=label)
    ax_dev.set(xlabel="step", ylabel="STS-B dev (Spearman x 100)", title="selection metric")
    ax_loss.set(xlabel="step", ylabel="training loss (10-step mean)", title="training loss")
    ax_dev.legend(fontsize=7)
    ax_loss.legend(fontsize=7)
    fig.suptitle(f"{table.title} (cf. paper {table.paper})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_align_uniform(results: dict[str, dict[str, Any]], start: dict[str, float] | None, path: str) -> None:
    """Paper Figure 2: uniformity (x) vs alignment (y) on STS-B dev, arrows in training order."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for (label, rid), color in zip(FIG2_RUNS, ("tab:blue", "tab:orange", "tab:green")):
        r = results.get(rid, {})
        if r.get("kind") != "train":
            continue
        points = ([(0, start["uniformity"], start["alignment"])] if start else []) + [
            (c["step"], c["uniformity"], c["alignment"]) for c in r["curve"]
        ]
        xs, ys = [p[1] for p in points], [p[2] for p in points]
        ax.plot(xs, ys, marker="o", ms=4, color=color, label=label, lw=0.8)
        for (_, x0, y0), (_, x1, y1) in itertools.pairwise(points):
            ax.annotate("", (x1, y1), (x0, y0), arrowprops={"arrowstyle": "->", "color": color, "lw": 1.2})
        ax.annotate(
            f"{points[-1][0]}", (xs[-1], ys[-1]), fontsize=7, color=color, xytext=(3, 3), textcoords="offset points"
        )
    if start:
        ax.annotate(
            "step 0", (start["uniformity"], start["alignment"]), fontsize=7, xytext=(3, -9), textcoords="offset points"
        )
    ax.set(
        xlabel="uniformity  (lower is better)",
        ylabel="alignment  (lower is better)",
        title="alignment vs uniformity on STS-B dev during training",
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


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
    trained = [r for r in results.values() if r.get("kind") == "train"]
    train_s = [r["train_s"] for r in trained]
    eval_s = [r["eval_s"] for r in trained]
    total_s = _total_wall(args.out)
    rows = [
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
    sections = [
        f"# SimCSE's core findings at CPU scale (`{os.path.basename(args.model.rstrip('/'))}`)\n",
        "Each row starts from the same raw encoder, sees the same data and budget, is selected on STS-B dev and "
        "is scored on the 7-task STS suite. Generated by `scripts/reproduce_findings.py` from the run JSONs; "
        "only the *Notes* block at the end is written by hand.\n",
        f"Rerun (results are cached per run under `{args.out}`):\n\n```\nHF_HUB_OFFLINE=1 {command}\n```\n",
        "## Budget and protocol\n",
        budget_markdown(args, lr, sup_lr, results) + "\n",
        "## Learning rate (picked once, default unsup recipe, STS-B dev)\n",
        sweep_markdown(sweep, lr) + "\n",
        "## Findings at a glance\n",
    ]
    verdicts = [f"{i}. **{t.title}** (paper {t.paper}): {VERDICTS[t.key](results)}" for i, t in enumerate(TABLES, 1)]
    verdicts.append(
        f"{len(TABLES) + 1}. **Alignment and uniformity** (paper Figure 2): {verdict_align_uniform(results, start)}"
    )
    sections.append("\n".join(verdicts) + "\n")
    columns = "Columns: STS-B dev (selection, best step), the seven test scores, `Avg.` (their mean, bold), "
    sections.append(columns + "alignment and uniformity on STS-B dev at the selected step (lower is better).\n")
    for i, table in enumerate(TABLES, 1):
        figure = f"{stem}_{table.key}.png"
        plot_table(table, results, os.path.join(fig_dir, figure))
        sections += [
            f"## {i}. {table.title} (paper {table.paper})\n",
            table_markdown(table, results) + "\n",
            f"![{table.title}]({figure})\n",
        ]
    figure = f"{stem}_align_uniform.png"
    plot_align_uniform(results, start, os.path.join(fig_dir, figure))
    sections += [
        f"## {len(TABLES) + 1}. Alignment and uniformity during training (paper Figure 2)\n",
        f"Every {args.eval_steps} steps on STS-B dev; step 0 is the raw encoder's [CLS] "
        "(the state every `cls` run starts from).\n",
        f"![alignment vs uniformity]({figure})\n",
        "## Wall time per run\n",
        timing_markdown(results) + "\n",
        "## Notes\n",
        f"{NOTES_START}\n{_notes(args.report)}\n{NOTES_END}\n",
    ]
    with open(args.report, "w", encoding="utf-8") as f:
        f.write("\n".join(sections))
    logger.info("report written to %s", args.report)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options; the defaults are the CPU grid of reports/findings.md."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="../shared/models/bert-mini-mlm-wiki", help="start encoder (folder or hub name)")
    p.add_argument(
        "--data-dir",
        default=os.environ.get("SIMCSE_DATA_DIR", "../shared/data"),
        help="folder with senteval/, corpus/, nli/ (default: $SIMCSE_DATA_DIR, else ../shared/data)",
    )
    p.add_argument("--steps", type=int, default=100, help="optimizer steps per run")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--max-seq-len", type=int, default=32, help="training truncation (and dev-selection) length")
    p.add_argument("--eval-steps", type=int, default=25, help="STS-B dev every N steps (selection and Figure 2)")
    p.add_argument("--lr", type=float, default=None, help="learning rate for every row (skips the sweep)")
    p.add_argument("--lr-sweep", default=LR_SWEEP_DEFAULT, help="learning rates tried on the default unsup run")
    p.add_argument("--sup-lr", type=float, default=None, help="supervised learning rate (default: the unsup one)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="training and test encoding")
    p.add_argument("--workers", type=int, default=1, help="runs in parallel (each in its own process)")
    p.add_argument("--threads", type=int, default=None, help="torch threads per worker (default: torch's)")
    p.add_argument("--out", default="runs/findings", help="run folders and result JSONs")
    p.add_argument("--report", default="reports/findings.md", help="markdown report (figures beside it)")
    p.add_argument("--report-only", action="store_true", help="rebuild the report from existing results only")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the sweep (unless --lr), then the grid, then write the report."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.makedirs(args.out, exist_ok=True)
    command = "python scripts/reproduce_findings.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    t0 = time.time()
    if args.report_only:
        # describe the grid as the last real invocation ran it (its options, its command line)
        command = _last_command(args.out)
        args = parse_args([*shlex.split(command)[2:], "--out", args.out, "--report", args.report, "--report-only"])
    lr, sweep = choose_lr(args) if not args.report_only else _cached_lr(args)
    sup_lr = args.sup_lr if args.sup_lr is not None else lr
    jobs = grid_jobs(args, lr, sup_lr)
    if args.report_only:
        results = {j["id"]: _load(j["result_path"]) for j in jobs if os.path.isfile(j["result_path"])}
    else:
        results = run_all(jobs, args.workers)
        with open(os.path.join(args.out, "invocations.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps({"command": command, "wall_s": time.time() - t0, "lr": lr}) + "\n")
        with open(os.path.join(args.out, "lr_sweep.json"), "w", encoding="utf-8") as f:
            json.dump({"chosen": lr, "sweep": sweep}, f, indent=1)
    write_report(args, lr, sup_lr, sweep, results, command)
    failed = [k for k, r in results.items() if "error" in r]
    if failed:
        logger.error("%d run(s) failed: %s", len(failed), ", ".join(failed))
        sys.exit(1)


def _last_command(out: str) -> str:
    path = os.path.join(out, "invocations.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: not found; run the grid first")
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()][-1]["command"]


def _load(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _cached_lr(args: argparse.Namespace) -> tuple[float, list[dict[str, Any]]]:
    """For --report-only: the learning rate (and sweep) recorded by the last full invocation."""
    if args.lr is not None:
        return args.lr, []
    path = os.path.join(args.out, "lr_sweep.json")
    if not os.path.isfile(path):
        raise SystemExit(f"{path}: not found; run the grid first or pass --lr")
    with open(path, encoding="utf-8") as f:
        saved = json.load(f)
    return saved["chosen"], saved["sweep"]


if __name__ == "__main__":
    main()
