"""The built-in 3D gland extractor: a feature extractor alone, for MR → ultrasound.

``prostate-mr-us-3d`` has no registration model; it drives ``deepsim-seg``
optimisation. These tests check that every front end treats it as an extractor (and
refuses it as a registration model in one line), and that on a held-out case it moves
the MR's gland onto the ultrasound's.
"""

import re
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from src_training.cli import main
from src_training.data.datasets import load_dataset, parse_frames
from src_training.engine.metrics import load_extractor
from src_training.engine.registration import load_registration_model
from src_training.models import builtin_models
from src_training.networks.models import FeatureExtractor

NAME = "prostate-mr-us-3d"
DATA = Path(__file__).resolve().parents[4] / "shared" / "data" / "prostate_mr_us_3d" / "test"
DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason="../shared/data is absent")


def test_it_loads_as_a_3d_gland_extractor_for_deepsim_seg():
    model = builtin_models()[NAME]
    assert model.metric == "deepsim-seg" and list(model.files) == ["features"]
    assert "deepsim-seg" in model.description() and "3D" in model.description()
    extractor = load_extractor(NAME, "deepsim-seg", ndim=3, channels=1)
    assert isinstance(extractor, FeatureExtractor) and extractor.kind == "segmentation"
    assert model.heldout["model"]["dice"] > model.heldout["identity"]["dice"]


def test_deepsim_info_shows_its_card(capsys):
    assert main(["info", NAME]) == 0
    card = capsys.readouterr().out
    for words in ("Apache-2.0", "DeepReg", "prostate_mr_us_3d/test", "--metric deepsim-seg:"):
        assert words in card


def test_it_is_refused_as_a_registration_model_naming_how_to_use_it(tmp_path, capsys):
    with pytest.raises(ValueError, match="not a registration model"):
        load_registration_model(NAME)
    args = ["register", "--model", NAME, "a.nii.gz", "b.nii.gz", "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--optimise --metric deepsim-seg:{NAME}" in err
    assert not (tmp_path / "o").exists()


def _gland(path: Path) -> np.ndarray:
    data = np.asarray(nib.load(path).dataobj)
    return (data[..., 0] if data.ndim == 4 else data == 1) > 0.5


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


@needs_data
@pytest.mark.slow
def test_on_a_held_out_case_the_gland_moves_onto_the_ultrasound_gland(tmp_path):
    case = "case000025.nii.gz"
    out = tmp_path / "out"
    done = subprocess.run(
        [DEEPSIM, "register", DATA / "fixed_images" / case, DATA / "moving_images" / case,
         "--optimise", "--metric", f"deepsim-seg:{NAME}", "--labels",
         DATA / "moving_labels" / case, "--device", "cpu", "--out", out],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.search(r"iterations of deepsim-seg", done.stdout)
    fixed = _gland(DATA / "fixed_labels" / case)
    warped = np.asarray(nib.load(out / f"warped_{case.split('.')[0]}.nii.gz").dataobj) == 1
    # the centred start, as the command placed the MR: the loader's placement of the case
    data = load_dataset(DATA, frames=parse_frames("0:1"))
    identity = _dice(data.labels[0] == 1, data.labels[1] == 1)
    assert identity == pytest.approx(0.395, abs=0.01)  # deepsim evaluate's identity row
    assert _dice(warped, fixed) > identity + 0.2  # measured 0.750 (evaluate: 0.775)
