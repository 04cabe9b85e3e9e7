"""Retrieval data: queries, a corpus and relevance judgements, from the BEIR layout or from columns.

BEIR layout (as BEIR, MTEB and sentence-transformers users have it)::

    FOLDER/corpus.jsonl        {"_id": "d1", "title": "...", "text": "..."}   (title optional)
    FOLDER/queries.jsonl       {"_id": "q1", "text": "..."}
    FOLDER/qrels/<split>.tsv   query-id<TAB>corpus-id<TAB>score   (header line optional; score an integer >= 0)

A document's text is its title and text joined by a space, as BEIR and MTEB embed it. Columns (a file or
a hub dataset with ``query``, ``positive`` and optionally ``negative``, each a text or a list of texts):
every distinct query is a query, every distinct positive and negative a document of the corpus, and a
query's positives are its relevant documents (score 1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from simcse.evaluation.tables import EvalDataError, read_columns, text_lines, text_value
from simcse.io import atomic_dir

QRELS_HEADER = ("query-id", "corpus-id", "score")


@dataclass(frozen=True)
class RetrievalData:
    """Queries and corpus by id, and ``qrels[query_id][doc_id] = relevance`` (> 0: relevant)."""

    queries: dict[str, str]
    corpus: dict[str, str]
    qrels: dict[str, dict[str, int]]


def _jsonl_texts(path: str, what: str, with_title: bool) -> dict[str, str]:
    if not os.path.isfile(path):
        raise EvalDataError(f"{path}: not found (a BEIR folder holds corpus.jsonl, queries.jsonl, qrels/<split>.tsv)")
    texts: dict[str, str] = {}
    first: dict[str, int] = {}
    for i, line in enumerate(text_lines(path), start=1):
        if line.strip():
            where = f"{path}:{i}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise EvalDataError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
            if not isinstance(record, dict) or "_id" not in record or "text" not in record:
                raise EvalDataError(f"{where}: expected an object with _id and text")
            key = str(record["_id"])
            if key in first:
                raise EvalDataError(f"{where}: {what} id {key!r} appears twice (first at line {first[key]})")
            title = record.get("title") or "" if with_title else ""
            body = record["text"] if isinstance(record["text"], str) else None
            if body is None or not isinstance(title, str):
                raise EvalDataError(f"{where}: title and text must be strings")
            texts[key] = text_value(where, "text", f"{title} {body}".strip() if title else body)
            first[key] = i
    if not texts:
        raise EvalDataError(f"{path}: no {what}s (the file is empty)")
    return texts


def _read_qrels(path: str, queries: Mapping[str, str], corpus: Mapping[str, str]) -> dict[str, dict[str, int]]:
    folder = os.path.dirname(path)
    if not os.path.isfile(path):
        found = sorted(n[:-4] for n in os.listdir(folder) if n.endswith(".tsv")) if os.path.isdir(folder) else []
        raise EvalDataError(f"{path}: not found (splits here: {', '.join(found) or 'none'})")
    qrels: dict[str, dict[str, int]] = {}
    for i, line in enumerate(text_lines(path), start=1):
        fields = [x.strip() for x in line.rstrip("\r\n").split("\t")]
        if not any(fields) or (i == 1 and tuple(fields) == QRELS_HEADER):
            continue
        where = f"{path}:{i}"
        if len(fields) != 3:
            raise EvalDataError(f"{where}: expected 3 tab-separated fields (query-id, corpus-id, score)")
        qid, did, score = fields
        if qid not in queries:
            raise EvalDataError(f"{where}: query id {qid!r} is not in queries.jsonl")
        if did not in corpus:
            raise EvalDataError(f"{where}: document id {did!r} is not in corpus.jsonl")
        if not score.lstrip("-").isdigit() or int(score) < 0:
            raise EvalDataError(f"{where}: score {score!r} is not an integer >= 0")
        if did in qrels.setdefault(qid, {}):
            raise EvalDataError(f"{where}: query {qid!r} and document {did!r} are judged twice")
        qrels[qid][did] = int(score)
    if not any(rel > 0 for docs in qrels.values() for rel in docs.values()):
        raise EvalDataError(f"{path}: no relevant document (no line with score > 0)")
    return qrels


def load_beir(folder: str | os.PathLike, split: str = "test") -> RetrievalData:
    """Read a BEIR folder; every problem is one line naming the file and line.

    Args:
        folder: The folder holding ``corpus.jsonl``, ``queries.jsonl`` and ``qrels/<split>.tsv``.
        split: The judgements to read.

    Raises:
        EvalDataError: A file is missing or malformed, the corpus is empty, or a qrels line names a
            query or document that is not in the files.
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise EvalDataError(f"{folder}: {'not a folder' if os.path.exists(folder) else 'not found'}")
    corpus = _jsonl_texts(os.path.join(folder, "corpus.jsonl"), "document", with_title=True)
    queries = _jsonl_texts(os.path.join(folder, "queries.jsonl"), "query", with_title=False)
    qrels = _read_qrels(os.path.join(folder, "qrels", f"{split}.tsv"), queries, corpus)
    return RetrievalData({q: queries[q] for q in qrels}, corpus, qrels)


