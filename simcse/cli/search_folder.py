"""``simcse search --corpus-embeddings FOLDER``: search a sharded corpus encode shard by shard."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from simcse.cli.common import CommandError, load_model


def search_folder(args: argparse.Namespace, queries: list[str]) -> int:
    """Encode ``queries`` with ``--model`` (the folder's model) and print the best rows of the folder."""
    from simcse.corpus import ShardedEmbeddings
    from simcse.corpus.run import model_revision

    folder = ShardedEmbeddings(args.corpus_embeddings)
    settings = folder.settings
    if args.truncate_dim not in (None, settings["dim"]):
        raise CommandError(f"{args.corpus_embeddings}: holds vectors of size {settings['dim']}; drop --truncate-dim")
    encoder = load_model(args)
    if model_revision(encoder, args.model) != settings["model_revision"] or encoder.pooler != settings["pooler"]:
        made = f"model {settings['model']} (pooler {settings['pooler']}, revision {settings['model_revision']})"
        raise CommandError(f"{args.corpus_embeddings}: encoded with {made}, not --model {args.model}")
    q = encoder.encode(queries, batch_size=args.batch_size, truncate_dim=settings["truncate_dim"])  # (n, dim)
    hits = folder.search(q, args.top_k, args.precision, args.rescore_multiplier)
    rows = sorted({row for found in hits for row, _ in found})
    ids = dict(zip(rows, folder.ids(rows)))
    texts = _texts(args.corpus, folder.manifest, ids)
    for query, found in zip(queries, hits):
        sys.stdout.write(_format(query, found, ids, texts, args.format) + "\n")
    sys.stdout.flush()
    return 0


def _texts(corpus: str | None, manifest: dict[str, Any], ids: dict[int, Any]) -> dict[int, str]:
    """Texts of the hit rows (``{row: id}``), read from ``--corpus`` or the folder's recorded input (empty when
    neither exists). Rows are input rows, except in a folder whose rows are in another order (Ray's): there
    the input's id column finds them."""
    from simcse.corpus import CorpusSource

    recorded = manifest.get("input", {})
    paths = [corpus] if corpus else recorded.get("paths") or []
    if not paths or not all(os.path.isfile(p) for p in paths):
        return {}
    by_id = recorded.get("rows_in_input_order", True) is False
    source = CorpusSource(
        paths=tuple(paths), input_format="auto" if corpus else recorded.get("format", "auto"),
        text_column=recorded.get("text_column", "text"), id_column=recorded.get("id_column") if by_id else None,
    )  # fmt: skip
    if not by_id:
        return {i: row[0] for i, row in source.find_rows(set(ids)).items()}
    rows_of = {value: row for row, value in ids.items()}
    found: dict[int, str] = {}
    for text, value, _ in source.rows():
        if value in rows_of:
            found[rows_of[value]] = text
            if len(found) == len(rows_of):
                break
    return found


def _format(query: str, hits: list[tuple[int, float]], ids: dict, texts: dict, fmt: str) -> str:
    if fmt == "jsonl":
        found = [{"rank": r, "score": round(s, 6), "row": i, "id": ids[i], **({"text": texts[i]} if i in texts else {})}
                 for r, (i, s) in enumerate(hits, 1)]  # fmt: skip
        return json.dumps({"query": query, "hits": found}, ensure_ascii=False)
    lines = [f"query: {query}"] + [
        f"  {r:>2}. {s:.4f}  [id {ids[i]}] {texts.get(i, '')}".rstrip() for r, (i, s) in enumerate(hits, 1)
    ]
    return "\n".join(lines) + "\n"
