"""The distribution: a distinct name, a wheel and sdist that build and pass ``twine check``, and a clear
warning when the 2021 reference package ``simcse`` shares the import name in one environment."""

from __future__ import annotations

import email
import importlib.metadata
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from simcse.install_check import DISTRIBUTION, reference_conflict
from tests.helpers.paths import REPO


def _fake_dist(tmp_path: Path, name: str, version: str, files: list[str]) -> importlib.metadata.Distribution:
    """An installed distribution as pip leaves it: ``NAME-VERSION.dist-info`` with METADATA and RECORD."""
    info = tmp_path / f"{name}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "RECORD").write_text("".join(f"{f},,\n" for f in [*files, f"{info.name}/RECORD"]))
    return importlib.metadata.PathDistribution(info)


REFERENCE_FILES = ["simcse/__init__.py", "simcse/tool.py", "simcse/models.py", "simcse/trainers.py"]


def test_the_reference_package_is_detected_by_its_metadata(tmp_path: Path) -> None:
    dist = _fake_dist(tmp_path, "simcse", "0.4", REFERENCE_FILES)
    ours = tmp_path / "ours"
    ours.mkdir()
    message = reference_conflict(lambda name: dist if name == "simcse" else None, package_dir=str(ours))
    assert message is not None and "\n" not in message
    assert "simcse 0.4" in message and "pip uninstall -y simcse simcse-toolkit && pip install simcse-toolkit" in message


def test_the_reference_files_in_our_folder_are_detected(tmp_path: Path) -> None:
    (tmp_path / "tool.py").write_text("class SimCSE: ...\n")  # the reference installed over or under ours
    message = reference_conflict(lambda name: None, package_dir=str(tmp_path))
    assert message is not None and "simcse/tool.py" in message


def test_no_warning_for_ourselves_or_an_old_editable_install(tmp_path: Path) -> None:
    # an editable install of this project made before the rename is named simcse but owns no tool.py
    old = _fake_dist(tmp_path, "simcse", "0.1.0", ["__editable__.simcse-0.1.0.pth"])
    assert reference_conflict(lambda name: old if name == "simcse" else None, package_dir=str(tmp_path)) is None
    assert reference_conflict() is None  # this environment


@pytest.mark.slow
def test_import_warns_once_with_the_reference_installed(tmp_path: Path) -> None:
    # a copy of the package with the reference's tool.py beside it, imported in a fresh interpreter
    shutil.copytree(Path(REPO) / "simcse", tmp_path / "simcse", ignore=shutil.ignore_patterns("__pycache__"))
    (tmp_path / "simcse" / "tool.py").write_text("class SimCSE: ...\n")
    code = "import warnings; warnings.simplefilter('always'); import simcse"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "reference SimCSE package" in line]
    assert len(warned) == 1 and "UserWarning" in warned[0]


@pytest.mark.slow
def test_wheel_and_sdist_build_and_pass_twine_check(tmp_path: Path) -> None:
    src = tmp_path / "src"
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for rel in tracked.split():  # a clean tree: only committed files, nothing built or cached
        if (Path(REPO) / rel).is_file():
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(REPO) / rel, src / rel)
    out = tmp_path / "dist"
    build = [sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(src)]
    done = subprocess.run(build, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    wheel, sdist = next(out.glob("*.whl")), next(out.glob("*.tar.gz"))
    assert wheel.name.startswith("simcse_toolkit-0.1.0-py3") and sdist.name == "simcse_toolkit-0.1.0.tar.gz"
    check = subprocess.run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)],
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert check.returncode == 0 and check.stdout.count("PASSED") == 2, check.stdout + check.stderr
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        meta = email.message_from_bytes(zf.read("simcse_toolkit-0.1.0.dist-info/METADATA"))
        entry = zf.read("simcse_toolkit-0.1.0.dist-info/entry_points.txt").decode()
    assert {"simcse/__init__.py", "simcse/py.typed", "simcse/encoder/onnx.py", "simcse/cli/export.py"} <= names
    assert not any(n.startswith(("tests/", "scripts/", "simcse/tool.py")) for n in names)
    assert meta["Name"] == DISTRIBUTION and meta["Description-Content-Type"] == "text/markdown"
    assert {"onnx", "mteb", "dev"} <= set(meta.get_all("Provides-Extra"))
    assert "simcse = simcse.cli:main" in entry
    with tarfile.open(sdist) as tf:
        assert "simcse_toolkit-0.1.0/pyproject.toml" in tf.getnames()


def test_the_lowest_versions_ci_installs_are_pyprojects_lower_bounds() -> None:
    """A version range is a promise: .ci/lowest.txt (installed by scripts/test_lowest.sh in CI) must pin each
    dependency at exactly the lower bound pyproject.toml declares, so the lowest declared versions are tested."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("lowest_versions", Path(REPO) / "scripts" / "lowest_versions.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    declared = module.lowest()
    pinned = {}
    for line in (Path(REPO) / ".ci" / "lowest.txt").read_text().splitlines():
        if "==" in line and not line.lstrip().startswith("#"):
            name, version = line.split("==")
            pinned[name.strip().lower().replace("_", "-")] = version.strip()
    assert {"torch", "transformers", "accelerate", "sentence-transformers"} <= set(declared)
    off = {name: (low, pinned.get(name)) for name, low in declared.items() if pinned.get(name) != low}
    # a bound written short (1.2) is the same release as its pin (1.2.0)
    off = {n: v for n, v in off.items() if v[1] is None or v[1].split(".")[: len(v[0].split("."))] != v[0].split(".")
           or any(x != "0" for x in v[1].split(".")[len(v[0].split(".")) :])}  # fmt: skip
    assert off == {}, f"pyproject lower bound vs .ci/lowest.txt: {off}"
