#!/usr/bin/env bash
# Set up .venv with the dev extra and the system packages of the GUI tests, then lint
# and run the whole test suite (GUI tests on a virtual X server).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/system-deps.sh
bash scripts/setup.sh dev
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/npe2 validate napari-deepsim
xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest -ra "$@"
