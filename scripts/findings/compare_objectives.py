"""Every objective of simcse.objectives with the same small CPU budget: STS, alignment, uniformity, time.

Self-supervised objectives train on the shared Wikipedia corpus (the same sentence twice, dropout as
the augmentation); the supervised metric-learning ones, and supervised InfoNCE as their reference, on
the shared NLI triplets (mode triplets, or pairs for objectives without a hard-negative input). All
runs share the encoder, pooling (``cls``, MLP head in training only), batch, length, learning rate,
temperature and number of steps; each is scored on STS-B dev at its last step (no model selection)
and on the 7 STS test sets (SentEval protocol). Results are cached per objective as JSON, so an
interrupted grid resumes where it stopped (a run killed mid-way resumes from its last checkpoint).

    python scripts/findings/compare_objectives.py --data-dir ../shared/data \\
        [--model ../shared/models/bert-mini-mlm-wiki] [--steps 100] [--batch-size 64] [--only moco,byol]

Writes ``<out>/<run>.json``, the table (between markers) in ``reports/objectives.md`` and the
alignment-uniformity plot ``reports/objectives_align_uniform.png`` (Wang & Isola, 2020, Fig. 2).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from typing import Any

from simcse import Encoder, score_suite
from simcse.config import load_config
from simcse.data_dir import resolve_data_dir
from simcse.experiments import run_experiment
from simcse.objectives import OBJECTIVES
from simcse.plots import plot_align_uniform

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
MODEL = os.path.join(REPO, "..", "shared", "models", "bert-mini-mlm-wiki")
CORPUS, NLI = "corpus/wiki_sentences.txt", "nli/nli_for_simcse.csv"
START, END = "<!-- results:start -->", "<!-- results:end -->"

# run name -> (objective, mode, data, objective-specific overrides); the rest is shared (see main)
RUNS: dict[str, tuple[str, str, str, dict[str, Any]]] = {  # ordered so that a partial grid is already informative
    "infonce": ("infonce", "unsup", CORPUS, {}),
    "byol": ("byol", "unsup", CORPUS, {}),
    "moco": ("moco", "unsup", CORPUS, {"queue_size": 256}),
    "infonce (sup)": ("infonce", "triplets", NLI, {}),
    "triplet": ("triplet", "triplets", NLI, {}),
    "simsiam": ("simsiam", "unsup", CORPUS, {}),
    "nt_xent": ("nt_xent", "unsup", CORPUS, {}),
    "barlow_twins": ("barlow_twins", "unsup", CORPUS, {}),
    "swav": ("swav", "unsup", CORPUS, {}),
    "xbm": ("xbm", "unsup", CORPUS, {"memory_size": 256, "memory_warmup": 25}),
    "contrastive": ("contrastive", "triplets", NLI, {}),
    "n_pair": ("n_pair", "pairs", NLI, {}),
    "logistic": ("logistic", "triplets", NLI, {}),
    "circle": ("circle", "triplets", NLI, {}),
    "lifted_structure": ("lifted_structure", "pairs", NLI, {}),
}
assert {r[0] for r in RUNS.values()} == set(OBJECTIVES), "every registered objective has a run"


def slug(name: str) -> str:
    """A run's folder / file name: ``infonce (sup)`` -> ``infonce_sup``."""
    return name.replace(" ", "_").replace("(", "").replace(")", "")


