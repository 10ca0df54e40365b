#!/usr/bin/env bash
# The package as a user installs it: build the wheel, install it into a fresh virtual
# environment outside the checkout, and check that it lists, verifies and runs its
# built-in models and that napari finds its manifest. scripts/test.sh runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir "$work/source"  # built from a copy: setuptools leaves build/ behind in its source
tar --exclude=./.venv --exclude=./.git -cf - . | tar -xf - -C "$work/source"
.venv/bin/python -m pip wheel --quiet --no-deps --wheel-dir "$work/dist" "$work/source"
"$python" -m venv "$work/venv"
"$work/venv/bin/python" -m pip install --quiet "torch==2.13.0"
"$work/venv/bin/python" -m pip install --quiet "$work"/dist/napari_deepsim-*.whl npe2
cd "$work"  # nothing of the checkout on the path from here on
bin="$work/venv/bin"
"$bin/python" - <<'PY'
import numpy as np
import src_training
from scipy import ndimage

assert "site-packages" in src_training.__file__, src_training.__file__
texture = ndimage.gaussian_filter(np.random.default_rng(0).random((96, 96)), 3)
np.save("fixed.npy", texture.astype(np.float32))
np.save("moving.npy", np.roll(texture, (2, -1), axis=(0, 1)).astype(np.float32))
PY
"$bin/deepsim" models | tee models.txt
grep -q "em-2d" models.txt && grep -q "phase-contrast-2d" models.txt
"$bin/deepsim" info em-2d > info.txt  # checks both files' SHA-256 before the card
"$bin/python" - <<'PY'
import hashlib
from pathlib import Path

import src_training.models

card = Path("info.txt").read_text()
for name in ("em-2d.pt", "em-2d.features.pt"):
    data = (Path(src_training.models.__file__).parent / name).read_bytes()
    assert hashlib.sha256(data).hexdigest() in card, f"{name} differs from its card"
PY
"$bin/deepsim" register --model em-2d fixed.npy moving.npy --out registered --device cpu
test -s registered/displacement.npz
"$bin/npe2" validate napari-deepsim
echo "wheel test: the installed wheel lists, verifies and runs its built-in models"
