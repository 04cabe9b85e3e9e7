#!/usr/bin/env bash
# Set up ./.venv if needed, then run the whole test suite offline.
# Data: $SIMCSE_DATA_DIR, else ../shared/data (the folder holding senteval/, corpus/, nli/).
# Test processes: one per core (at most 8; SIMCSE_TEST_WORKERS=N to choose, 0 for none), handing out tests
# as they finish (pytest-xdist, work stealing). Most tests wait on subprocesses starting up (imports), so one
# process leaves a core idle. Each runs torch on one thread (OMP_NUM_THREADS=1, the subprocesses too): two
# processes with two threads each oversubscribe two cores and slowed in-process training tests 3-5x.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# The installs skip compiling (scripts/setup.sh): the first import writes each module's bytecode, which every
# later process reads. With PYTHONDONTWRITEBYTECODE set, every test subprocess would compile torch and
# transformers again (about 12 s of CPU each).
unset PYTHONDONTWRITEBYTECODE
export SIMCSE_DATA_DIR=${SIMCSE_DATA_DIR:-../shared/data}
cores=$(nproc)
workers=${SIMCSE_TEST_WORKERS:-$((cores < 8 ? cores : 8))}
if [ "$workers" -gt 1 ]; then
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
fi
exec .venv/bin/python -m pytest -q -n "$workers" --dist worksteal "$@"
