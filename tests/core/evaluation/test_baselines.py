"""The elastix B-spline baseline: labels, the axis and sign of its field, quiet, optional."""

import sys

import numpy as np
import pytest
import torch
from scipy import ndimage

from src_training.evaluation import baselines
from src_training.evaluation.scoring import identity_method, score_pairs
from src_training.spatial.transforms import warp


def _disc_pair():
    """A smooth disc (fixed) and the same disc 2 pixels to the right (moving)."""
    rows, cols = np.mgrid[:64, :64]

    def disc(col):
        inside = (rows - 32) ** 2 + (cols - col) ** 2 < 12**2
        return ndimage.gaussian_filter(inside.astype(np.float32), 1.5)

    images = np.stack([disc(32), disc(34)])[:, None]
    return images, (images[:, 0] > 0.5).astype(np.int64)


@pytest.mark.slow
def test_elastix_aligns_a_shifted_disc_in_this_projects_convention(capfd, tmp_path, monkeypatch):
    pytest.importorskip("itk", reason="itk-elastix is not installed (extra: baselines)")
    monkeypatch.chdir(tmp_path)
    images, labels = _disc_pair()
    elastix = baselines.ElastixBSpline()
    scored = score_pairs(images, labels, [(1, 0)], elastix, [0, 1], keep=(1, 0))
    identity = score_pairs(images, labels, [(1, 0)], identity_method, [0, 1]).rows[0]
    row = scored.rows[0]
    assert row["dice"] > identity["dice"] + 0.02
    assert row["folding_percent"] == 0.0 and row["seconds"] > 0
    disp = scored.kept.disp
    assert disp.shape == (1, 2, 64, 64) and disp.dtype == torch.float32
    # fixed(x) = moving(x + 2 columns): the field points +2 along axis 1 inside the disc
    centre = disp[0, :, 26:38, 26:38].mean(dim=(1, 2))
    assert abs(centre[0]) < 0.5 and 1.5 < centre[1] < 2.5
    moving, fixed = torch.from_numpy(images[1:]), torch.from_numpy(images[:1])
    before = (moving - fixed).abs().mean()
    assert (warp(moving, disp) - fixed).abs().mean() < 0.8 * before
    assert (warp(moving, -disp) - fixed).abs().mean() > before  # the opposite sign is worse
    # labels were resampled by transformix: integer values of the moving labels only
    assert set(np.unique(scored.kept.warped_labels)) <= {0, 1}
    assert scored.kept.warped_labels.dtype == labels.dtype
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # LogToConsole off
    assert list(tmp_path.iterdir()) == []  # no deformationField.nii left in the cwd
    assert baselines.elastix_version().count(".") >= 1


def test_a_missing_itk_elastix_is_one_sentence(monkeypatch):
    monkeypatch.setitem(sys.modules, "itk", None)
    with pytest.raises(ValueError) as raised:
        baselines.ElastixBSpline()
    assert str(raised.value) == (
        "itk-elastix is not installed; pip install 'napari-deepsim[baselines]'"
    )


@pytest.mark.slow
def test_elastix_mi_aligns_a_disc_of_inverted_contrast(tmp_path, monkeypatch):
    pytest.importorskip("itk", reason="itk-elastix is not installed (extra: baselines)")
    monkeypatch.chdir(tmp_path)
    images, labels = _disc_pair()
    images[1] = 1.0 - images[1]  # the moving disc in another "modality": dark on bright
    elastix = baselines.ElastixBSpline(baselines.MULTIMODAL_STAGES)
    maps = [elastix.parameters.GetParameterMap(i) for i in range(2)]
    assert [m["Transform"][0] for m in maps] == ["AffineTransform", "BSplineTransform"]
    assert all(m["Metric"][0] == baselines.MUTUAL_INFORMATION for m in maps)
    scored = score_pairs(images, labels, [(1, 0)], elastix, [0, 1], keep=(1, 0))
    identity = score_pairs(images, labels, [(1, 0)], identity_method, [0, 1]).rows[0]
    assert scored.rows[0]["dice"] > identity["dice"] + 0.02
    centre = scored.kept.disp[0, :, 26:38, 26:38].mean(dim=(1, 2))
    assert abs(centre[0]) < 0.5 and 1.5 < centre[1] < 2.5


@pytest.mark.slow
def test_an_elastix_failure_is_a_failed_pair_named_with_elastixs_reason(tmp_path, monkeypatch):
    pytest.importorskip("itk", reason="itk-elastix is not installed (extra: baselines)")
    monkeypatch.chdir(tmp_path)
    # 3 columns: too few for the Gaussian pyramid of elastix's default map
    images = np.random.default_rng(0).random((2, 1, 16, 3)).astype(np.float32)
    labels = (images[:, 0] > 0.5).astype(np.int64)
    rows = score_pairs(images, labels, [(1, 0)], baselines.ElastixBSpline(), [0, 1]).rows
    assert rows[0]["failed"].startswith("The number of pixels along direction 0 is less than 4")
    assert list(tmp_path.iterdir()) == []  # the log went into a removed scratch folder
