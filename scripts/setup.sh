#!/usr/bin/env bash
# Create (or reuse) the virtual environment .venv with napari-deepsim installed in
# editable mode. Usage: bash scripts/setup.sh [EXTRA]   (EXTRA e.g. "dev")
# torch is pinned to 2.13.0 (the CPU build used in development and CI); install
# another build into .venv yourself for a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
extra=${1:-}
python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
    .venv/bin/python -m pip install --quiet --upgrade pip
fi
.venv/bin/python -m pip install --quiet "torch==2.13.0"
if [ -n "$extra" ]; then
    .venv/bin/python -m pip install --quiet -e ".[$extra]"
else
    .venv/bin/python -m pip install --quiet -e .
fi
