"""Detect the 2021 reference package ``simcse`` (princeton-nlp, 0.4) installed beside this one.

This toolkit is distributed as ``simcse-toolkit`` and imports as ``simcse``; the reference package is
distributed as ``simcse`` and imports as ``simcse`` too. Installed in one environment, the two write into
the same ``simcse/`` folder: whichever came last owns ``simcse/__init__.py``, and uninstalling either
deletes files of the other. Only the reference ships ``simcse/tool.py`` (its ``SimCSE`` class), which
tells the two apart, in the installed files list and on disk.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable

DISTRIBUTION = "simcse-toolkit"
REFERENCE = "simcse"
REFERENCE_MARKER = "simcse/tool.py"
FIX = f"pip uninstall -y {REFERENCE} {DISTRIBUTION} && pip install {DISTRIBUTION}"


def _lookup(name: str) -> importlib.metadata.Distribution | None:
    try:
        return importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def reference_conflict(
    lookup: Callable[[str], importlib.metadata.Distribution | None] = _lookup, package_dir: str | None = None
) -> str | None:
    """A one-line explanation if the reference ``simcse`` package is installed here, else None.

    Args:
        lookup: Finds an installed distribution by name (``importlib.metadata.distribution``; tests pass a fake).
        package_dir: This package's folder (default: the imported ``simcse``), checked for the reference's files.

    Returns:
        The message, or None when only this toolkit owns ``simcse``.
    """
    found = []
    dist = lookup(REFERENCE)
    if dist is not None and any(str(f).replace(os.sep, "/") == REFERENCE_MARKER for f in dist.files or ()):
        found.append(f"the distribution {REFERENCE} {dist.version}")
    folder = package_dir or os.path.dirname(os.path.abspath(__file__))
    if os.path.isfile(os.path.join(folder, os.path.basename(REFERENCE_MARKER))):
        found.append(f"its {REFERENCE_MARKER} in {folder}")
    if not found:
        return None
    return (
        f"the reference SimCSE package (pip name '{REFERENCE}', 2021) is installed in this environment "
        f"({'; '.join(found)}) and shares the import name 'simcse' with {DISTRIBUTION}: their files are mixed. "
        f"Keep one: {FIX}"
    )
