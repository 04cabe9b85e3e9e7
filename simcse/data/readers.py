"""Training data files: read and validate rows, with errors that name the file, the line and the problem.

Rows are read as a stream (a file is never held in memory whole), in one of these formats:

- ``text``: one sentence per line (unsupervised); blank lines skipped and counted.
- ``csv`` / ``tsv``: a header naming the columns (``sent0,sent1`` for pairs, ``sent0,sent1,hard_neg`` for
  triplets, ``columns[0]`` for unsupervised); every named field non-empty.
- ``jsonl``: one JSON object per line holding the named columns as strings.
- ``parquet``: the named columns, text; problems are named by row (a Parquet file has no lines).

Hub datasets are validated row by row the same way (:func:`iter_hub_rows`).
"""

from __future__ import annotations

import codecs
import csv
import json
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

# a line longer than this is cut before tokenization (the tokenizer truncates at max_seq_len anyway)
MAX_LINE_CHARS = 10_000
# bytes that are not UTF-8, as `surrogateescape` decoding leaves them
_UNDECODED = re.compile("[\udc80-\udcff]")
FORMATS = ("text", "csv", "tsv", "jsonl", "parquet")
# the formats read by file extension (simcse.corpus reads the same extensions)
EXTENSIONS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


class DataError(ValueError):
    """A malformed training file; the message names the file, line and problem."""


@dataclass
class ReadReport:
    """Counts of what reading skipped (blank lines, bad lines with their messages) or cut short."""

    blank_lines: int = 0
    bad_lines: list[str] = field(default_factory=list)
    truncated_lines: int = 0

    def counts(self) -> dict[str, int]:
        """The counts alone, as recorded in the run's state."""
        return {
            "blank_lines": self.blank_lines,
            "bad_lines": len(self.bad_lines),
            "truncated_lines": self.truncated_lines,
        }


def file_format(path: str, mode: str, data_format: str = "auto") -> str:
    """The format to read ``path`` in: ``data_format``, else by extension (text for unsup, CSV for pairs)."""
    if data_format != "auto":
        return data_format
    ext = os.path.splitext(path)[1].lower()
    return EXTENSIONS.get(ext, "text" if mode == "unsup" else "csv")


def iter_rows(
    path: str, fmt: str, columns: Sequence[str], on_bad_line: str, report: ReadReport
) -> Iterator[tuple[str, ...]]:
    """Yield the valid rows of ``path`` (one value per column; one sentence for ``text``), counting in ``report``.

    Raises:
        DataError: a bad row when ``on_bad_line`` is ``error``, or a file with no valid row.
    """
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    reader = {"text": _text_rows, "csv": _csv_rows, "tsv": _csv_rows, "jsonl": _jsonl_rows, "parquet": _parquet_rows}
    found = 0
    for row in reader[fmt](path, fmt, columns, on_bad_line, report):
        found += 1
        yield row
    if not found:
        skipped = f"; {len(report.bad_lines)} bad line(s) skipped" if report.bad_lines else ""
        if fmt == "text":
            raise DataError(f"{path}: no sentences (file is empty or blank{skipped})")
        raise DataError(f"{path}: no data rows{' after the header' if fmt in ('csv', 'tsv') else ''}{skipped}")


def read_sentences(path: str, on_bad_line: str = "error") -> tuple[list[str], ReadReport]:
    """Read one sentence per line into a list (small files; training streams with :func:`iter_rows`)."""
    report = ReadReport()
    return [r[0] for r in iter_rows(path, "text", ("text",), on_bad_line, report)], report


def read_csv_examples(
    path: str, columns: Sequence[str], on_bad_line: str = "error"
) -> tuple[list[tuple[str, ...]], ReadReport]:
    """Read the named columns of a CSV with a header into a list (small files)."""
    report = ReadReport()
    return list(iter_rows(path, "csv", columns, on_bad_line, report)), report


def iter_hub_rows(
    name: str, config: str | None, split: str, columns: Sequence[str], on_bad_line: str, report: ReadReport,
    streaming: bool = False,
) -> Iterator[tuple[str, ...]]:  # fmt: skip
    """Yield the validated rows of a Hugging Face dataset (problems named ``name:row N``)."""
    from datasets import load_dataset

    ds = load_dataset(name, config, split=split, streaming=streaming)
    names = ds.column_names or list(columns)
    missing = [c for c in columns if c not in names]
    if missing:
        raise DataError(f"dataset {name}: missing column(s) {missing}; has {names}")
    for i, example in enumerate(ds.select_columns(list(columns))):
        row = _check(f"{name}:row {i}", [example[c] for c in columns], columns, on_bad_line, report)
        if row is not None:
            yield row


def _bad(where: str, problem: str, on_bad_line: str, report: ReadReport) -> None:
    message = f"{where}: {problem}"
    if on_bad_line == "error":
        raise DataError(message)
    report.bad_lines.append(message)


