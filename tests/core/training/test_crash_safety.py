"""Training survives crashes: a failed checkpoint write and a SIGKILL lose nothing saved."""

from __future__ import annotations

import csv
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from src_training.cli import main
from src_training.engine.demo import sample_dataset
from src_training.networks.modelio import load_model

pytestmark = pytest.mark.usefixtures("single_thread")
TRAIN = ["--metric", "mse", "--channels", "4,8", "--crop", "32", "--batch-size", "2"]
TRAIN += ["--device", "cpu", "--seed", "5", "--lr", "1e-3"]


def _cells(path: Path) -> str:
    data = sample_dataset().subset(range(5))
    np.savez(path, images=data.images[:, 0], labels=data.labels)
    return str(path)


def _steps_logged(log: Path) -> list[int]:
    if not log.is_file():
        return []
    with open(log, newline="") as handle:
        return [int(row["step"]) for row in csv.DictReader(handle) if row["loss"]]


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(
    tmp_path, monkeypatch, capsys
):
    data = _cells(tmp_path / "cells.npz")
    out = tmp_path / "r.pt"
    args = ["train", data, *TRAIN, "--steps", "6", "--checkpoint-every", "2", "--out", str(out)]
    real_save = torch.save
    calls = []

    def disk_fills_after_the_first_checkpoint(obj, handle):
        calls.append(handle)
        if len(calls) <= 2:  # step 2 writes r.last.pt and r.pt
            real_save(obj, handle)
            return
        handle.write(b"half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_fills_after_the_first_checkpoint)

    assert main(args) == 2
    err = capsys.readouterr().err  # the progress lines, then the error
    error = err.splitlines()[-1]
    assert error.startswith("deepsim: error: could not save the checkpoint of step 4")
    assert "(No space left on device)" in error and "--resume from the intact r.last.pt" in error
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.npz", "r.csv", "r.last.pt", "r.pt"]
    kept = load_model(out.with_name("r.last.pt"))
    assert kept.training_state["step"] == 2
    assert all(torch.isfinite(p).all() for p in kept.network.parameters())
    assert load_model(out).metadata["steps_trained"] == 2

    monkeypatch.undo()  # space freed: the run continues from step 2
    assert main([*args, "--resume"]) == 0
    assert load_model(out).metadata["steps_trained"] == 6
    assert _steps_logged(out.with_suffix(".csv")) == [1, 2, 3, 4, 5, 6]


def _deepsim(*args: str) -> list[str]:
    return [sys.executable, "-m", "src_training.cli", *args]


@pytest.mark.slow
def test_a_run_killed_at_a_random_step_resumes_to_the_uninterrupted_weights(tmp_path):
    data = _cells(tmp_path / "cells.npz")
    steps, every = 150, 3
    common = ["train", data, *TRAIN, "--steps", str(steps), "--checkpoint-every", str(every)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = {"env": env, "capture_output": True, "text": True, "timeout": 120}

    full = subprocess.run(_deepsim(*common, "--out", str(tmp_path / "full.pt")), **run)
    assert full.returncode == 0, full.stderr

    out = tmp_path / "killed.pt"
    log = out.with_suffix(".csv")
    kill_after = random.randint(every + 1, 30)
    proc = subprocess.Popen(
        _deepsim(*common, "--out", str(out)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline:
        if len(_steps_logged(log)) >= kill_after:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the run ended before step {kill_after}"
    checkpoint = load_model(out.with_name("killed.last.pt")).training_state["step"]
    reached = max(_steps_logged(log))
    assert every <= checkpoint <= reached < steps, (kill_after, checkpoint, reached)

    resumed = subprocess.run(_deepsim(*common, "--resume", "--out", str(out)), **run)
    assert resumed.returncode == 0, resumed.stderr

    a, b = load_model(tmp_path / "full.pt"), load_model(out)
    assert b.metadata["steps_trained"] == steps
    for (name, x), y in zip(
        a.network.state_dict().items(), b.network.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-6, msg=f"{name} (killed {reached})")
    assert _steps_logged(log) == list(range(1, steps + 1))
