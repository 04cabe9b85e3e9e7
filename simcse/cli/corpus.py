"""``simcse encode ... --output FOLDER``: the options of a sharded corpus encode, and the call into the library."""

from __future__ import annotations

import argparse
import logging
import os

from simcse.cli.common import CommandError, check_truncate_argument, load_model

logger = logging.getLogger(__name__)

_CORPUS_ONLY = ("dataset", "id_column", "resume", "overwrite", "prompt", "prompt_name")


def add_corpus_arguments(parser: argparse.ArgumentParser) -> None:
    """Options that apply when ``--output`` is a folder (a streamed, sharded encode)."""
    group = parser.add_argument_group("corpus (when --output is a folder)")
    group.add_argument("--dataset", default=None, metavar="NAME", help="a Hugging Face dataset (streamed) as input")
    group.add_argument("--dataset-config", default=None, metavar="NAME", help="the dataset's configuration")
    group.add_argument("--split", default="train", help="the dataset's split (default: train)")
    group.add_argument(
        "--input-format", choices=("auto", "text", "csv", "tsv", "jsonl", "parquet"), default="auto",
        help="input format (default: by extension: .csv .tsv .jsonl/.json .parquet, else text)",
    )  # fmt: skip
    group.add_argument("--text-column", default="text", metavar="NAME", help="column holding the text (default: text)")
    group.add_argument(
        "--id-column", default=None, metavar="NAME", help="column holding unique row ids (default: the row index)"
    )
    group.add_argument("--shard-size", type=int, default=100_000, metavar="N", help="rows per shard (default: 100000)")
    group.add_argument("--format", choices=("parquet", "npy"), default="parquet", help="shard files (default: parquet)")
    group.add_argument(
        "--dtype", choices=("float32", "int8", "binary"), default="float32",
        help="stored values: float32, int8 codes (4x smaller) or sign bits (32x smaller) (default: float32)",
    )  # fmt: skip
    group.add_argument(
        "--calibration-rows", type=int, default=10_000, metavar="N",
        help="int8: the first N rows set the per-dimension ranges (default: 10000)",
    )  # fmt: skip
    group.add_argument("--prompt", default=None, help="text put before every input (an instruction)")
    group.add_argument("--prompt-name", default=None, help="one of the model's saved prompts, e.g. document")
    group.add_argument("--resume", action="store_true", help="continue an unfinished output folder")
    group.add_argument("--overwrite", action="store_true", help="replace an earlier output in the folder")
    group.add_argument(
        "--wait-timeout", type=float, default=1800.0, metavar="S",
        help="several processes: fail when no other process's shard appears for S seconds (default: 1800)",
    )  # fmt: skip


def check_small_input(args: argparse.Namespace) -> None:
    """One line when a corpus-only option, or several inputs, come with a single-file ``--output``."""
    given = [name for name in _CORPUS_ONLY if getattr(args, name)]
    if given or len(args.input) > 1:
        what = f"--{given[0].replace('_', '-')}" if given else "several inputs"
        raise CommandError(f"{what} needs a folder as --output (.npy / .jsonl output is for one small text file)")


def run_corpus_encode(args: argparse.Namespace) -> int:
    """Stream the input into shards under ``args.output`` as this process's part of the job."""
    from simcse.corpus import CorpusSource, EncodeOptions, encode_corpus
    from simcse.distributed import init_cpu_group_from_env

    if "-" in args.input:
        raise CommandError("a folder --output reads files or --dataset, not stdin")
    source = CorpusSource(
        paths=tuple(args.input), input_format=args.input_format, text_column=args.text_column,
        id_column=args.id_column, dataset=args.dataset, dataset_config=args.dataset_config, split=args.split,
    )  # fmt: skip
    options = EncodeOptions(
        shard_size=args.shard_size, file_format=args.format, dtype=args.dtype, batch_size=args.batch_size,
        normalize=args.normalize or None, truncate_dim=args.truncate_dim, prompt=args.prompt,
        prompt_name=args.prompt_name, calibration_rows=args.calibration_rows, resume=args.resume,
        overwrite=args.overwrite, wait_timeout=args.wait_timeout, show_progress=args.progress,
    )  # fmt: skip
    _, world = init_cpu_group_from_env(args.wait_timeout)
    if world > 1 and args.device is None and _has_cuda():
        args.device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"  # one GPU per process
    encoder = load_model(args)
    check_truncate_argument(args, encoder.dim)
    manifest = encode_corpus(encoder, source, args.output, options, model_name=args.model)
    if manifest is not None:
        logger.info("wrote %s: %d rows x %d %s in %d shard(s)", args.output, manifest["rows"],
                    manifest["settings"]["dim"], manifest["settings"]["dtype"], len(manifest["shards"]))  # fmt: skip
    return 0


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
