"""The plugin's sample data opens in a real napari viewer."""

import pytest

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
