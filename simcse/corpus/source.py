"""The input of a corpus encode, read as a stream of rows: ``(text, id, where)``, never whole in memory.

Every record of the input is one output row, in order, so a row's index (0, 1, 2, ...) is its place
in the stream; an empty text is an error (it would embed to a meaningless vector), named by file and
line (``corpus.jsonl:17``; Parquet and hub datasets: ``file:row 17``). Formats:

- ``text``: one text per line; ids are the row indices.
- ``csv`` / ``tsv``: a header naming ``text_column`` (and ``id_column``).
- ``jsonl``: one JSON object per line with those keys.
- ``parquet``: those columns.
- a Hugging Face dataset (``dataset=``), read with ``streaming=True``.

Ids: without ``id_column``, the row index (int64). With it, ids are text, except a Parquet or hub
column of integers, which stays int64. JSON numbers given as ids are kept as their decimal text.
"""

from __future__ import annotations

import codecs
import csv
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from simcse.data.readers import EXTENSIONS

FORMATS = ("auto", "text", "csv", "tsv", "jsonl", "parquet")


class CorpusError(ValueError):
    """Bad corpus input or output folder; the message names the file, line and problem in one line."""


@dataclass(frozen=True)
class CorpusSource:
    """Where the texts come from: files (read in the order given) or a Hugging Face dataset.

    Attributes:
        paths: Input files (str or ``os.PathLike``), or empty with ``dataset``.
        input_format: ``auto`` (by extension; otherwise text) or one of :data:`FORMATS`.
        text_column: Column (or JSON key) holding the text (not used for ``text``).
        id_column: Column holding the row ids, or None (ids are the row indices).
        dataset: A Hugging Face dataset name, read as a stream, instead of ``paths``.
        dataset_config: The dataset's configuration name.
        split: The dataset's split.
    """

    paths: tuple[str, ...] = ()
    input_format: str = "auto"
    text_column: str = "text"
    id_column: str | None = None
    dataset: str | None = None
    dataset_config: str | None = None
    split: str = "train"
    _progress: list[int] = field(default_factory=lambda: [0, 0], compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(os.fspath(p) for p in self.paths))
        if bool(self.paths) == bool(self.dataset):
            raise CorpusError("give input files or a dataset name (one of the two)")
        if self.input_format not in FORMATS:
            raise CorpusError(f"input format must be one of {', '.join(FORMATS)}, got {self.input_format!r}")
        for path in self.paths:
            if os.path.isdir(path):
                raise CorpusError(f"{path}: is a directory, expected an input file")
            if not os.path.isfile(path):
                raise CorpusError(f"{path}: not found")
            if self.format_of(path) == "text" and self.id_column:
                raise CorpusError(f"{path}: a text file has no columns, so no id column {self.id_column!r}")
        object.__setattr__(self, "_id_kind", self._detect_id_kind())

    def format_of(self, path: str) -> str:
        """The format ``path`` is read in."""
        if self.input_format != "auto":
            return self.input_format
        return EXTENSIONS.get(os.path.splitext(path)[1].lower(), "text")

    def describe(self) -> dict[str, Any]:
        """What was read, for the manifest."""
        if self.dataset:
            where: dict[str, Any] = {"dataset": self.dataset, "config": self.dataset_config, "split": self.split}
        else:
            where = {"paths": [os.path.abspath(p) for p in self.paths], "format": self.input_format}
        return {**where, "text_column": self.text_column, "id_column": self.id_column}

    def fraction_read(self) -> float | None:
        """The part of the input read so far (by bytes, or rows of a known total), or None if unknown."""
        done, total = self._progress
        return done / total if total else None

    def rows(self) -> Iterator[tuple[str, Any, str]]:
        """Every row in order as ``(text, id or None, where)``; a bad row raises :class:`CorpusError`."""
        if self.dataset:
            yield from self._hub_rows()
            return
        self._progress[:] = [0, sum(os.path.getsize(p) for p in self.paths)]
        for path in self.paths:
            fmt = self.format_of(path)
            if fmt == "parquet":
                yield from self._parquet_rows(path)
            elif fmt in ("csv", "tsv"):
                yield from self._csv_rows(path, "\t" if fmt == "tsv" else ",")
            else:
                yield from (self._jsonl_rows if fmt == "jsonl" else self._text_rows)(path)

    def find_rows(self, wanted: set[int]) -> dict[int, tuple[str, Any, str]]:
        """Rows by index (``(text, id, where)``), reading the input again up to the last one wanted."""
        found: dict[int, tuple[str, Any, str]] = {}
        if wanted:
            for i, row in enumerate(self.rows()):
                if i in wanted:
                    found[i] = row
                    if len(found) == len(wanted):
                        break
        return found

    # ------------------------------------------------------------------ formats
    def _lines(self, path: str, keep_ends: bool = False) -> Iterator[tuple[int, str]]:
        with open(path, "rb") as f:
            for i, raw in enumerate(f, start=1):
                self._progress[0] += len(raw)
                if i == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise CorpusError(f"{path}:{i}: invalid UTF-8 ({err.reason} at byte {err.start})") from None
                yield i, (text if keep_ends else text.removesuffix("\n").removesuffix("\r"))

    def _text_rows(self, path: str) -> Iterator[tuple[str, Any, str]]:
        for i, line in self._lines(path):
            yield _text(line, f"{path}:{i}", "empty line (every line is one row; remove it)"), None, f"{path}:{i}"

    def _csv_rows(self, path: str, delimiter: str) -> Iterator[tuple[str, Any, str]]:
        lines = self._lines(path, keep_ends=True)  # the csv module reads quoted line breaks itself
        numbers: list[int] = []

        def texts() -> Iterator[str]:
            for i, line in lines:
                numbers.append(i)
                yield line

        reader = csv.reader(texts(), delimiter=delimiter)
        try:
            header = next(reader, None)
            if header is None:
                raise CorpusError(f"{path}: empty file (expected a header naming {self.text_column})")
            index = _column_indices(f"{path}:1", [h.strip() for h in header], self._columns())
            numbers.clear()
            for row in reader:
                where = f"{path}:{numbers[0]}"  # the line the record starts on (a quoted field may span lines)
                numbers.clear()
                if len(row) != len(header):
                    found = "an empty line" if not row else f"{len(row)} fields"
                    raise CorpusError(f"{where}: expected {len(header)} fields, found {found}")
                yield self._row([row[i] for i in index], where)
        except csv.Error as err:
            raise CorpusError(f"{path}:{numbers[0] if numbers else reader.line_num}: malformed CSV ({err})") from None

    def _jsonl_rows(self, path: str) -> Iterator[tuple[str, Any, str]]:
        for i, line in self._lines(path):
            where = f"{path}:{i}"
            try:
                record = json.loads(line) if line.strip() else None
            except json.JSONDecodeError as err:
                raise CorpusError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict):
                found = "an empty line" if record is None else type(record).__name__
                raise CorpusError(f"{where}: expected a JSON object, found {found}")
            missing = [c for c in self._columns() if c not in record]
            if missing:
                raise CorpusError(f"{where}: lacks key(s) {', '.join(missing)}")
            yield self._row([record[c] for c in self._columns()], where)

    def _parquet_rows(self, path: str) -> Iterator[tuple[str, Any, str]]:
        import pyarrow.parquet as pq

        try:
            file = pq.ParquetFile(path)
        except Exception as err:  # pyarrow raises its own error types for a file that is not Parquet
            raise CorpusError(f"{path}: not a Parquet file ({err})") from None
        _column_indices(path, file.schema_arrow.names, self._columns())
        n, size = 0, os.path.getsize(path)
        for batch in file.iter_batches(columns=self._columns(), batch_size=8192):
            columns = [batch.column(c).to_pylist() for c in self._columns()]
            for values in zip(*columns):
                n += 1
                yield self._row(list(values), f"{path}:row {n}")
            self._progress[0] += int(size * batch.num_rows / max(file.metadata.num_rows, 1))

    def _hub_rows(self) -> Iterator[tuple[str, Any, str]]:
        from datasets import load_dataset

        ds = load_dataset(self.dataset, self.dataset_config, split=self.split, streaming=True)
        names = ds.column_names or []
        if names:
            _column_indices(f"dataset {self.dataset}", names, self._columns())
        info = getattr(ds, "info", None)
        split_info = (info.splits or {}).get(self.split) if info is not None and info.splits else None
        self._progress[:] = [0, int(getattr(split_info, "num_examples", 0) or 0)]
        for i, example in enumerate(ds):
            self._progress[0] += 1
            where = f"{self.dataset}:row {i + 1}"
            missing = [c for c in self._columns() if c not in example]
            if missing:
                raise CorpusError(f"{where}: lacks column(s) {', '.join(missing)}")
            yield self._row([example[c] for c in self._columns()], where)

    # ------------------------------------------------------------------ checks
    def _columns(self) -> list[str]:
        return [self.text_column] + ([self.id_column] if self.id_column else [])

    def _row(self, values: Sequence[Any], where: str) -> tuple[str, Any, str]:
        text = _text(values[0], where, f"empty text in column {self.text_column!r}")
        if not self.id_column:
            return text, None, where
        value = _id(values[1], where, self.id_column)
        return text, (value if self._id_kind == "int" else str(value)), where

    def id_kind(self) -> str:
        """How ids are stored: ``index`` (no id column: the row index), ``int`` (a Parquet integer column), ``str``."""
        return self._id_kind  # type: ignore[attr-defined]

    def _detect_id_kind(self) -> str:
        if not self.id_column:
            return "index"
        if self.dataset or any(self.format_of(p) != "parquet" for p in self.paths):
            return "str"
        import pyarrow as pa
        import pyarrow.parquet as pq

        kinds = set()
        for path in self.paths:
            schema = pq.read_schema(path)
            if self.id_column in schema.names:
                kinds.add(pa.types.is_integer(schema.field(self.id_column).type))
        return "int" if kinds == {True} else "str"


def _text(value: Any, where: str, empty: str) -> str:
    if not isinstance(value, str):
        raise CorpusError(f"{where}: expected text, found {type(value).__name__}")
    if not value.strip():
        raise CorpusError(f"{where}: {empty}")
    return value


def _id(value: Any, where: str, column: str | None) -> Any:
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise CorpusError(f"{where}: id column {column!r} holds {type(value).__name__}, expected text or an integer")
    if isinstance(value, str) and not value.strip():
        raise CorpusError(f"{where}: empty id in column {column!r}")
    return value


def _column_indices(where: str, header: Sequence[str], columns: Sequence[str]) -> list[int]:
    missing = [c for c in columns if c not in header]
    if missing:
        raise CorpusError(f"{where}: no column {', '.join(map(repr, missing))} (has {', '.join(header)})")
    return [list(header).index(c) for c in columns]
