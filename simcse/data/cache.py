"""Training data as Arrow: read and validate once, tokenize once (``datasets`` ``map``), memory-map everywhere.

:func:`load_training_views` reads the config's source row by row (:mod:`simcse.data.readers`, errors name
file, line and problem), tokenizes it in batches with ``Dataset.map`` and keeps the token ids in an Arrow
file of the cache folder, keyed by the source (path, size, modification time), the tokenizer and every
setting that changes the result. The folder is built under a temporary name and renamed into place when
complete, so a build that is killed leaves nothing a later run would use. Under several processes the
main process builds it and the others wait, then every process memory-maps the same file: the corpus is
tokenized once per node and never held as Python objects.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any

from simcse.config import TrainConfig
from simcse.data.columns import encode_column, prompt_keys, source_name, source_rows, text_hash, tokenized_keys
from simcse.data.loader import META_FILE, TOKENS_FILE, TokenizedViews
from simcse.data.readers import MAX_LINE_CHARS, DataError, ReadReport, file_format
from simcse.data.views import needs_texts
from simcse.io import atomic_write_text

__all__ = ["file_fingerprint", "load_training_views"]

logger = logging.getLogger(__name__)

CACHE_VERSION = 2  # bump when the cache's layout or content changes
FINGERPRINTS_DIR = "fingerprints"  # memoised content hashes of source files, beside the cache folders


def load_training_views(
    cfg: TrainConfig, tokenizer: Any, verbose: bool = True, accelerator: Any = None
) -> TokenizedViews:
    """Read, validate and tokenize the training data named by ``cfg`` (from the cache when built before).

    Unsupervised: one column (a sentence), used for both views. Pairs: ``sent0, sent1``.
    Triplets: ``sent0, sent1, hard_neg``. Column names come from ``cfg.columns``.

    Under several processes the global main process builds the cache while the others wait (on the
    long-wait group: :func:`simcse.distributed.share_outcome`); then the first process of every other
    machine builds its own copy where its cache folder does not show the main process's (node-local
    disks), and every process memory-maps its machine's copy. The cache is keyed by the file's content,
    so each machine's own copy of the data finds a cache built from another copy, and machines whose
    copies differ are refused.

    Args:
        cfg: The run's config (source, mode, columns, ``max_seq_len``, ``data_cache_dir``...).
        tokenizer: The encoder's tokenizer.
        verbose: Log the counts of skipped lines and the size of the data.
        accelerator: Under several processes, the main process builds the cache and the others wait.

    Raises:
        DataError: a bad row (file, line and problem), or no rows at all; on every process.
    """
    from simcse.distributed import share_outcome

    several = accelerator is not None and accelerator.num_processes > 1
    main = accelerator is None or accelerator.is_main_process
    local_main = accelerator is None or accelerator.is_local_main_process
    source = source_name(cfg)
    if not several:
        folder = _cache_folder(cfg, tokenizer, source)
    else:  # the first process of each machine hashes the file (memoised); then the others read the memo
        folder, error = _attempt(lambda: _cache_folder(cfg, tokenizer, source)) if local_main else (None, None)
        share_outcome(error, f"reading {source}")
        if folder is None:
            folder, error = _attempt(lambda: _cache_folder(cfg, tokenizer, source))
        share_outcome(error, f"reading {source}")
        _check_same_data(folder, source)
    # the main process builds; then the first process of a machine that does not see its cache builds one
    for builds in (main, local_main and not main):
        error = None
        if builds and not os.path.isfile(os.path.join(folder, META_FILE)):
            _, error = _attempt(lambda: _build(cfg, tokenizer, folder, source))
        if several:
            share_outcome(error, f"tokenizing {source}")
        elif error is not None:
            raise error
    views = TokenizedViews.open(folder)
    if verbose:
        _log_counts(views, source, cfg.mode)
    return views


def _attempt(work: Any) -> tuple[Any, BaseException | None]:
    """``(work(), None)``, or ``(None, error)`` for an error a process must share before raising it."""
    try:
        return work(), None
    except Exception as err:  # shared with the other processes, then raised on every one
        return None, err


def _check_same_data(folder: str, source: str) -> None:
    """Every process must read the same data: the cache names (content hashes) of all processes agree."""
    from simcse.distributed import gather_objects

    names = gather_objects(os.path.basename(folder))
    if len(set(names)) > 1:
        ranks = {name: [r for r, n in enumerate(names) if n == name] for name in dict.fromkeys(names)}
        raise DataError(
            f"{source}: the processes do not read the same data (each machine's copy of the file, or the tokenizer, "
            f"differs): {'; '.join(f'processes {r} see {n}' for n, r in ranks.items())}"
        )


def _cache_folder(cfg: TrainConfig, tokenizer: Any, source: str) -> str:
    """The cache folder for this source, tokenizer and settings (its name is a hash of all of them).

    A file is keyed by its content (a hash of its bytes, memoised per path, size and modification
    time), not by where it lies: each machine of a cluster can hold its own copy and still find the
    cache another copy built.
    """
    from datasets import config as ds_config

    root = cfg.data_cache_dir or os.path.join(str(ds_config.HF_DATASETS_CACHE), "simcse")
    if cfg.dataset_name:
        origin: dict[str, Any] = {"hub": [cfg.dataset_name, cfg.dataset_config, cfg.dataset_split]}
    else:
        if os.path.isdir(source):
            raise DataError(f"{source}: is a directory, expected a file")
        if not os.path.isfile(source):
            raise DataError(f"{source}: file not found")
        origin = {"content": file_fingerprint(source, os.path.join(root, FINGERPRINTS_DIR))}
        origin["format"] = file_format(source, cfg.mode, cfg.data_format)
    key = {
        **origin, "version": CACHE_VERSION, "mode": cfg.mode, "columns": cfg.text_columns,
        "on_bad_line": cfg.on_bad_line, "max_seq_len": cfg.max_seq_len, "max_train_samples": cfg.max_train_samples,
        "tokenizer": _tokenizer_id(tokenizer), "prompts": cfg.column_prompts, "include_prompt": cfg.include_prompt,
        **({"texts": True} if needs_texts(cfg) else {}),  # word-level views re-tokenize the kept texts
    }  # fmt: skip
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:24]
    return os.path.join(root, f"{os.path.basename(source) or 'data'}-{digest}")


def file_fingerprint(path: str, memo_dir: str | None = None) -> str:
    """The SHA-256 of a file's bytes (about 1 GB/s); memoised in ``memo_dir`` per real path, size and mtime.

    A memo that cannot be written (a read-only cache) only costs the hashing again next time.
    """
    stat = os.stat(path)
    where = f"{os.path.realpath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}"
    name = hashlib.sha256(where.encode("utf-8", "surrogatepass")).hexdigest()
    memo = os.path.join(memo_dir, name) if memo_dir else None
    if memo is not None:
        with contextlib.suppress(OSError), open(memo, encoding="utf-8") as f:
            return f.read().strip()
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    value = f"sha256:{digest.hexdigest()}"
    if memo is not None:
        with contextlib.suppress(OSError):
            atomic_write_text(memo, value + "\n")
    return value


def _tokenizer_id(tokenizer: Any) -> str:
    """A hash of everything the tokenizer does (vocabulary, normalizer, special tokens); fast tokenizers
    serialize to JSON in milliseconds, where hashing the Python object takes seconds."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None:
        spec = json.loads(backend.to_str())
        spec.pop("truncation", None), spec.pop("padding", None)  # set by each call, not part of the vocabulary
        text = f"{type(tokenizer).__name__}:{tokenizer.model_input_names}:{json.dumps(spec, sort_keys=True)}"
        return hashlib.sha256(text.encode()).hexdigest()
    from datasets.fingerprint import Hasher

    return Hasher.hash(tokenizer)


