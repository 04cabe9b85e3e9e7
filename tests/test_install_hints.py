"""Every install line we show names our distribution (``pyproject.toml``'s name), never ``simcse`` (issue 27).

``pip install simcse`` installs the 2021 reference package (another tool that also imports as ``simcse``),
so a README line, an error message or a model card saying ``pip install 'simcse[llm]'`` sends users to
the wrong package.
"""

from __future__ import annotations

import os
import re

from tests.helpers.paths import REPO

SCANNED = ("README.md", "simcse", "scripts", "training", "eval")
# the README's one sentence that names the other package on purpose, to warn about it
WARNING = "` gives a different tool"


def distribution() -> str:
    with open(os.path.join(REPO, "pyproject.toml"), encoding="utf-8") as f:  # tomllib needs Python 3.11
        return re.search(r'^\[project\]\n(?:.*\n)*?name = "([^"]+)"', f.read(), re.M).group(1)


def wrong_installs(text: str) -> list[str]:
    """The ``pip install`` commands in ``text`` that install ``simcse`` or ``simcse[extra]`` (our import name)."""
    found = []
    for match in re.finditer(r"pip3?\s+install\b([^`\n)#;&]*)", text):  # up to the command's end or a comment
        names = [token.strip("'\"") for token in match.group(1).split()]
        ours = any(re.fullmatch(r"simcse(\[[^\]]*\])?", name) for name in names)
        if ours and not text[match.end() :].startswith(WARNING):
            found.append(match.group(0).strip())
    return found


def scanned_files() -> list[str]:
    files = []
    for entry in SCANNED:
        path = os.path.join(REPO, entry)
        if os.path.isfile(path):
            files.append(path)
        for root, dirs, names in os.walk(path):
            dirs[:] = [d for d in dirs if d != "__pycache__"]
            files += [os.path.join(root, n) for n in names if n.endswith((".py", ".md", ".sh", ".yaml", ".txt"))]
    return sorted(files)


def test_the_scanner_tells_the_names_apart() -> None:
    assert wrong_installs("LoRA through peft (`pip install 'simcse[llm]'`)") == ["pip install 'simcse[llm]'"]
    assert wrong_installs('raise ImportError("needs peft: pip install simcse[llm]") from err') != []
    assert wrong_installs("pip install -U simcse\n") == ["pip install -U simcse"]
    assert wrong_installs("pip install simcse-toolkit  # not 'simcse'") == []
    ok = ["pip install 'simcse-toolkit[llm]'", 'pip install -e ".[dev]"', "pip install simcse-toolkit", "pip install x"]
    assert wrong_installs("\n".join(ok)) == []
    assert wrong_installs(f"(`pip install simcse{WARNING}: the 2021 reference package") == []


def test_distribution_name_is_not_the_import_name() -> None:
    assert distribution() == "simcse-toolkit"


def test_no_install_line_names_the_wrong_distribution() -> None:
    wrong = {}
    for path in scanned_files():
        with open(path, encoding="utf-8") as f:
            found = wrong_installs(f.read())
        if found:
            wrong[os.path.relpath(path, REPO)] = found
    assert len(scanned_files()) > 100 and wrong == {}, f"install {distribution()}, not simcse"


def test_model_card_says_what_to_install(tmp_path) -> None:
    from simcse.config import load_config
    from simcse.install_check import FIX
    from simcse.runs.card import render_model_card

    cfg = load_config(None, {"model_name_or_path": "bert-base-uncased", "output_dir": str(tmp_path / "run")})
    card = render_model_card(cfg, {"stsb_dev": 80.0}, 125)
    assert f"pip install {distribution()}" in card and "from simcse import Encoder" in card
    assert wrong_installs(card) == [] and wrong_installs(FIX) == []
