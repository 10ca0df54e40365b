"""Fields of a coarse level warp the finest level: magnitudes scaled with the grids."""

import numpy as np
import pytest

from src_training.data.seriesstore import SeriesLayout, open_series_store
from src_training.engine.fullres import warp_store_at_full_resolution
from src_training.spatial.fieldio import provenance

zarr = pytest.importorskip("zarr")


def _store(path, fields):
    n, ndim, *spatial = fields.shape
    layout = SeriesLayout(n, 1, tuple(spatial), "0", "the stack", "a test")
    grid = {
        "spacing": (1.0,) * ndim,
        "origin": (0.0,) * ndim,
        "axes": "yx",
        "direction": np.eye(ndim).tolist(),
    }
    store = open_series_store(path, layout, grid, provenance("a test", "s", "s"))
    for t in range(n):
        image = np.zeros((1, *spatial), np.float32)
        store.write_frame(
            t,
            image,
            fields[t],
            np.ones(spatial, np.float32),
            {"folding_percent": 0.0, "sdlogj": 0.0},
        )
    return store


def test_a_coarse_translation_moves_the_finest_level_by_the_ratio_of_the_grids(tmp_path):
    fields = np.zeros((2, 2, 16, 16), np.float32)
    fields[1, 1] = 1.0  # frame 1: one coarse voxel along x
    _store(tmp_path / "s.zarr", fields)
    ramp = np.tile(np.arange(64, dtype=np.float32), (64, 1))  # I(y, x) = x
    full = np.stack([ramp, ramp])
    warping = warp_store_at_full_resolution(tmp_path / "s.zarr", full, spacing=(0.5, 0.5))
    progress = list(warping)
    out = np.asarray(zarr.open_group(str(tmp_path / "s.zarr"))["full/0"])[:, 0]
    shift = 63 / 15  # corner voxels of the 16- and 64-voxel grids coincide
    np.testing.assert_allclose(out[0], ramp, atol=1e-4)  # frame 0: zero field
    np.testing.assert_allclose(out[1][:, :50], ramp[:, :50] + shift, atol=1e-3)
    assert out[1][5, 20] - ramp[5, 20] == pytest.approx(shift, abs=1e-3)  # not the y axis
    assert [p.done for p in progress] == [1, 2]


def test_a_stack_of_another_length_is_refused_and_nothing_is_written(tmp_path):
    _store(tmp_path / "s.zarr", np.zeros((2, 2, 16, 16), np.float32))
    with pytest.raises(ValueError, match="holds 2 frames"):
        list(warp_store_at_full_resolution(tmp_path / "s.zarr", np.zeros((3, 64, 64))))
    assert not (tmp_path / "s.zarr" / "full").exists()
    with pytest.raises(ValueError, match="smaller than the registered level"):
        list(warp_store_at_full_resolution(tmp_path / "s.zarr", np.zeros((2, 8, 8))))
