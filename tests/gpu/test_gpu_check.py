"""The prepared GPU check, as far as a CPU machine can run it: the pack, the summary format, the CUDA tests.

On the GPU machine ``bash scripts/gpu/gpu_check.sh run`` runs ``tests/gpu/test_gpu.py`` and the benchmarks; here
the pack is built from ../shared (small options), the CHECK lines and junit parsing are exercised, and
the CUDA tests are collected and skipped (no test of theirs may be missing or broken at import).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import pytest

from tests.helpers.paths import REPO


def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", os.path.join(REPO, "scripts", "gpu", "gpu_check.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_holds_what_the_run_reads_and_fits_the_carry_limit(shared_data, tmp_path):
    pack = tmp_path / "pack"
    script = os.path.join(REPO, "scripts", "gpu", "gpu_check.py")
    cmd = [sys.executable, script, "pack", "--pack", str(pack), "--shared", os.path.dirname(shared_data),
           "--corpus-lines", "50", "--no-reference", "--no-wheels"]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=REPO)
    manifest = json.loads((pack / "manifest.json").read_text())
    assert manifest["corpus_lines"] == 50 and manifest["size_mb"] <= gpu_check().MAX_PACK_MB
    assert len((pack / "data" / "corpus" / "wiki_sentences.txt").read_text().splitlines()) == 50
    assert (pack / "data" / "senteval" / "STS" / "STSBenchmark" / "sts-dev.csv").is_file()
    assert (pack / "models" / "bert-mini" / "model.safetensors").is_file()
    minilm = pack / "models" / "minilm-config"
    assert (minilm / "config.json").is_file() and (minilm / "tokenizer.json").is_file()
    assert not list(minilm.glob("*.safetensors"))  # weights are built at random there: speed needs none
    from transformers import AutoConfig, AutoTokenizer

    AutoConfig.from_pretrained(str(minilm)), AutoTokenizer.from_pretrained(str(minilm))  # loadable offline


def test_summary_lines_and_junit_checks(tmp_path):
    module = gpu_check()
    summary = module.Summary(str(tmp_path))
    summary.add("cuda", True, "NVIDIA H200 torch 2.11")
    junit = tmp_path / "r.xml"
    junit.write_text(
        '<testsuites><testsuite><testcase name="a" time="0.5"/><testcase name="b"><failure message="x"/>'
        '</testcase><testcase name="c"><skipped/></testcase></testsuite></testsuites>'
    )
    module.junit_checks(str(junit), summary)
    lines = (tmp_path / "gpu_check.txt").read_text().splitlines()
    assert lines == ["CHECK cuda PASS NVIDIA H200 torch 2.11", "CHECK test:a PASS 0.5s", "CHECK test:b FAIL failure",
                     "CHECK test:c FAIL skipped"]  # fmt: skip
    assert not summary.passed


@pytest.mark.slow
def test_the_cuda_tests_are_collected_and_skip_without_a_gpu():
    """What the GPU run selects (``-k cuda``) is there and imports; their CPU twins run in the suite itself."""
    import torch

    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/gpu/test_gpu.py", "-k", "cuda", "-rs"]
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    if torch.cuda.is_available():
        pytest.skip("a GPU is here: tests/gpu/test_gpu.py runs for real (scripts/gpu/gpu_check.sh)")
    assert proc.returncode == 0, proc.stdout[-2000:]
    import re

    skipped = re.search(r"(\d+) skipped", proc.stdout)
    assert skipped and int(skipped.group(1)) >= 18 and "needs a CUDA GPU" in proc.stdout
    assert " passed" not in proc.stdout and "error" not in proc.stdout.lower()


@pytest.mark.slow
def test_the_run_half_reports_a_missing_gpu_as_a_failure(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is here")
    script = os.path.join(REPO, "scripts", "gpu", "gpu_check.py")
    proc = subprocess.run([sys.executable, script, "run", "--out", str(tmp_path)], capture_output=True, text=True,
                          cwd=REPO)  # fmt: skip
    assert proc.returncode == 1 and proc.stdout.startswith("CHECK cuda FAIL none")


@pytest.mark.slow
def test_the_run_half_goes_through_every_part_in_smoke_mode_on_the_cpu(shared_data, tmp_path):
    """Every part the GPU run calls (tests, findings runs, both benchmarks) runs and reports a value: on a CPU
    the values cannot meet GPU targets, so this checks the plumbing, not the numbers."""
    script = os.path.join(REPO, "scripts", "gpu", "gpu_check.py")
    pack, out = tmp_path / "pack", tmp_path / "out"
    packing = [sys.executable, script, "pack", "--pack", str(pack), "--shared", os.path.dirname(shared_data),
               "--corpus-lines", "200", "--no-reference", "--no-wheels"]  # fmt: skip
    subprocess.run(packing, check=True, capture_output=True)
    env = {**os.environ, "SIMCSE_DATA_DIR": str(pack / "data"), "TQDM_DISABLE": "1"}
    proc = subprocess.run([sys.executable, script, "run", "--pack", str(pack), "--out", str(out), "--smoke",
                           "--steps", "2", "--bench-timeout", "600"], capture_output=True, text=True, env=env,
                          cwd=REPO, timeout=1500)  # fmt: skip
    checks = {line.split()[1]: line.split(None, 3)[2:] for line in proc.stdout.splitlines() if line.startswith("CHECK")}
    for name in ("cuda", "findings_bf16", "train_step_vs_st_bf16", "train_step_vs_bare_bf16", "encode_vs_st_bf16"):
        assert name in checks, (name, proc.stdout[-3000:], proc.stderr[-3000:])
    assert checks["findings_bf16"][1].startswith("stsb_dev ")  # the run trained and was scored
    for name in ("train_step_vs_st_bf16", "train_step_vs_bare_bf16", "encode_vs_st_bf16"):
        float(checks[name][1].split()[0])  # a measured ratio, not None
    assert (out / "gpu_check.txt").read_text().count("CHECK ") == len(checks)
    # what the device returns: at most 8 files, 2 folders down, 64 MiB in all (run folders stay in --work)
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) <= gpu_check().MAX_OUT_FILES and sum(p.stat().st_size for p in files) < 16 * 2**20, files
    assert all(len(p.relative_to(out).parts) <= 3 for p in files)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["checks"] == (out / "gpu_check.txt").read_text().splitlines()
    assert "transformers" in summary["versions"]


def test_the_findings_band_comes_from_several_cpu_seeds():
    module = gpu_check()
    low, high = module.reference_band([40.0, 42.0, 41.0], floor=1.0)
    assert (low, high) == pytest.approx((38.0, 44.0))  # stdev 1.0: the range widened by 2 points each side
    low, high = module.reference_band([40.0, 40.2], floor=1.0)
    assert (low, high) == pytest.approx((39.0, 41.2))  # a narrow spread: at least the floor
