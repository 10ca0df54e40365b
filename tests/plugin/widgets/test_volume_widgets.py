"""NIfTI volumes in napari: the reader, Align centres and the smoothness of an optimisation."""

import nibabel
import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_deepsim._jobs.optimise import optimisation
from napari_deepsim._volumes import get_volume_reader
from src_training.optimisation.config import REFINE_LAM_SCALE

pytestmark = pytest.mark.gui


def _nifti(path, array, spacing, origin):
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = origin
    nibabel.save(nibabel.Nifti1Image(array, affine), path)
    return str(path)


def test_the_reader_places_volumes_in_mm_and_opens_label_files_as_labels(
    make_napari_viewer, tmp_path
):
    image = _nifti(tmp_path / "mr.nii.gz", np.ones((4, 5, 6), np.float32), (0.5, 1, 2), (1, 2, 3))
    masks = np.zeros((4, 5, 6, 2), np.float32)
    masks[1, 1, 1, 1] = 1
    labels = _nifti(tmp_path / "mr_labels.nii.gz", masks, (0.5, 1, 2), (1, 2, 3))
    assert get_volume_reader([image, labels]) is not None
    assert get_volume_reader([image, str(tmp_path / "field.npz")]) is None
    viewer = make_napari_viewer()
    viewer.open([image, labels], plugin="napari-deepsim", stack=False)
    mr, mr_labels = (
        viewer.layers[f"{tmp_path.name}/mr"],
        viewer.layers[f"{tmp_path.name}/mr_labels"],
    )
    assert isinstance(mr, Image) and isinstance(mr_labels, Labels)
    np.testing.assert_allclose(mr.scale, (0.5, 1, 2))
    np.testing.assert_allclose(mr_labels.translate, (1, 2, 3))
    assert mr_labels.data[1, 1, 1] == 2  # the second mask is class 2


def test_align_centres_moves_the_moving_layer_and_its_grid_only(make_napari_viewer, qtbot):
    viewer = make_napari_viewer()
    fixed = viewer.add_image(np.zeros((10, 20)), name="fixed", scale=(1, 1), translate=(5, 5))
    moving = viewer.add_image(np.zeros((4, 6)), name="moving", scale=(2, 2))
    labels = viewer.add_labels(np.zeros((4, 6), np.uint8), name="moving labels", scale=(2, 2))
    other = viewer.add_labels(np.zeros((10, 20), np.uint8), name="fixed labels")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.fixed.value, widget.moving.value = fixed, moving
    widget.pair.centre.changed.emit(True)
    # centres: fixed 5 + (10-1)/2 = 9.5, 5 + (20-1)/2 = 14.5; moving (4-1), (6-1) = 3, 5
    np.testing.assert_allclose(moving.translate, (6.5, 9.5))
    np.testing.assert_allclose(labels.translate, (6.5, 9.5))
    np.testing.assert_allclose(other.translate, (0, 0))
    np.testing.assert_allclose(fixed.translate, (5, 5))
    widget.pair.centre.changed.emit(True)  # already centred: nothing moves
    np.testing.assert_allclose(moving.translate, (6.5, 9.5))


def test_the_smoothness_control_scales_the_metrics_regulariser_weight(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.method.value = "optimise"
    assert not widget.optimise.stiffness.native.isHidden() and widget.optimise.stiffness.value == 1
    widget.optimise.stiffness.value = 20.0
    spec = widget.optimise.spec()
    assert spec.stiffness == 20.0
    assert optimisation(spec, 2).config.lam_scale == pytest.approx(20.0)
    refine = optimisation(widget.optimise.spec(refine=True), 2).config
    assert refine.lam_scale == pytest.approx(20.0 * REFINE_LAM_SCALE)
