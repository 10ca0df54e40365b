#!/usr/bin/env bash
# Set up .venv (with matplotlib for the figure) and run the main job on the built-in
# default sample: a table on the terminal, demo/overview.png and a computed conclusion.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh figures
.venv/bin/deepsim demo "$@"
