"""Evaluation data in named columns: CSV / TSV (with a header), JSON lines, Parquet or a Hugging Face dataset.

:func:`read_columns` yields each row as ``(where, values)``, ``where`` naming the file and line (``row N``
for Parquet and hub datasets, which have no lines) so every problem is reported in one line that says
where it is. A spec's ``columns`` maps the names an evaluator reads (``sentence1``, ``score``...) to the
file's own, e.g. ``{"sentence1": "question1", "sentence2": "question2", "label": "is_duplicate"}``.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Collection, Iterator, Mapping
from typing import Any

FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


class EvalDataError(ValueError):
    """Malformed evaluation data; the message names the file, the line (or row) and the problem."""


def read_columns(
    path: str | os.PathLike | None,
    names: Collection[str],
    *,
    columns: Mapping[str, str] | None = None,
    optional: Collection[str] = (),
    dataset: str | None = None,
    config: str | None = None,
    split: str | None = None,
) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield ``(where, {name: value})`` for each row of a file or a hub dataset.

    Args:
        path: A ``.csv`` / ``.tsv`` (header row), ``.jsonl`` / ``.json`` (one object a line) or ``.parquet`` file.
        names: The columns read, by the evaluator's names; all required but those in ``optional``.
        columns: The file's name for each of ``names`` that the file spells otherwise.
        optional: Names that may be absent from the file (their value is then None).
        dataset: A Hugging Face dataset name, instead of ``path``.
        config: The dataset's configuration.
        split: The dataset's split.

    Raises:
        EvalDataError: The file is missing, empty, or lacks a required column.
    """
    rename = {n: (columns or {}).get(n, n) for n in names}
    unknown = sorted(set(columns or {}) - set(names))
    if unknown:
        raise EvalDataError(f"columns: unknown name(s) {', '.join(unknown)}; known: {', '.join(names)}")
    if dataset is not None:
        rows = _hub_rows(dataset, config, split, rename, optional)
    else:
        path = os.fspath(path) if path is not None else ""
        fmt = FORMATS.get(os.path.splitext(path)[1].lower())
        if fmt is None:
            raise EvalDataError(f"{path}: unknown file type; use one of {', '.join(FORMATS)}")
        if not os.path.isfile(path):
            raise EvalDataError(f"{path}: {'is a directory, expected a file' if os.path.isdir(path) else 'not found'}")
        reader = {"csv": _csv_rows, "tsv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}[fmt]
        rows = reader(path, fmt, rename, optional)
    found = False
    for where, record in rows:
        found = True
        yield where, record
    if not found:
        raise EvalDataError(f"{dataset or path}: no rows (the data is empty)")


def _missing(where: str, rename: Mapping[str, str], optional: Collection[str], have: Collection[str]) -> None:
    lacking = [f"{theirs!r}" for ours, theirs in rename.items() if theirs not in have and ours not in optional]
    if lacking:
        shown = ", ".join(repr(h) for h in have) or "none"
        raise EvalDataError(f"{where}: no column {', '.join(lacking)} (found {shown}); map names with `columns`")


def _pick(record: Mapping[str, Any], rename: Mapping[str, str]) -> dict[str, Any]:
    return {ours: record.get(theirs) for ours, theirs in rename.items()}


def text_lines(path: str) -> Iterator[str]:
    """The file's lines as text (a byte-order mark dropped); bytes that are not UTF-8 are named by line."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8-sig" if i == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise EvalDataError(f"{path}:{i}: invalid UTF-8 ({err.reason})") from None


def _csv_rows(path: str, fmt: str, rename: Mapping[str, str], optional: Collection[str]) -> Iterator:
    reader = csv.reader(text_lines(path), delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = [h.strip() for h in next(reader, [])]
    except csv.Error as err:
        raise EvalDataError(f"{path}:1: cannot read the header ({err})") from None
    if not any(header):
        raise EvalDataError(f"{path}: empty (expected a header row naming {', '.join(rename.values())})")
    _missing(f"{path}:1", rename, optional, header)
    last = reader.line_num  # a record may span lines (a quoted newline): it is named by its first
    try:
        for row in reader:
            line, last = last + 1, reader.line_num
            if len(row) != len(header) and any(cell.strip() for cell in row):
                raise EvalDataError(f"{path}:{line}: expected {len(header)} fields, found {len(row)}")
            if any(cell.strip() for cell in row):
                yield f"{path}:{line}", _pick(dict(zip(header, row)), rename)
    except csv.Error as err:
        raise EvalDataError(f"{path}:{last + 1}: malformed {fmt.upper()} ({err})") from None


def _jsonl_rows(path: str, fmt: str, rename: Mapping[str, str], optional: Collection[str]) -> Iterator:
    for i, line in enumerate(text_lines(path), start=1):
        if line.strip():
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalDataError(f"{path}:{i}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                raise EvalDataError(f"{path}:{i}: expected a JSON object, found {type(record).__name__}")
            _missing(f"{path}:{i}", rename, optional, list(record))
            yield f"{path}:{i}", _pick(record, rename)


def _parquet_rows(path: str, fmt: str, rename: Mapping[str, str], optional: Collection[str]) -> Iterator:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own error types for a file that is not Parquet
        raise EvalDataError(f"{path}: not a Parquet file ({err})") from None
    have = file.schema_arrow.names
    _missing(path, rename, optional, have)
    read = [c for c in dict.fromkeys(rename.values()) if c in have]
    n = 0
    for batch in file.iter_batches(columns=read, batch_size=10_000):
        for record in batch.to_pylist():
            n += 1
            yield f"{path}:row {n}", _pick(record, rename)


def _hub_rows(
    name: str, config: str | None, split: str | None, rename: Mapping[str, str], optional: Collection[str]
) -> Iterator:
    from datasets import load_dataset

    if split is None:
        raise EvalDataError(f"dataset {name}: name its split (e.g. split: validation)")
    ds = load_dataset(name, config, split=split)
    _missing(f"dataset {name}", rename, optional, ds.column_names)
    for i, record in enumerate(ds.select_columns([c for c in rename.values() if c in ds.column_names])):
        yield f"{name}:row {i}", _pick(record, rename)


def text_value(where: str, name: str, value: Any) -> str:
    """``value`` as a non-empty string, or an error naming ``where`` and the column."""
    if not isinstance(value, str):
        raise EvalDataError(f"{where}: {name} must be text, found {type(value).__name__}")
    if not value.strip():
        raise EvalDataError(f"{where}: {name} is empty")
    return value


def number_value(where: str, name: str, value: Any) -> float:
    """``value`` (a number, or text holding one) as a finite float, or an error naming ``where``."""
    try:
        number = math.nan if isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        raise EvalDataError(f"{where}: {name} {value!r} is not a finite number")
    return number


def label_value(where: str, name: str, value: Any) -> int:
    """``value`` as 0 or 1 (``0``/``1``, ``0.0``/``1.0``, ``true``/``false``), or an error naming ``where``."""
    if isinstance(value, str):
        value = {"true": 1, "false": 0}.get(value.strip().lower(), value.strip())
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if number not in (0.0, 1.0):
        raise EvalDataError(f"{where}: {name} {value!r} is not 0 or 1")
    return int(number)
