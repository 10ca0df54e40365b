"""The ``deepsim`` console script."""

import subprocess
import sys
from pathlib import Path

import pytest

from src_training.cli import main
from src_training.engine.demo import run_demo

DEEPSIM = str(Path(sys.executable).with_name("deepsim"))


def test_metrics_lists_every_registered_metric():
    out = subprocess.run([DEEPSIM, "metrics"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == ["mse", "ncc", "ncc-sup", "nmi", "mind", "vgg", "deepsim", "deepsim-ae"]


def test_user_error_exits_2_without_traceback():
    proc = subprocess.run(
        [DEEPSIM, "demo", "--metric", "nope", "--steps", "1"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert "unknown metric 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="needs no extra files"):
        main(["--debug", "demo", "--metric", "deepsim", "--steps", "1"])


def test_unknown_device_is_a_usage_error(capsys):
    assert main(["demo", "--device", "tpu", "--steps", "1"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


@pytest.mark.slow
def test_demo_models_beat_the_identity_on_held_out_pairs():
    lines = []
    results = run_demo(steps=150, device="cpu", echo=lines.append)
    assert list(results) == ["identity", "ncc", "deepsim"]
    # identity Dice is 0.895; 150 steps of either model already move it up by > 0.01
    for name in ("ncc", "deepsim"):
        assert results[name]["dice"] > results["identity"]["dice"] + 0.01, (name, results)
        assert results[name]["folding_percent"] < 1.0
    assert any("held-out pairs" in line for line in lines)