def _texts(where: str, name: str, value: Any) -> list[str]:
    if value is None:
        return []
    values = value if isinstance(value, (list, tuple)) else [value]
    return [text_value(where, name, v) for v in values]


def load_retrieval_pairs(
    path: str | os.PathLike | None = None, *, columns: Mapping[str, str] | None = None, **source: Any
) -> RetrievalData:
    """Read ``query``, ``positive`` and optional ``negative`` columns (see the module's notes).

    Args:
        path: A CSV, TSV, JSON lines or Parquet file (see :func:`~simcse.evaluation.tables.read_columns`).
        columns: The file's names for ``query``, ``positive``, ``negative``, where they differ.
        **source: ``dataset``, ``config``, ``split``: a hub dataset instead of ``path``.
    """
    queries: dict[str, str] = {}
    docs: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    rows = read_columns(path, ("query", "positive", "negative"), columns=columns, optional=("negative",), **source)
    for where, row in rows:
        query = text_value(where, "query", row["query"])
        positives = _texts(where, "positive", row["positive"])
        if not positives:
            raise EvalDataError(f"{where}: no positive")
        qid = queries.setdefault(query, f"q{len(queries)}")
        for text in [*positives, *_texts(where, "negative", row["negative"])]:
            docs.setdefault(text, f"d{len(docs)}")
        qrels.setdefault(qid, {}).update({docs[text]: 1 for text in positives})
    return RetrievalData({q: t for t, q in queries.items()}, {d: t for t, d in docs.items()}, qrels)


def write_beir(
    folder: str | os.PathLike, data: RetrievalData, qrels: Mapping[str, Mapping[str, Mapping[str, int]]]
) -> str:
    """Write ``data``'s corpus and queries and one ``qrels/<split>.tsv`` per entry of ``qrels``, atomically.

    Args:
        folder: The BEIR folder to (re)create; it appears whole or not at all.
        data: Queries and corpus (``data.qrels`` is not written; pass it in ``qrels`` under a split name).
        qrels: ``{split: {query_id: {doc_id: score}}}``.

    Returns:
        ``folder``.
    """
    folder = os.fspath(folder)
    with atomic_dir(folder) as tmp:
        for name, texts in (("corpus.jsonl", data.corpus), ("queries.jsonl", data.queries)):
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as f:
                f.writelines(json.dumps({"_id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in texts.items())
        os.makedirs(os.path.join(tmp, "qrels"))
        for split, judged in qrels.items():
            with open(os.path.join(tmp, "qrels", f"{split}.tsv"), "w", encoding="utf-8") as f:
                f.write("\t".join(QRELS_HEADER) + "\n")
                f.writelines(f"{q}\t{d}\t{s}\n" for q, docs in judged.items() for d, s in docs.items())
    return folder
