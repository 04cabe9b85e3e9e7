#!/usr/bin/env bash
# The prepared GPU check, in two halves (only the repository travels to the GPU machine, not ../shared):
#
#   bash scripts/gpu/gpu_check.sh pack        # here, beside ../shared: packs what the check needs into .gpu_pack/
#   bash scripts/gpu/gpu_check.sh run         # on the GPU machine, with .gpu_pack carried: runs every check
#
# `run` prints one `CHECK name PASS|FAIL value` line per check (also written to $OUT/gpu_check.txt, or
# .gpu_out/ when OUT is unset) and exits 0 when every check passes. It stays under 8 minutes on one H200.
# .gpu_pack/ (git-ignored) holds: the STS data, a 20k-line slice of the corpus, bert-mini's weights,
# all-MiniLM-L6-v2's config and tokenizer (random weights are built there: enough for speed), and wheels of
# the Python packages the GPU image lacks. See scripts/gpu/gpu_check.py for the checks themselves.
set -euo pipefail
cd "$(dirname "$0")/../.."
PACK=${GPU_PACK:-.gpu_pack}
case "${1:-}" in
  pack)
    PY=${PYTHON:-.venv/bin/python}
    [ -x "$PY" ] || PY=python3
    exec "$PY" scripts/gpu/gpu_check.py pack --pack "$PACK" --shared "${SHARED:-../shared}" "${@:2}"
    ;;
  run)
    unset PYTHONDONTWRITEBYTECODE  # the check's processes read the bytecode the first one writes
    if [ -d "$PACK/wheels" ] && compgen -G "$PACK/wheels/*.whl" >/dev/null; then
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        "$PACK"/wheels/*.whl
      export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false TQDM_DISABLE=1
    export SIMCSE_DATA_DIR="$PWD/$PACK/data"
    exec python3 scripts/gpu/gpu_check.py run --pack "$PACK" --out "${OUT:-.gpu_out}" "${@:2}"
    ;;
  *)
    echo "usage: bash scripts/gpu/gpu_check.sh pack|run [options of scripts/gpu/gpu_check.py]" >&2
    exit 2
    ;;
esac
