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

    HF_HUB_OFFLINE=1 python scripts/findings/reproduce_findings.py --workers 2 --threads 1

    # the paper's Tables 1 and 2 alone (views beyond dropout, next-sentence positives, two encoders),
    # at the learning rate the sweep chose for reports/findings.md
    HF_HUB_OFFLINE=1 python scripts/findings/reproduce_findings.py --workers 2 --threads 1 --lr 3e-4 \
        --tables augmentations,objectives_t2 --report reports/findings_views.md

    # the same grid on bert-base-uncased with a GPU
    python scripts/findings/reproduce_findings.py --model bert-base-uncased --steps 2000 --lr 3e-5 \
        --out runs/findings-bert-base --report reports/findings-bert-base.md
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import logging
import math
import multiprocessing
import os
import shlex
import sys
import time
from typing import Any

from findings_report import selected_tables, write_report
from findings_tables import BASELINES
from findings_views import VIEW_RUNS

logger = logging.getLogger("reproduce_findings")

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
    from simcse.encoder.encoder import default_device

    return default_device().type


def _untruncated(model: str) -> int:
    """The test suite is scored untruncated: up to the model's own length (at most 512)."""
    from transformers import AutoTokenizer

    return min(int(AutoTokenizer.from_pretrained(model).model_max_length), 512)


def _suite_fields(result: dict[str, Any]) -> dict[str, Any]:
    """The report's view of :func:`simcse.score_suite`'s result on the 7-task STS test suite."""
    from simcse import TASKS

    return {
        "test": {t: result["tasks"][t]["score"] for t in TASKS},
        "avg": result["avg"],
        "test_alignment": result["alignment"],
        "test_uniformity": result["uniformity"],
    }


def score_dev(encoder: Any, data_dir: str, max_seq_len: int) -> dict[str, float]:
    """STS-B dev and SICK-R dev with the trainer's evaluator (fp32), sentences truncated at ``max_seq_len``
    as the trainer truncated them when this grid was run (reports/findings.md states it)."""
    from simcse.evaluation.dev import DevEvaluator

    encoder.to(_device())
    encoder.max_seq_length = max_seq_len
    return DevEvaluator(data_dir, batch_size=128)(encoder, use_head=True)


def run_baseline(job: dict[str, Any]) -> dict[str, Any]:
    """Score the raw encoder with one pooling mode (no training)."""
    from simcse import Encoder, score_suite

    t0 = time.time()
    dev = score_dev(Encoder.from_pretrained(job["model"], pooler=job["pooler"]), job["data_dir"], job["max_seq_len"])
    suite = score_suite(
        Encoder.from_pretrained(job["model"], pooler=job["pooler"]), data_dir=job["data_dir"], batch_size=128,
        precision=job["precision"], device=_device(), max_seq_length=_untruncated(job["model"]),
    )  # fmt: skip
    return {"kind": "baseline", "pooler": job["pooler"], "dev": dev, **_suite_fields(suite), "eval_s": time.time() - t0}


def run_training(job: dict[str, Any]) -> dict[str, Any]:
    """Train one config (resuming a checkpoint if one exists), then score its best model on the suite."""
    from simcse.config import load_config
    from simcse.experiments import run_experiment

    overrides = job["overrides"]
    cfg = load_config(None, {**overrides, "output_dir": job["dir"]})
    run = run_experiment(
        cfg, precision=job["precision"], max_seq_length=_untruncated(overrides["model_name_or_path"])
    )
    evals = [r for r in run["metrics"] if "stsb_dev" in r]
    best = next((r for r in evals if r["step"] == run["state"]["best_step"]), None)
    return {
        "kind": "train",
        "overrides": overrides,
        "best_step": run["state"]["best_step"],
        "dev": {k: best[k] for k in ("stsb_dev", "sickr_dev", "alignment", "uniformity")} if best else None,
        "curve": [{k: r[k] for k in ("step", "stsb_dev", "sickr_dev", "alignment", "uniformity")} for r in evals],
        "loss": [[r["step"], r["loss"]] for r in run["metrics"]],
        "train_s": run["train_s"],
        **_suite_fields(run["suite"]),
        "eval_s": run["eval_s"],
    }


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
    """Every distinct run of the grid (of ``--tables``' tables), the ones the findings hinge on first."""
    used = {rid for table in selected_tables(args.tables) for _, rid in table.rows}
    jobs = [baseline_job(args, name, pooler) for name, pooler in BASELINES.items() if f"base:{name}" in used]
    unsup = {**UNSUP_RUNS, **VIEW_RUNS}
    jobs += [train_job(args, rid, unsup_overrides(args, lr, change)) for rid, change in unsup.items() if rid in used]
    sup = SUP_RUNS.items()
    jobs += [train_job(args, rid, sup_overrides(args, sup_lr, change)) for rid, change in sup if rid in used]
    return jobs


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
    p.add_argument("--tables", default=None, help="run and report only these tables (comma-separated keys, e.g. "
                   "augmentations,objectives_t2: the paper's Tables 1 and 2); default: every table")  # fmt: skip
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run the sweep (unless --lr), then the grid, then write the report."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")
    os.makedirs(args.out, exist_ok=True)
    command = "python scripts/findings/reproduce_findings.py " + shlex.join(sys.argv[1:] if argv is None else argv)
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