def _build(cfg: TrainConfig, tokenizer: Any, folder: str, source: str) -> None:
    """Read, validate, tokenize into a temporary folder beside ``folder``; rename it into place when complete."""
    from datasets import Dataset, Features, Sequence, Value
    from datasets.exceptions import DatasetGenerationError

    columns, report = cfg.text_columns, ReadReport()
    keys = prompt_keys(cfg, tokenized_keys(tokenizer))
    os.makedirs(os.path.dirname(folder), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(folder)}.tmp-", dir=os.path.dirname(folder))
    try:

        def rows() -> Iterator[dict[str, str]]:
            for row in source_rows(cfg, source, report):
                yield {f"text_{c}": text for c, text in enumerate(row)}

        try:
            text = Dataset.from_generator(
                rows, features=Features({f"text_{c}": Value("string") for c in range(len(columns))}),
                cache_dir=os.path.join(tmp, "text"),
            )  # fmt: skip
        except DatasetGenerationError as err:
            if isinstance(err.__cause__, DataError):
                raise err.__cause__ from None
            raise

        def tokenize(batch: dict[str, list[str]]) -> dict[str, list]:
            out: dict[str, list] = {}
            for c in range(len(columns)):
                enc = encode_column(tokenizer, batch[f"text_{c}"], columns[c], cfg)  # with the column's prompt
                out.update({f"{k}_{c}": enc[k] for k in keys})
                out[f"hash_{c}"] = [text_hash(t) for t in batch[f"text_{c}"]]
                if keep_texts:
                    out[f"text_{c}"] = batch[f"text_{c}"]
            return out

        features = {f"{k}_{c}": Sequence(Value("int32")) for c in range(len(columns)) for k in keys}
        features.update({f"hash_{c}": Value("int64") for c in range(len(columns))})
        keep_texts = needs_texts(cfg)
        if keep_texts:
            features.update({f"text_{c}": Value("string") for c in range(len(columns))})
        text.map(
            tokenize, batched=True, batch_size=1000, remove_columns=text.column_names, features=Features(features),
            cache_file_name=os.path.join(tmp, TOKENS_FILE), new_fingerprint=os.path.basename(folder),
            desc="tokenize",
        )  # fmt: skip
        del text
        shutil.rmtree(os.path.join(tmp, "text"))  # the text is not needed once tokenized
        meta = {
            "keys": keys, "view_columns": cfg.view_columns,
            "pad_id": tokenizer.pad_token_id or 0, "report": report.counts(),
            "first_bad": report.bad_lines[0] if report.bad_lines else None, "source": source,
        }  # fmt: skip
        with open(os.path.join(tmp, META_FILE), "w", encoding="utf-8") as f:
            json.dump(meta, f, indent=2)
        try:
            os.rename(tmp, folder)  # complete: it gets its final name (another builder's wins if it came first)
        except OSError:
            if not os.path.isfile(os.path.join(folder, META_FILE)):
                raise
        logger.info("tokenized %s into %s", source, folder)
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)


def _log_counts(views: TokenizedViews, source: str, mode: str) -> None:
    report = views.report
    if report["blank_lines"] or report["bad_lines"] or report["truncated_lines"]:
        logger.warning(
            "%s: skipped %d blank and %d bad line(s), cut %d line(s) at %d characters%s",
            source, report["blank_lines"], report["bad_lines"], report["truncated_lines"], MAX_LINE_CHARS,
            f"; first bad: {views.first_bad}" if views.first_bad else "",
        )  # fmt: skip
    logger.info("%s: %d training examples (%s), cached in %s", source, len(views), mode, views.folder)
