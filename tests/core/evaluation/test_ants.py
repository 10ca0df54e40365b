"""The ANTs SyN baseline: its field's axes and sign, accuracy, reproducibility, optional."""

import csv
import os
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from src_training.engine.evaluation import seed_spread
from src_training.evaluation import ants as ants_baseline
from src_training.evaluation.scoring import identity_method, score_pairs
from src_training.spatial.transforms import warp

ISBI = Path(__file__).resolve().parents[4] / "shared" / "data" / "isbi2012_em"
needs_ants = pytest.mark.skipif(
    find_spec("ants") is None, reason="antspyx is not installed (extra: baselines)"
)
pytestmark = pytest.mark.usefixtures("single_thread")


def _blobs(shape, seed=0):
    """A smooth random texture in [0, 1] with features at several places."""
    image = ndimage.gaussian_filter(np.random.default_rng(seed).random(shape), 3.0)
    return ((image - image.min()) / (image.max() - image.min())).astype(np.float32)


def _shifted_pair(shape, shift):
    """Fixed and moving crops of one texture with ``moving(p) = fixed(p - shift)``."""
    margin = 4
    big = _blobs(tuple(n + 2 * margin for n in shape))
    fixed = big[tuple(slice(margin, margin + n) for n in shape)]
    moving = big[
        tuple(slice(margin - s, margin - s + n) for s, n in zip(shift, shape, strict=True))
    ]
    images = np.stack([fixed, moving])[:, None]
    return images, (images[:, 0] > 0.5).astype(np.int64)


def _interior(disp, border):
    """Mean displacement per channel away from the border."""
    inner = (slice(None),) + (slice(border, -border),) * (disp.dim() - 2)
    return disp[0][inner].flatten(1).mean(dim=1)


@needs_ants
@pytest.mark.parametrize(
    ("shape", "shift", "metric"), [((64, 64), (3, -2), "cc"), ((32, 36, 28), (2, -1, 3), "mi")]
)
def test_ants_recovers_a_translation_in_this_projects_convention(shape, shift, metric, tmp_path):
    images, labels = _shifted_pair(shape, shift)
    method = ants_baseline.AntsSyN(metric)
    scored = score_pairs(images, labels, [(1, 0)], method, [0, 1], keep=(1, 0))
    disp = scored.kept.disp
    assert disp.shape == (1, len(shape), *shape) and disp.dtype == torch.float32
    # warped(x) = moving(x + u) = fixed(x + u - shift): u = +shift along each array axis;
    # a swapped axis or an opposite sign is off by at least 2 voxels on one channel
    found = _interior(disp, 6).numpy()
    np.testing.assert_allclose(found, shift, atol=0.5)
    moving, fixed = torch.from_numpy(images[1:]), torch.from_numpy(images[:1])
    assert (warp(moving, disp) - fixed).abs().mean() < 0.5 * (moving - fixed).abs().mean()
    row = scored.rows[0]
    identity = score_pairs(images, labels, [(1, 0)], identity_method, [0, 1]).rows[0]
    assert row["dice"] > identity["dice"] + 0.05
    assert row["folding_percent"] == 0.0 and row["seconds"] > 0
    # labels warped by ANTs' nearest-neighbour interpolation: values of the moving labels
    assert set(np.unique(scored.kept.warped_labels)) <= {0, 1}
    assert scored.kept.warped_labels.dtype == labels.dtype


@needs_ants
@pytest.mark.skipif(not ISBI.is_dir(), reason="../shared/data is not beside the checkout")
def test_ants_recovers_a_smooth_warp_of_a_real_image():
    section = np.asarray(Image.open(ISBI / "images" / "00.png"), dtype=np.float32) / 255
    image = ndimage.zoom(ndimage.gaussian_filter(section, 2.0), 0.25, order=1)[16:112, 16:112]
    rows, cols = np.mgrid[:96, :96] / 95.0
    truth = 2.0 * np.stack([np.sin(np.pi * cols), np.cos(np.pi * rows) * np.sin(np.pi * cols)])
    truth = torch.from_numpy(truth.astype(np.float32))[None]
    moving = torch.from_numpy(np.ascontiguousarray(image))[None, None]
    fixed = warp(moving, truth)  # fixed(x) = moving(x + truth(x))
    images = torch.cat([fixed, moving]).numpy()
    labels = (images[:, 0] > np.median(image)).astype(np.int64)
    scored = score_pairs(images, labels, [(1, 0)], ants_baseline.AntsSyN("cc"), [0, 1], keep=(1, 0))
    error = (scored.kept.disp - truth).norm(dim=1)[0, 12:-12, 12:-12]
    assert float(error.mean()) < 1.0
    assert float(truth.norm(dim=1).mean()) > 1.0  # the identity would not pass


@needs_ants
@pytest.mark.slow
def test_two_runs_of_the_command_give_the_same_ants_rows(tmp_path):
    stack = tmp_path / "stack.npz"
    images = np.stack([_shifted_pair((40, 40), shift)[0][1, 0] for shift in ((0, 0), (2, 1))])
    np.savez(stack, images=images, labels=(images > 0.5).astype(np.uint8))
    env = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [str(Path(sys.executable).with_name("deepsim")), "evaluate", str(stack)]
    command += ["--baseline", "ants", "--ants-metric", "mi", "--seeds", "2", "--device", "cpu"]
    tables = []
    for run in ("a", "b"):
        done = subprocess.run(
            [*command, "--out", str(tmp_path / run)], env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        assert "random seed 1, 1 ITK thread(s)" in done.stdout
        with open(tmp_path / run / "summary.csv") as handle:
            tables.append({row["model"]: row for row in csv.DictReader(handle)})
    first, second = tables
    assert list(first) == ["ants-seed1", "ants-seed2", "ants-seeds"]
    assert first["ants-seeds"]["seeds"] == "2"
    assert "ANTsPy 0.6" in first["ants-seed1"]["description"]
    for name in first:
        for column in ("dice", "folding_percent", "sdlogj"):
            assert float(first[name][column]) == pytest.approx(float(second[name][column]), 1e-6)


def test_the_seed_spread_row_carries_the_seeds_landmark_errors_and_hd95():
    seeded = [
        {
            "model": f"ants-seed{s}",
            "metric": "syn-mi",
            "noise": 0.0,
            "n_pairs": 2,
            "dice": d,
            "dice_1": d,
            "hd95": h,
            "tre": e,
            "tre_2": e,
            "tre_3": n,
            "folding_percent": 0.0,
            "sdlogj": 0.2,
            "seconds_per_pair": 1.0,
        }
        for s, d, h, e, n in ((1, 0.3, 4.0, 5.0, float("nan")), (2, 0.5, 6.0, 3.0, 2.0))
    ]
    spread = seed_spread([{"model": "identity", "dice": 0.4}, *seeded])
    assert spread["dice"] == pytest.approx(0.4)
    assert spread["hd95"] == pytest.approx(5.0)
    assert spread["tre"] == pytest.approx(4.0)
    assert spread["tre_2"] == pytest.approx(4.0)
    assert spread["tre_3"] == pytest.approx(2.0)  # the seeds where it is defined


def test_a_missing_antspy_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "ants", None)
    with pytest.raises(ValueError) as raised:
        ants_baseline.AntsSyN()
    assert str(raised.value) == "antspyx is not installed; pip install 'napari-deepsim[baselines]'"
