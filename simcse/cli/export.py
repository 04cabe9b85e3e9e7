"""``simcse export``: write ONNX (float32 and int8) files into a model folder for fast CPU inference."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from simcse.cli.common import CommandError, one_line

logger = logging.getLogger(__name__)

DESCRIPTION = """Export a model folder to ONNX for fast CPU inference: FOLDER/onnx/model.onnx (float32) and, by
default, FOLDER/onnx/model_qint8_avx512_vnni.onnx (int8 weights, dynamic int8 activations). The layout is
sentence-transformers' (backend="onnx", model_kwargs={"file_name": ...}); ours reads it with
Encoder.from_pretrained(FOLDER, backend="onnx") or `simcse encode --backend onnx`. The float32 graph is
checked against torch before it is kept; files are renamed into place when complete."""

EPILOG = """examples:
  simcse export runs/demo-unsup-minilm/model
  simcse export runs/demo-unsup-minilm/model --quantize avx512_vnni avx2
  simcse export runs/demo-unsup-minilm/model --quantize none
  simcse encode --model runs/demo-unsup-minilm/model --backend onnx \\
      --onnx-file onnx/model_qint8_avx512_vnni.onnx sentences.txt -o vectors.npy

avx512_vnni suits any CPU with AVX512-VNNI (and ARM); avx2 keeps 7-bit weights for CPUs without VNNI."""


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse export``."""
    from simcse.encoder.export import QUANTIZATIONS

    parser = subparsers.add_parser(
        "export", help="write ONNX float32 and int8 files into a model folder", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("folder", metavar="FOLDER", help="a local model folder (ours, sentence-transformers', HF)")
    parser.add_argument(
        "--quantize", nargs="+", default=["avx512_vnni"], choices=[*QUANTIZATIONS, "none"], metavar="CONFIG",
        help=f"int8 variants to write ({', '.join(QUANTIZATIONS)}; none: float32 only; default: avx512_vnni)",
    )  # fmt: skip
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    parser.set_defaults(func=run_export)
    return parser


def run_export(args: argparse.Namespace) -> int:
    """Run ``simcse export``."""
    if not os.path.isdir(args.folder):
        raise CommandError(f"{args.folder}: not a local folder (export writes its files into the model folder)")
    quantize = tuple(q for q in dict.fromkeys(args.quantize) if q != "none")
    try:
        from simcse.encoder.export import export_onnx

        written = export_onnx(args.folder, quantize=quantize, opset=args.opset)
    except ImportError as err:
        hint = "pip install 'simcse-toolkit[onnx]'"
        raise CommandError(f"export needs onnx, onnxscript and onnxruntime: {hint} ({err})") from err
    except (OSError, ValueError) as err:
        raise CommandError(f"cannot export {args.folder}: {one_line(err)}") from err
    for rel in written:
        print(os.path.join(args.folder, rel))
    return 0
