"""``simcse push``: upload a saved model folder to the Hugging Face Hub (private by default)."""

from __future__ import annotations

import argparse
from typing import Any

from simcse.cli.common import CommandError
from simcse.publish import files_to_upload, get_token, push_to_hub

DESCRIPTION = """Publish a saved model folder to the Hugging Face Hub: create the repository REPO_ID
(private unless --public) and upload the folder in one commit: weights, config, tokenizer, the
sentence-transformers modules, the model card (README.md, its usage examples pointed at REPO_ID),
training_curves.png and onnx/ when present. Checkpoints, lock files, hidden and temporary files stay
local. Needs a token with write access: `hf auth login` once, or HF_TOKEN, or --token.
--dry-run lists what would be uploaded and uploads nothing."""

EPILOG = """examples:
  simcse push runs/demo-sup-minilm/model me/simcse-minilm-nli
  simcse push runs/demo-sup-minilm/model my-org/simcse-minilm-nli --public
  simcse push runs/demo-sup-minilm/model me/simcse-minilm-nli --dry-run
  simcse train --config training/configs/demo_sup_minilm.yaml --push_to_hub me/simcse-minilm-nli"""


def add_push_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse push``."""
    parser = subparsers.add_parser(
        "push", help="upload a saved model folder to the Hugging Face Hub", description=DESCRIPTION, epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("folder", metavar="FOLDER", help="saved model folder (e.g. <output_dir>/model)")
    parser.add_argument("repo_id", metavar="REPO_ID", help="user/name or org/name")
    visibility = parser.add_mutually_exclusive_group()
    visibility.add_argument("--private", dest="private", action="store_true", default=True, help="(default)")
    visibility.add_argument("--public", dest="private", action="store_false", help="create a public repository")
    parser.add_argument("--token", default=None, help="Hugging Face token (default: hf auth login, or HF_TOKEN)")
    parser.add_argument("--dry-run", action="store_true", help="list the files that would be uploaded, then stop")
    parser.set_defaults(func=run_push)
    return parser


def run_push(args: argparse.Namespace) -> int:
    """Run ``simcse push``."""
    if args.repo_id.count("/") != 1 or not all(args.repo_id.split("/")):
        raise CommandError(f"REPO_ID {args.repo_id!r}: expected user/name or org/name")
    files = files_to_upload(args.folder)  # a wrong folder fails before the token is asked for
    if args.dry_run:
        print("\n".join(files))
        return 0
    url = push_to_hub(args.folder, args.repo_id, private=args.private, token=get_token(args.token))
    print(f"{url} ({'private' if args.private else 'public'}): {len(files)} files")
    return 0
