"""The lowest versions pyproject.toml promises, as pip constraints: ``python scripts/lowest_versions.py > c.txt``.

Every ``>=`` bound of the core dependencies and of the extras that ``dev`` pulls in becomes ``name==version``;
``scripts/test_lowest.sh`` installs the project under these constraints and runs the fast suite, so a version
range in pyproject is a tested promise.
"""

from __future__ import annotations

import os
import re
import sys
import tomllib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_BOUND = re.compile(r"^\s*([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*(?:[^;]*?)>=\s*([0-9][^,;\s]*)")


def lowest(pyproject: str = os.path.join(REPO, "pyproject.toml")) -> dict[str, str]:
    """``{distribution: lowest version}`` over the core dependencies and the extras ``dev`` installs."""
    with open(pyproject, "rb") as f:
        project = tomllib.load(f)["project"]
    extras = project.get("optional-dependencies", {})
    name = project["name"]
    wanted, seen, found = ["dev"], set(), {}
    requirements = list(project.get("dependencies", []))
    while wanted:
        extra = wanted.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for req in extras.get(extra, []):
            own = re.match(rf"^{re.escape(name)}\[([^\]]+)\]", req)
            if own:
                wanted.extend(x.strip() for x in own.group(1).split(","))
            else:
                requirements.append(req)
    for req in requirements:
        match = _BOUND.match(req)
        if match:
            found[match.group(1).lower().replace("_", "-")] = match.group(3)
    return found


if __name__ == "__main__":
    sys.stdout.write("".join(f"{k}=={v}\n" for k, v in sorted(lowest().items())))
