"""The plugin's sample data opens in a real napari viewer."""

import numpy as np
import pytest
from ctc_layout import serve_archive

pytestmark = pytest.mark.gui


def test_open_sample_from_the_manifest(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    assert [layer.name for layer in viewer.layers] == [
        "fixed",
        "moving",
        "fixed labels",
        "moving labels",
    ]
    assert viewer.layers["fixed labels"].data.max() == 2
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    assert viewer.layers["noisy cells"].data.shape == (8, 128, 128)


def test_the_u373_sample_downloads_into_the_cache_once(
    make_napari_viewer, tmp_path, monkeypatch, served
):
    path, seq = serve_archive(tmp_path, monkeypatch, served[0])
    monkeypatch.setenv("DEEPSIM_CACHE", str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "phc_u373")
    assert viewer.layers["U373 01"].data.shape == (5, 32, 32)
    np.testing.assert_array_equal(viewer.layers["U373 01 labels"].data, seq.labels)
    assert (tmp_path / "cache" / "PhC-C2DH-U373.zip").read_bytes() == path.read_bytes()
    path.unlink()  # the second opening must come from the cache
    viewer.open_sample("napari-deepsim", "phc_u373")
    assert len(viewer.layers) == 4
