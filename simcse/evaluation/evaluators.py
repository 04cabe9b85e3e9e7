"""Evaluators from plain specs (a dict, as a YAML config or ``simcse eval --evaluators`` holds them).

A spec names its ``type`` and its data; every other key is that evaluator's option::

    {"type": "sts", "task": "STSBenchmark", "split": "dev"}                      # -> stsb_dev/spearman
    {"type": "sts", "name": "mine", "path": "pairs.csv", "columns": {"score": "label"}}
    {"type": "retrieval", "name": "mydocs", "path": "mydocs/", "split": "dev"}   # BEIR folder
    {"type": "retrieval", "path": "qa.jsonl", "query_prompt_name": "query"}      # query, positive[, negative]
    {"type": "pair_classification", "dataset": "org/pairs", "split": "validation", "similarity": ["cosine", "dot"]}

Data: ``path`` (a BEIR folder for retrieval, else a file) or ``dataset`` (a hub dataset, with ``config`` and
``split``); built-in STS tasks by ``task``. Metric names are ``<name>/<metric>``; ``name`` defaults to the
type (built-in STS tasks: ``stsb_dev``, ``sickr_test``, ``sts12``...). Unknown keys are refused. Any spec may
add ``truncate_dims: [384, 128, 64]`` (a Matryoshka model's sizes): it is scored at each size, the vectors
cut and re-normalised, its metrics named ``<name>@<d>/<metric>`` (:mod:`simcse.evaluation.sizes`).

The training loop builds its evaluators once (:func:`build_evaluators`: data read and checked, and the
metric names known, before the first step) and at each evaluation calls :func:`run_evaluators` on every
process.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from simcse.evaluation.base import Evaluator
from simcse.evaluation.pair_classification import PairClassificationEvaluator, load_labelled_pairs
from simcse.evaluation.retrieval import RetrievalEvaluator
from simcse.evaluation.retrieval_data import load_beir, load_retrieval_pairs
from simcse.evaluation.sizes import AtSizes
from simcse.evaluation.sts import STSEvaluator, builtin_name
from simcse.evaluation.tasks import load_scored_pairs

SOURCE = ("path", "dataset", "config", "split", "columns")
OPTIONS: dict[str, tuple[str, ...]] = {
    "sts": ("name", "task", *SOURCE, "scale"),
    "retrieval": (
        "name", *SOURCE, "cutoffs", "similarity", "query_prompt", "query_prompt_name", "document_prompt",
        "document_prompt_name", "corpus_chunk_size",
    ),
    "pair_classification": ("name", *SOURCE, "similarity"),
}  # fmt: skip


def _source(spec: dict[str, Any], where: str) -> dict[str, Any]:
    """The data keys of ``spec`` (removed from it): exactly one of ``path`` and ``dataset``."""
    source = {k: spec.pop(k) for k in SOURCE if k in spec}
    if ("path" in source) == ("dataset" in source):
        raise ValueError(f"{where}: give the data as path (a file or folder) or dataset (a hub name), one of them")
    if "path" in source:
        source["path"] = os.fspath(source["path"])
    return source


def build_evaluator(spec: Mapping[str, Any], data_dir: str | None = None) -> Evaluator:
    """One evaluator from its spec (see the module's notes); its data is read and checked now.

    Args:
        spec: ``{"type": ..., <data>, <options>}``.
        data_dir: The data directory for built-in STS tasks.

    Raises:
        ValueError: An unknown type or key, a missing data source; bad data, in one line naming file and line.
    """
    spec = dict(spec)
    dims = spec.pop("truncate_dims", None)
    if dims is not None:
        return AtSizes(build_evaluator(spec, data_dir), dims if isinstance(dims, (list, tuple)) else [dims])
    kind = spec.pop("type", None)
    if kind not in OPTIONS:
        raise ValueError(f"evaluator type {kind!r}: choose one of {', '.join(OPTIONS)}")
    where = f"{kind} evaluator {spec.get('name', '')}".rstrip()
    unknown = sorted(set(spec) - set(OPTIONS[kind]))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(OPTIONS[kind])}")
    name = spec.pop("name", None)
    if name is not None and (not isinstance(name, str) or not name or "/" in name):
        raise ValueError(f"{where}: name must be non-empty text without '/', got {name!r}")
    if kind == "sts" and "task" in spec:
        if set(spec) - {"task", "split"}:
            raise ValueError(f"{where}: a built-in task takes only task, split and name")
        return STSEvaluator.builtin(spec["task"], spec.get("split"), data_dir, name)
    source = _source(spec, where)
    name = name or kind
    if kind == "sts":
        return STSEvaluator(load_scored_pairs(**source), name, scale=spec.get("scale"))
    if kind == "pair_classification":
        return PairClassificationEvaluator(load_labelled_pairs(**source), name, **spec)
    if "path" in source and os.path.isdir(source["path"]):
        if "columns" in source:
            raise ValueError(f"{where}: columns apply to a file or a hub dataset, not to a BEIR folder")
        data = load_beir(source["path"], source.get("split") or "test")
    else:
        data = load_retrieval_pairs(**source)
    return RetrievalEvaluator(data, name, **spec)


def spec_name(spec: Mapping[str, Any]) -> str:
    """The name an evaluator built from ``spec`` takes (the prefix of its metrics), without reading its data."""
    if spec.get("name"):
        return str(spec["name"])
    if spec.get("type") == "sts" and "task" in spec:
        return builtin_name(spec["task"], spec.get("split"))
    return str(spec.get("type"))


def build_evaluators(specs: Sequence[Mapping[str, Any]], data_dir: str | None = None) -> list[Evaluator]:
    """Every evaluator of ``specs``, their names distinct (so no two metrics share a key)."""
    evaluators = [build_evaluator(spec, data_dir) for spec in specs]
    names = [e.name for e in evaluators]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(f"several evaluators are named {', '.join(twice)}; give each a distinct name")
    return evaluators


def run_evaluators(
    evaluators: Sequence[Evaluator], encoder: Any, batch_size: int = 128, **encode_kwargs: Any
) -> dict[str, float]:
    """Every evaluator's metrics in one flat dict; every process calls it together (same evaluators, same order).

    Args:
        evaluators: From :func:`build_evaluators`.
        encoder: What to score (``encode(texts, batch_size=..., prompt=..., prompt_name=..., **encode_kwargs)``).
        batch_size: Texts per forward pass.
        **encode_kwargs: Passed to ``encoder.encode`` (e.g. ``use_head=False``, ``precision="bf16"``).
    """
    metrics: dict[str, float] = {}
    for evaluator in evaluators:
        metrics.update(evaluator(encoder, batch_size, **encode_kwargs))
    return metrics


def load_specs(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Evaluator specs from a YAML or JSON file: a list of specs, or ``{"evaluators": [...]}``."""
    import yaml

    path = os.fspath(path)
    with open(path, encoding="utf-8") as f:
        try:
            loaded = json.load(f) if path.endswith(".json") else yaml.safe_load(f)
        except (json.JSONDecodeError, yaml.YAMLError) as err:
            raise ValueError(f"{path}: not valid {'JSON' if path.endswith('.json') else 'YAML'} ({err})") from None
    specs = loaded.get("evaluators") if isinstance(loaded, dict) else loaded
    if not isinstance(specs, list) or not all(isinstance(s, dict) for s in specs):
        raise ValueError(f"{path}: expected a list of evaluator specs (mappings with a type)")
    return specs
