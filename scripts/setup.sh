#!/usr/bin/env bash
# Create ./.venv and install simcse with its test tools. Safe to rerun: skips work already done.
# torch is pinned and installed first, so nothing pulls a multi-GB CUDA build on CPU machines.
# --no-compile: Python compiles each module the first time it is imported, rather than pip compiling
# every file of every package (tens of thousands, most never imported) at install. That needs Python to be
# allowed to write the bytecode: where PYTHONDONTWRITEBYTECODE is set, unset it for the first runs (as
# scripts/test.sh does), or every process compiles what it imports again.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.simcse-installed
want=$(cat pyproject.toml | sha1sum | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/python -m pip install -q --no-compile --upgrade pip
  .venv/bin/python -m pip install -q --no-compile "torch==2.13.0"
  .venv/bin/python -m pip install -q --no-compile -e ".[dev]"
  echo "$want" > "$stamp"
fi
