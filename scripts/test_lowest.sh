#!/usr/bin/env bash
# The fast suite on the lowest versions pyproject.toml allows (.ci/lowest.txt), in ./.venv-lowest.
# .ci/lowest.txt is `uv pip compile pyproject.toml --extra dev --resolution lowest-direct --python-version 3.11
# --python-platform x86_64-manylinux_2_28 --no-header`; regenerate it when a lower bound changes
# (tests/test_packaging.py checks that it pins exactly pyproject's lower bounds). torch 2.11 comes from PyPI
# (a CUDA build, several GB; it runs on the CPU): these are also the GPU check's image's versions.
# `--install-only` builds the environment and stops (CI runs it beside the main suite: the download and
# unpacking overlap the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
want=$(cat pyproject.toml .ci/lowest.txt | sha1sum | cut -d' ' -f1)
stamp=.venv-lowest/.simcse-installed
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  rm -rf .venv-lowest
  "$PY" -m venv .venv-lowest
  .venv-lowest/bin/python -m pip install -q --no-compile --upgrade pip
  .venv-lowest/bin/python -m pip install -q --no-compile -r .ci/lowest.txt
  .venv-lowest/bin/python -m pip install -q --no-compile --no-deps -e .
  echo "$want" > "$stamp"
fi
if [ "${1:-}" = "--install-only" ]; then
  exit 0
fi
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-../shared/data}
exec .venv-lowest/bin/python -m pytest -q -m "not slow" -p no:cacheprovider "$@"
