"""Where the evaluation and training data live.

The data directory is ``--data-dir``, else ``$SIMCSE_DATA_DIR``, else ``./data``. It holds
``senteval/`` (SentEval's downloaded layout: ``STS/``, ``SICK/``), ``corpus/`` and ``nli/``, as
``scripts/download_data.sh`` creates it. A SentEval folder itself (one holding ``STS/``) also works
for evaluation.
"""

from __future__ import annotations

import os

from simcse.io import StrPath, optional_path

ENV_VAR = "SIMCSE_DATA_DIR"
DOWNLOAD_HINT = "download the data with `bash scripts/download_data.sh data` and pass --data-dir data"


def resolve_data_dir(data_dir: StrPath | None = None) -> str:
    """Return the data directory: the argument, else ``$SIMCSE_DATA_DIR``, else ``./data``."""
    return optional_path(data_dir) or os.environ.get(ENV_VAR) or "data"


def senteval_dir(data_dir: StrPath | None = None) -> str:
    """Return the folder that holds SentEval's ``STS/`` and ``SICK/`` folders."""
    root = resolve_data_dir(data_dir)
    for candidate in (os.path.join(root, "senteval"), root):
        if os.path.isdir(os.path.join(candidate, "STS")):
            return candidate
    raise FileNotFoundError(
        f"no STS data under {root!r} (looked for {os.path.join(root, 'senteval', 'STS')} and "
        f"{os.path.join(root, 'STS')}); {DOWNLOAD_HINT}"
    )


def data_path(relative: StrPath, data_dir: StrPath | None = None) -> str:
    """Resolve a training-data path: absolute or existing paths are kept, others joined to the data dir."""
    relative = os.fspath(relative)
    if os.path.isabs(relative) or os.path.exists(relative):
        return relative
    return os.path.join(resolve_data_dir(data_dir), relative)
