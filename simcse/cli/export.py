"""``simcse export``: write ONNX (float32 and int8) files into a model folder for fast CPU inference."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from simcse.cli.common import CommandError, one_line

logger = logging.getLogger(__name__)

DESCRIPTION = """Export a model folder to ONNX for fast CPU inference: FOLDER/onnx/model.onnx (float32) and, by
default, FOLDER/onnx/model_qint8_avx512_vnni.onnx (int8 weights, dynamic int8 activations). --quantize static
adds FOLDER/onnx/model_qint8_static.onnx, int8 with activation ranges calibrated on --calibration sentences.
The layout is sentence-transformers' (backend="onnx", model_kwargs={"file_name": ...}); ours runs every file
with ONNX Runtime (--backend onnx) or OpenVINO (--backend openvino), e.g. `simcse encode --backend openvino`.

The float32 graph is checked against torch; each int8 graph is scored against float32 on STS-B dev (or
--dev FILE) and refused, with nothing written, if it loses more than --max-loss Spearman points (--force
writes it anyway). Files are renamed into place when complete."""

EPILOG = """examples:
  simcse export runs/demo-unsup-minilm/model
  simcse export runs/demo-unsup-minilm/model --quantize static --calibration data/corpus/wiki_sentences.txt
  simcse export runs/demo-unsup-minilm/model --quantize avx512_vnni avx2 --dev my_dev_pairs.tsv --max-loss 0.5
  simcse export runs/demo-unsup-minilm/model --quantize none
  simcse encode --model runs/demo-unsup-minilm/model --backend openvino sentences.txt -o vectors.npy
  simcse encode --model runs/demo-unsup-minilm/model --backend onnx \\
      --onnx-file onnx/model_qint8_avx512_vnni.onnx sentences.txt -o vectors.npy

avx512_vnni suits any CPU with AVX512-VNNI (and ARM); avx2 keeps 7-bit weights for CPUs without VNNI;
static needs a few hundred calibration sentences (one per line: e.g. the training corpus)."""


def add_export_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register ``simcse export``."""
    from simcse.encoder.export import QUANTIZATIONS, STATIC
    from simcse.encoder.int8 import CALIBRATION_SIZE
    from simcse.evaluation.export_gate import DEFAULT_MAX_LOSS

    parser = subparsers.add_parser(
        "export", help="write ONNX float32 and int8 files into a model folder", description=DESCRIPTION,
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    parser.add_argument("folder", metavar="FOLDER", help="a local model folder (ours, sentence-transformers', HF)")
    parser.add_argument(
        "--quantize", nargs="+", default=["avx512_vnni"], choices=[*QUANTIZATIONS, STATIC, "none"], metavar="CONFIG",
        help=f"int8 variants to write ({', '.join(QUANTIZATIONS)}, {STATIC}; none: float32 only; default: avx512_vnni)",
    )  # fmt: skip
    parser.add_argument("--calibration", default=None, metavar="FILE", help="static: sentences, one per line")
    parser.add_argument(
        "--calibration-size", type=int, default=CALIBRATION_SIZE, metavar="N",
        help=f"static: calibrate on the first N lines (default: {CALIBRATION_SIZE})",
    )  # fmt: skip
    parser.add_argument(
        "--dev", default="STSBenchmark", metavar="TASK_OR_FILE",
        help="accuracy gate: STSBenchmark (its dev split, default) or a pairs file (sentence1<TAB>sentence2<TAB>score)",
    )  # fmt: skip
    parser.add_argument(
        "--max-loss", type=float, default=DEFAULT_MAX_LOSS, metavar="POINTS",
        help=f"refuse an int8 file that loses more Spearman x 100 than this (default: {DEFAULT_MAX_LOSS})",
    )  # fmt: skip
    parser.add_argument("--force", action="store_true", help="write int8 files that fail the gate (scores still shown)")
    parser.add_argument("--no-gate", dest="gate", action="store_false", help="skip the accuracy gate")
    parser.add_argument("--data-dir", default=None, help="data directory (default: $SIMCSE_DATA_DIR, else ./data)")
    parser.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    parser.set_defaults(func=run_export)
    return parser


def _gate(args: argparse.Namespace, quantize: tuple[str, ...]) -> Any:
    """The accuracy gate, its data read before any export work (None without int8 files or with --no-gate)."""
    if not quantize or not args.gate:
        return None
    from simcse.evaluation.export_gate import STSGate

    if args.max_loss < 0:
        raise CommandError(f"--max-loss must be >= 0, got {args.max_loss}")
    try:
        return STSGate(args.dev, args.data_dir, max_loss=args.max_loss, force=args.force)
    except (OSError, ValueError) as err:
        raise CommandError(
            f"accuracy gate: {one_line(err)} (--dev FILE gives other pairs; --no-gate skips it)"
        ) from err


def run_export(args: argparse.Namespace) -> int:
    """Run ``simcse export``."""
    from simcse.encoder.export import STATIC
    from simcse.encoder.int8 import read_calibration

    if not os.path.isdir(args.folder):
        raise CommandError(f"{args.folder}: not a local folder (export writes its files into the model folder)")
    quantize = tuple(q for q in dict.fromkeys(args.quantize) if q != "none")
    calibration = None
    if STATIC in quantize:
        if args.calibration is None:
            raise CommandError("--quantize static needs --calibration FILE (sentences, one per line)")
        calibration = read_calibration(args.calibration, args.calibration_size)
    gate = _gate(args, quantize)
    try:
        from simcse.encoder.export import export_onnx

        written = export_onnx(args.folder, quantize=quantize, opset=args.opset, calibration=calibration, check=gate)
    except ImportError as err:
        hint = "pip install 'simcse-toolkit[onnx]'"
        raise CommandError(f"export needs onnx, onnxscript and onnxruntime: {hint} ({err})") from err
    except (OSError, ValueError) as err:
        raise CommandError(f"cannot export {args.folder}: {one_line(err)}") from err
    for rel in written:
        print(os.path.join(args.folder, rel))
    return 0
