"""Training data files: read and validate rows, with errors that name the file, the line and the problem.

Unsupervised data is a text file, one sentence per line (blank lines skipped and counted).
Supervised data is a CSV whose header names ``sent0,sent1`` (pairs) or ``sent0,sent1,hard_neg``
(triplets); the mode comes from the config and is checked against the header.
"""

from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)

# a line longer than this is cut before tokenization (the tokenizer truncates at max_seq_len anyway)
MAX_LINE_CHARS = 10_000
# bytes that are not UTF-8, as `surrogateescape` decoding leaves them
_UNDECODED = re.compile("[\udc80-\udcff]")


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


def _open_text(path: str, on_bad_line: str = "error") -> tuple[str, bool]:
    """The file's text and whether it holds undecodable bytes (only when skipping bad lines)."""
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a file")
    if not os.path.isfile(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        raw = f.read()
    raw = raw.removeprefix(codecs.BOM_UTF8)  # as spreadsheet programs write it
    try:
        return raw.decode("utf-8"), False
    except UnicodeDecodeError as err:
        if on_bad_line == "error":
            line = raw[: err.start].count(b"\n") + 1
            raise DataError(f"{path}:{line}: invalid UTF-8 ({err.reason})") from None
    # the readers skip (and count) each line holding an undecodable byte
    return raw.decode("utf-8", errors="surrogateescape"), True


def _cut(text: str, report: ReadReport) -> str:
    if len(text) > MAX_LINE_CHARS:
        report.truncated_lines += 1
        return text[:MAX_LINE_CHARS]
    return text


def _bad(path: str, line: int, problem: str, on_bad_line: str, report: ReadReport) -> None:
    message = f"{path}:{line}: {problem}"
    if on_bad_line == "error":
        raise DataError(message)
    report.bad_lines.append(message)


def read_sentences(path: str, on_bad_line: str = "error") -> tuple[list[str], ReadReport]:
    """Read one sentence per line; blank lines are skipped and counted, long ones cut and counted."""
    report = ReadReport()
    sentences = []
    content, lossy = _open_text(path, on_bad_line)
    for i, line in enumerate(content.splitlines(), start=1):
        text = line.strip()
        if not text:
            report.blank_lines += 1
            continue
        if "\x00" in text:
            _bad(path, i, "contains a NUL byte", on_bad_line, report)
            continue
        if lossy and _UNDECODED.search(text):
            _bad(path, i, "invalid UTF-8", on_bad_line, report)
            continue
        sentences.append(_cut(text, report))
    if not sentences:
        skipped = f"; {len(report.bad_lines)} bad line(s) skipped" if report.bad_lines else ""
        raise DataError(f"{path}: no sentences (file is empty or blank{skipped})")
    return sentences, report


def read_csv_examples(
    path: str, columns: Sequence[str], on_bad_line: str = "error"
) -> tuple[list[tuple[str, ...]], ReadReport]:
    """Read the named columns of a CSV with a header; every field must be non-empty.

    Problems are reported at the line where the record starts (a quoted field may span lines).
    """
    report = ReadReport()
    text, lossy = _open_text(path, on_bad_line)
    if not text.strip():
        raise DataError(f"{path}: file is empty or blank (expected a header naming {','.join(columns)})")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip() for h in next(reader)]
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
    rows = []
    while True:
        line = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as err:
            _bad(path, line, f"malformed CSV ({err})", on_bad_line, report)
            continue
        if not any(cell.strip() for cell in row):
            report.blank_lines += 1
            continue
        if lossy and any(_UNDECODED.search(cell) for cell in row):
            _bad(path, line, "invalid UTF-8", on_bad_line, report)
            continue
        if len(row) != len(header):
            spans = f" (record ends at line {reader.line_num}: unclosed quote?)" if reader.line_num > line else ""
            _bad(path, line, f"expected {len(header)} fields, found {len(row)}{spans}", on_bad_line, report)
            continue
        values = tuple(_cut(row[i].strip(), report) for i in index)
        empty = [c for c, v in zip(columns, values) if not v]
        if empty:
            # refused, not read as " " as the reference code did: an empty sentence embeds to the same
            # point whatever row it is on, so it would teach nothing and pull unrelated rows together
            problem = (
                f"empty field(s) {','.join(empty)} (an empty sentence is refused, not read as a space as the "
                "reference SimCSE code did; fill it in, or skip such rows with on_bad_line: skip)"
            )
            _bad(path, line, problem, on_bad_line, report)
            continue
        rows.append(values)
    if not rows:
        skipped = f"; {len(report.bad_lines)} bad line(s) skipped" if report.bad_lines else ""
        raise DataError(f"{path}: no data rows after the header{skipped}")
    return rows, report


def load_hf_examples(name: str, config: str | None, split: str, columns: Sequence[str]) -> list[tuple[str, ...]]:
    """Read the named columns of a Hugging Face dataset (for users who are online)."""
    from datasets import load_dataset

    ds = load_dataset(name, config, split=split)
    missing = [c for c in columns if c not in ds.column_names]
    if missing:
        raise DataError(f"dataset {name}: missing column(s) {missing}; has {ds.column_names}")
    return list(zip(*(ds[c] for c in columns)))
