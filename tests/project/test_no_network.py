"""No network: importing the packages and running the commands opens no connection.

A fresh interpreter blocks every way the standard library connects (``connect``,
``connect_ex``, ``sendto``, ``create_connection``, name lookups) before anything of
ours is imported, then imports every module of both packages and runs a short job of
each command. Each attempt would be recorded and refused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from src_training.networks.modelio import save_model
from src_training.networks.models import RegistrationNet

GUARD = """
import importlib, json, pkgutil, socket, sys

attempts = []

def refuse(*args, **kwargs):
    attempts.append(repr(args[1:3]))
    raise OSError("network access is blocked in this test")

def refuse_lookup(*args, **kwargs):
    attempts.append(repr(args[:2]))
    raise socket.gaierror("name lookups are blocked in this test")

for name in ("connect", "connect_ex", "sendto"):
    setattr(socket.socket, name, refuse)
socket.create_connection = refuse
socket.getaddrinfo = socket.gethostbyname = refuse_lookup

import napari_deepsim, src_training
for package in (napari_deepsim, src_training):
    for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
        importlib.import_module(module.name)
from src_training.cli import main

codes = [main(args) for args in json.loads(sys.argv[1])]
ours = list(attempts)
try:  # the guard itself: a real request must be caught
    import urllib.request
    urllib.request.urlopen("http://192.0.2.1/", timeout=1)
except OSError:
    pass
print("RESULT " + json.dumps({"codes": codes, "attempts": ours, "probe": attempts[len(ours):]}))
"""


@pytest.mark.slow
def test_imports_and_commands_open_no_connection(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.random((4, 32, 32)).astype(np.float32)
    np.savez(tmp_path / "cells.npz", images=images, labels=(images > 0.5).astype(np.uint8))
    np.save(tmp_path / "a.npy", images[0])
    np.save(tmp_path / "b.npy", images[1])
    save_model(tmp_path / "given.pt", RegistrationNet(2, 1, (4, 8)), {})
    tiny = ["--steps", "2", "--channels", "4,8", "--crop", "16", "--batch-size", "2"]
    tiny += ["--device", "cpu"]
    statistics = ["--baseline", "identity", "--reference", "given", "--hd95", "--figures"]
    jobs = [
        ["metrics"],
        ["train-features", "cells.npz", *tiny, "--out", "f.pt"],
        ["train", "cells.npz", "--metric", "deepsim", "--features", "f.pt", *tiny, "--out", "r.pt"],
        ["register", "--model", "r.pt", "a.npy", "b.npy", "--out", "reg", "--device", "cpu"],
        ["evaluate", "cells.npz", "--models", "given.pt", "--out", "eval", "--device", "cpu"],
        ["evaluate", "cells.npz", "--models", "given.pt", "--out", "eval2", *statistics],
        ["info", "r.pt"],
    ]
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": root}
    proc = subprocess.run(
        [sys.executable, "-c", GUARD, json.dumps(jobs)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.splitlines()[-1].removeprefix("RESULT "))
    assert result["codes"] == [0] * len(jobs), proc.stderr[-3000:]
    assert result["attempts"] == []
    assert result["probe"], "the guard missed a real request"
