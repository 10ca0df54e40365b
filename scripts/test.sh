#!/usr/bin/env bash
# Set up .venv with the dev extra and the system packages of the GUI tests, then lint,
# run the whole test suite (GUI tests on a virtual X server) and the wheel test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/npe2 validate napari-deepsim
xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -ra "$@"
# the whole run (no pytest arguments) also checks the built wheel in a fresh environment
if [ $# -eq 0 ]; then
    bash scripts/test-wheel.sh
fi