def run_one(name: str, args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    """Train run ``name`` (resuming a killed one), score it, and return its result record."""
    objective, mode, train_file, extra = RUNS[name]
    out = os.path.join(args.out, slug(name))
    cfg = load_config(
        None,
        dict(model_name_or_path=args.model, pooler="cls", mlp_only_train=True, mode=mode, train_file=train_file,
             objective=objective, batch_size=args.batch_size, max_seq_len=args.max_seq_len,
             learning_rate=args.learning_rate, max_steps=args.steps, eval_steps=args.steps, checkpoint_steps=50,
             keep_last_n=1, collapse_check_steps=10, data_dir=data_dir, output_dir=out, seed=args.seed,
             mixed_precision=args.precision, **extra),
    )  # fmt: skip
    run = run_experiment(cfg, precision=args.precision, batch_size=256)
    records, sts = run["metrics"], run["suite"]
    final = [r for r in records if "stsb_dev" in r][-1]  # the last step's evaluation: STS-B dev, align / uniform
    watched = [r for r in records if "collapsed" in r]
    return {
        "objective": objective, "mode": mode, "data": train_file, "overrides": extra,
        "stsb_dev": final["stsb_dev"], "sts_avg": sts["avg"], "sts": {t: r["score"] for t, r in sts["tasks"].items()},
        "alignment": final["alignment"], "uniformity": final["uniformity"], "seconds": run["train_s"],
        "final_loss": records[-1]["loss"], "steps": run["state"]["step"],
        "collapsed_steps": [r["step"] for r in watched if r["collapsed"]],
        "last_batch_uniformity": watched[-1]["batch_uniformity"] if watched else None,
        "last_embedding_std": watched[-1]["embedding_std"] if watched else None,
    }  # fmt: skip


def baseline(args: argparse.Namespace, data_dir: str) -> dict[str, Any]:
    """The untrained encoder with the same pooling (``cls`` without the new MLP): where every run starts."""
    encoder = Encoder.from_pretrained(args.model, pooler="cls_before_pooler")  # whole sentences, as the runs
    sts = score_suite(encoder, data_dir=data_dir, batch_size=256, precision=args.precision, align_uniform=False)
    dev = score_suite(encoder, ["STSBenchmark"], data_dir, batch_size=256, stsb_split="dev")
    return {
        "objective": "-", "mode": "-", "data": "-", "overrides": {}, "stsb_dev": dev["avg"], "sts_avg": sts["avg"],
        "sts": {t: r["score"] for t, r in sts["tasks"].items()}, "alignment": dev["alignment"],
        "uniformity": dev["uniformity"], "seconds": None, "collapsed_steps": [],
    }  # fmt: skip


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Budget per run: {args.steps} steps, batch {args.batch_size}, max_seq_len {args.max_seq_len}, "
        f"lr {args.learning_rate}, temperature 0.05, seed {args.seed}, precision {args.precision}; encoder "
        f"`{os.path.basename(args.model)}`, "
        "`cls` pooling with the MLP in training only. STS-B dev, alignment and uniformity: the last step's model "
        "on STS-B dev (alignment over pairs scored > 4; lower is better for both). STS avg: STS12-16, STS-B, "
        "SICK-R test (SentEval protocol, Spearman x 100). Seconds: training wall time on a shared 2-core CPU "
        "(noisy). Collapse: the training loop's collapse watch (batch every 10 steps) fired.",
        "",
        "| run | data | STS-B dev | STS avg (7) | alignment | uniformity | seconds | collapse watch |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for name, r in sorted(results.items(), key=lambda kv: (kv[0] != "start (untrained)", -kv[1]["sts_avg"])):
        data = {"-": "-", CORPUS: "corpus", NLI: f"NLI ({r['mode']})"}[r["data"]]
        fired = f"from step {r['collapsed_steps'][0]}" if r["collapsed_steps"] else "-"
        seconds = "-" if r["seconds"] is None else f"{r['seconds']:.0f}"
        lines.append(
            f"| {name} | {data} | {r['stsb_dev']:.2f} | {r['sts_avg']:.2f} | {r['alignment']:.3f} | "
            f"{r['uniformity']:.3f} | {seconds} | {fired} |"
        )
    return "\n".join(lines)


def plot(results: dict[str, dict[str, Any]], path: str) -> None:
    """Uniformity (x) vs alignment (y) as in the paper's Fig. 2; colour = STS avg, marker = training data."""
    groups = {CORPUS: "corpus (unsup)", NLI: "NLI (sup)", "-": "untrained"}
    points = [
        {"uniformity": r["uniformity"], "alignment": r["alignment"], "label": name, "group": groups[r["data"]],
         "color": r["sts_avg"]}
        for name, r in results.items()
    ]  # fmt: skip
    title = "Objectives on one harness: alignment vs uniformity (STS-B dev)"
    plot_align_uniform(path, points, title=title, color_label="STS avg (7 test sets)")


def write_report(path: str, body: str) -> None:
    """Put ``body`` between the result markers of ``path`` (created with a title if absent)."""
    text = f"# Objectives on one harness\n\n{START}\n{END}\n"
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as f:
            text = f.read()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"{head}{START}\n{body}\n{END}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--model", default=MODEL)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--max-seq-len", type=int, default=32)
    parser.add_argument(
        "--learning-rate", type=float, default=3e-4, help="the unsup recipe picked in reports/findings.md"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--precision", choices=("bf16", "no"), default="bf16", help="training and STS test encoding")
    parser.add_argument("--only", default=None, help="comma-separated run names (default: all)")
    parser.add_argument("--out", default="runs/compare_objectives")
    parser.add_argument("--report", default=os.path.join(REPO, "reports", "objectives.md"))
    parser.add_argument("--plot", default=os.path.join(REPO, "reports", "objectives_align_uniform.png"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(levelname)s: %(message)s")
    data_dir = resolve_data_dir(args.data_dir)
    os.makedirs(args.out, exist_ok=True)
    names = ["start (untrained)", *(args.only.split(",") if args.only else RUNS)]
    results: dict[str, dict[str, Any]] = {}
    for name in names:
        cache = os.path.join(args.out, f"{slug(name)}.json")
        if not os.path.isfile(cache):
            logging.warning("run %s", name)
            result = baseline(args, data_dir) if name == "start (untrained)" else run_one(name, args, data_dir)
            with open(cache, "w", encoding="utf-8") as f:
                json.dump(result, f, indent=2)
        with open(cache, encoding="utf-8") as f:
            results[name] = json.load(f)
        logging.warning("%s: STS-B dev %.2f, STS avg %.2f", name, results[name]["stsb_dev"], results[name]["sts_avg"])
    write_report(args.report, table(results, args))
    plot(results, args.plot)
    print(table(results, args))


if __name__ == "__main__":
    main()
