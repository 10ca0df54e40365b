"""The ``deepsim`` console script."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image

from src_training.cli import main
from src_training.engine.demo import conclusion
from src_training.networks.modelio import save_model
from src_training.networks.models import RegistrationNet
from src_training.spatial.fieldio import load_field
from src_training.spatial.points import sample_field

DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
ISBI = Path(__file__).resolve().parents[4] / "shared" / "data" / "isbi2012_em" / "images"


def test_metrics_lists_every_registered_metric():
    out = subprocess.run([DEEPSIM, "metrics"], capture_output=True, text=True, check=True).stdout
    names = [line.split()[0] for line in out.splitlines()[1:]]
    assert names == [
        *("mse", "ncc", "ncc-sup", "nmi", "mind", "vgg", "deepsim", "deepsim-seg"),
        *("deepsim-seg+ncc", "deepsim-ae", "deepsim-maps", "deepsim+mse", "deepsim+ncc"),
    ]


def test_user_error_exits_2_without_traceback():
    proc = subprocess.run(
        [DEEPSIM, "train", "data.npz", "--metric", "nope", "--out", "r.pt"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "unknown metric 'nope'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_debug_shows_the_traceback():
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        main(["--debug", "demo", "--steps", "0"])


def test_unknown_device_is_a_usage_error(capsys):
    assert main(["demo", "--device", "tpu", "--steps", "1"]) == 2
    assert "unknown device 'tpu'" in capsys.readouterr().err


def _row(method, noise, dice):
    return {"method": method, "noise": noise, "dice": dice}


def test_the_demo_conclusion_is_computed_from_the_table():
    rows = [
        _row("identity", 0.0, 0.80),
        _row("opt-ncc", 0.0, 0.90),
        _row("opt-deepsim", 0.0, 0.91),
        _row("trained ncc", 0.0, 0.88),
        _row("identity", 0.3, 0.80),
        _row("opt-ncc", 0.3, 0.84),
        _row("opt-deepsim", 0.3, 0.87),
        _row("trained ncc", 0.3, 0.86),
    ]
    assert conclusion(rows) == (
        "At noise 0.3 the best DeepSim-driven method, opt-deepsim (Dice 0.870), leads the "
        "best intensity-only method, trained ncc (0.860), by 0.010; at noise 0 the "
        "difference is +0.010."
    )
    rows[6]["dice"] = 0.83  # now DeepSim trails at the highest noise
    assert "opt-deepsim (Dice 0.830), trails the best intensity-only method, trained ncc" in (
        conclusion(rows)
    )


@pytest.mark.slow
def test_the_demo_prints_its_table_and_conclusion_and_draws_the_figure(tmp_path):
    proc = subprocess.run(
        [DEEPSIM, "demo", "--steps", "10", "--device", "cpu", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    methods = [
        "identity",
        "opt-ncc",
        "opt-mse",
        "opt-deepsim-seg+ncc",
        "phase-contrast-2d",
        "phase-contrast-2d+own",
        "trained ncc",
        "trained deepsim",
    ]
    table = {line.split("  ")[1]: line for line in lines if line.startswith("  ")}
    assert list(table)[1:] == methods  # the header, then one row per method
    identity = table["identity"].split()
    # noise leaves the labels alone: the identity's Dice is the same at every noise level
    assert identity[2] == identity[3] == identity[4]
    assert float(table["opt-ncc"].split()[2]) > float(identity[2]) + 0.01
    assert any(line.startswith("At noise 0.3 the best DeepSim-driven method") for line in lines)
    assert (tmp_path / "overview.png").stat().st_size > 50_000
    assert proc.stderr.count("done: ") == 3 + 3  # three trainings, three noise levels


def _tiny_pair(folder: Path) -> tuple[str, str, str]:
    """A random-weight 2D model and a pair of real EM crops (different sizes)."""
    torch.manual_seed(0)
    model = save_model(folder / "r.pt", RegistrationNet(2, 1, (4, 8)), {})
    section = np.asarray(Image.open(ISBI / "25.png"))
    tifffile.imwrite(folder / "fixed.tif", section[:96, :80])
    tifffile.imwrite(folder / "moving.tif", np.asarray(Image.open(ISBI / "26.png"))[:96, :80])
    return str(model), str(folder / "fixed.tif"), str(folder / "moving.tif")


@pytest.mark.slow
def test_register_moves_points_and_exports_the_field_for_itk(tmp_path):
    model, fixed, moving = _tiny_pair(tmp_path)
    points = tmp_path / "landmarks.csv"
    points.write_text("index,axis-0,axis-1,label\n0,40.5,30.0,cell\n1,10.0,70.25,edge\n")
    out = tmp_path / "out"
    args = [DEEPSIM, "register", "--model", model, fixed, moving, "--out", str(out)]
    args += ["--points", str(points), "--itk-field", "mha", "--device", "cpu"]
    proc = subprocess.run(args, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    field = load_field(out / "displacement.npz")
    assert field.provenance["method"] == model and field.provenance["moving"] == moving
    with open(out / "moved_landmarks.csv", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["index", "axis-0", "axis-1", "label"]
    assert [row[0] for row in rows[1:]] == ["0", "1"] and rows[2][3] == "edge"
    moved = np.array([[float(v) for v in row[1:3]] for row in rows[1:]])
    # each moved landmark q is where the warp samples the moving landmark: q + u(q) = p
    back = moved + sample_field(field.displacement, moved)
    np.testing.assert_allclose(back, [[40.5, 30.0], [10.0, 70.25]], atol=1e-3)
    assert (out / "displacement_itk.mha").read_bytes().startswith(b"ObjectType = Image")

    nifti = tmp_path / "again.nii.gz"
    proc = subprocess.run(
        [DEEPSIM, "export-field", str(out / "displacement.npz"), str(nifti)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0 and "96 x 80 voxels" in proc.stdout, proc.stderr
    import nibabel as nib

    assert nib.load(nifti).shape == (80, 96, 1, 1, 2)  # ITK's x (columns) first, 2 components
    proc = subprocess.run(
        [DEEPSIM, "export-field", str(out / "displacement.npz"), str(nifti)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2 and "pass --overwrite" in proc.stderr