def _check(
    where: str, values: Sequence[Any], columns: Sequence[str], on_bad_line: str, report: ReadReport
) -> tuple[str, ...] | None:
    """The row's values, stripped and cut; None (or an error) for a row that is not all non-empty text."""
    if any(not isinstance(v, str) for v in values if v is not None):
        kinds = ", ".join(f"{c}={type(v).__name__}" for c, v in zip(columns, values) if not isinstance(v, str))
        _bad(where, f"expected text, found {kinds}", on_bad_line, report)
        return None
    if any(v is not None and _UNDECODED.search(v) for v in values):
        _bad(where, "invalid UTF-8", on_bad_line, report)
        return None
    row = tuple(_cut((v or "").strip(), report) for v in values)
    empty = [c for c, v in zip(columns, row) if not v]
    if empty:
        # refused, not read as " " as the reference code did: an empty sentence embeds to the same
        # point whatever row it is on, so it would teach nothing and pull unrelated rows together
        problem = (
            f"empty field(s) {','.join(empty)} (an empty sentence is refused, not read as a space as the "
            "reference SimCSE code did; fill it in, or skip such rows with on_bad_line: skip)"
        )
        _bad(where, problem, on_bad_line, report)
        return None
    return row


def _cut(text: str, report: ReadReport) -> str:
    if len(text) > MAX_LINE_CHARS:
        report.truncated_lines += 1
        return text[:MAX_LINE_CHARS]
    return text


def _lines(path: str, on_bad_line: str) -> Iterator[tuple[int, str]]:
    """``(line number, text)``; undecodable bytes raise, or are kept as surrogates for the row check to skip."""
    with open(path, "rb") as f:
        for i, raw in enumerate(f, start=1):
            if i == 1:
                raw = raw.removeprefix(codecs.BOM_UTF8)  # as spreadsheet programs write it
            try:
                yield i, raw.decode("utf-8")
            except UnicodeDecodeError as err:
                if on_bad_line == "error":
                    raise DataError(f"{path}:{i}: invalid UTF-8 ({err.reason})") from None
                yield i, raw.decode("utf-8", errors="surrogateescape")


def _text_rows(path: str, fmt: str, columns: Sequence[str], on_bad_line: str, report: ReadReport) -> Iterable:
    for i, line in _lines(path, on_bad_line):
        text = line.strip()
        if not text:
            report.blank_lines += 1
        elif "\x00" in text:
            _bad(f"{path}:{i}", "contains a NUL byte", on_bad_line, report)
        elif (row := _check(f"{path}:{i}", [text], ("text",), on_bad_line, report)) is not None:
            yield row


def _csv_rows(path: str, fmt: str, columns: Sequence[str], on_bad_line: str, report: ReadReport) -> Iterable:
    """Problems are reported at the line where the record starts (a quoted field may span lines)."""
    lines = (text for _, text in _lines(path, on_bad_line))
    reader = csv.reader(lines, delimiter="\t" if fmt == "tsv" else ",")
    try:
        header = [h.strip() for h in next(reader)]
        while not any(header):  # blank lines before the header
            header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise DataError(f"{path}: file is empty or blank (expected a header naming {','.join(columns)})") from None
    except csv.Error as err:
        raise DataError(f"{path}:1: malformed CSV header ({err})") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(
            f"{path}:1: header {','.join(header)!r} lacks column(s) {','.join(missing)} (needs {','.join(columns)})"
        )
    twice = [c for c in columns if header.count(c) > 1]
    if twice:
        raise DataError(f"{path}:1: header names column(s) {','.join(twice)} more than once")
    index = [header.index(c) for c in columns]
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as err:
            _bad(f"{path}:{line}", f"malformed CSV ({err})", on_bad_line, report)
            continue
        if not any(cell.strip() for cell in row):
            report.blank_lines += 1
            continue
        if any(_UNDECODED.search(cell) for cell in row):
            _bad(f"{path}:{line}", "invalid UTF-8", on_bad_line, report)
            continue
        if len(row) != len(header):
            spans = f" (record ends at line {reader.line_num}: unclosed quote?)" if reader.line_num > line else ""
            _bad(f"{path}:{line}", f"expected {len(header)} fields, found {len(row)}{spans}", on_bad_line, report)
            continue
        if (values := _check(f"{path}:{line}", [row[i] for i in index], columns, on_bad_line, report)) is not None:
            yield values


def _jsonl_rows(path: str, fmt: str, columns: Sequence[str], on_bad_line: str, report: ReadReport) -> Iterable:
    for i, line in _lines(path, on_bad_line):
        if not line.strip():
            report.blank_lines += 1
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            _bad(f"{path}:{i}", f"not valid JSON ({err.msg} at column {err.colno})", on_bad_line, report)
            continue
        if not isinstance(record, dict):
            _bad(f"{path}:{i}", f"expected a JSON object, found {type(record).__name__}", on_bad_line, report)
            continue
        missing = [c for c in columns if c not in record]
        if missing:
            _bad(f"{path}:{i}", f"lacks key(s) {','.join(missing)}", on_bad_line, report)
        elif (row := _check(f"{path}:{i}", [record[c] for c in columns], columns, on_bad_line, report)) is not None:
            yield row


def _parquet_rows(path: str, fmt: str, columns: Sequence[str], on_bad_line: str, report: ReadReport) -> Iterable:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises its own error types for a file that is not Parquet
        raise DataError(f"{path}: not a Parquet file ({err})") from None
    missing = [c for c in columns if c not in file.schema_arrow.names]
    if missing:
        raise DataError(f"{path}: lacks column(s) {','.join(missing)} (has {','.join(file.schema_arrow.names)})")
    n = 0
    for batch in file.iter_batches(columns=list(columns), batch_size=10_000):
        for values in zip(*(batch.column(c).to_pylist() for c in columns)):
            n += 1
            if (row := _check(f"{path}:row {n}", values, columns, on_bad_line, report)) is not None:
                yield row
