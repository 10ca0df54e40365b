"""Issue 24's napari journey in 3D: MR onto ultrasound from the NIfTI files, as a user does.

Open the four NIfTI files of a real prostate case through the plugin's reader (voxel
size and origin from the headers), dock Register, align the centres, optimise with
DeepSim on the built-in gland extractor (``deepsim-seg``, ``prostate-mr-us-3d``), look
at the result in the 3D view, move a landmark and export the field to ITK. Each step
depends on the one before, so a broken hand-off fails here.
"""

from pathlib import Path

import nibabel
import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_deepsim._widgets.register.widget import RegisterWidget

pytestmark = pytest.mark.gui

CASE = Path(__file__).resolve().parents[3] / "shared" / "data" / "prostate_mr_us_3d" / "test"
needs_data = pytest.mark.skipif(not CASE.is_dir(), reason="../shared/data is absent")
NAME = "case000025"


def _centroid_world(layer, value):
    """World position (mm) of the centroid of one label value."""
    index = np.argwhere(np.asarray(layer.data) == value).mean(axis=0)
    return index * np.asarray(layer.scale) + np.asarray(layer.translate)


def _dice(a, b):
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@needs_data
def test_open_mr_and_us_align_register_view_in_3d_move_a_landmark_and_export(
    make_napari_viewer, qtbot, errors, tmp_path
):
    viewer = make_napari_viewer()
    for folder in ("fixed_images", "fixed_labels", "moving_images", "moving_labels"):
        layers = viewer.open(CASE / folder / f"{NAME}.nii.gz", plugin="napari-deepsim")
        assert len(layers) == 1
    us, us_labels = viewer.layers[f"fixed_images/{NAME}"], viewer.layers[f"fixed_labels/{NAME}"]
    mr, mr_labels = viewer.layers[f"moving_images/{NAME}"], viewer.layers[f"moving_labels/{NAME}"]
    assert isinstance(us, Image) and isinstance(mr_labels, Labels)
    assert us.data.shape == (44, 59, 41) and mr.data.shape == (64, 64, 60)
    np.testing.assert_allclose(mr.scale, (0.4, 0.4, 0.4))  # mm, from the header
    np.testing.assert_allclose(us.translate, (0.4, 0.4, 0.4))
    assert set(np.unique(mr_labels.data)) == {0, 1, 2, 3}  # gland and two landmarks

    register = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")[1]
    assert isinstance(register, RegisterWidget)
    register.fixed.value, register.moving.value = us, mr
    register.fixed_labels.value, register.moving_labels.value = us_labels, mr_labels
    assert not register.pair.centre.native.isHidden()

    # the headers' origins are a placeholder: align the centres, the MR's labels move along
    register.pair.centre.changed.emit(True)
    shift = np.asarray(mr.translate) - 0.4
    np.testing.assert_allclose(
        shift, [-4.0, -1.0, -3.8], atol=1e-6
    )  # (44-64, 59-64, 41-60) / 2 voxels
    np.testing.assert_allclose(mr_labels.translate, mr.translate)

    # optimise with DeepSim on the built-in gland extractor; the gland overlaps better
    register.method.value = "optimise"
    register.optimise.metric.value = "deepsim-seg"
    register.optimise.extractor.value = "prostate-mr-us-3d"  # offered as built-in
    register.register()
    qtbot.waitUntil(lambda: not register.running, timeout=240000)
    qtbot.waitUntil(lambda: f"{mr.name} warped" in viewer.layers, timeout=10000)
    assert errors == []
    warped = viewer.layers[f"{mr.name} warped"]
    warped_labels = viewer.layers[f"{mr_labels.name} warped"]
    assert warped.data.shape == us.data.shape
    np.testing.assert_allclose(warped.scale, us.scale)
    np.testing.assert_allclose(warped.translate, us.translate)
    gland = _dice(np.asarray(warped_labels.data) == 1, np.asarray(us_labels.data) == 1)
    print(register.results.text())
    # identity after centring: 0.395; the command line's row with this extractor: 0.775
    assert gland > 0.6

    # the 3D view shows the warped volume, the grid and the Jacobian on the fixed grid
    viewer.dims.ndisplay = 3
    viewer.layers[f"{mr.name} Jacobian"].visible = True
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.shape[-1] == 4 and shot[..., :3].std() > 5  # something drawn, not blank
    viewer.dims.ndisplay = 2

    # a landmark clicked on the MR lands nearer the same landmark of the US
    landmark = _centroid_world(mr_labels, 2)
    moved = register.apply_field(viewer.add_points(landmark[None], name="landmark"))
    target = _centroid_world(us_labels, 2)
    assert moved is not None
    assert np.linalg.norm(moved.data[0] - target) < np.linalg.norm(landmark - target)

    # the field exported for ITK lies in the files' physical space, the centring included:
    # ITK warps the original MR file onto the original US file as the plugin did
    path = register.save_field(tmp_path / "mr_to_us.nii.gz")
    exported = nibabel.load(path)
    np.testing.assert_allclose(exported.affine, nibabel.load(us.metadata["source_file"]).affine)
    by_itk = _itk_warp(path, us.metadata["source_file"], mr.metadata["source_file"])
    inner = (slice(6, -6),) * 3
    assert np.corrcoef(by_itk[inner].ravel(), warped.data[inner].ravel())[0, 1] > 0.97
    assert errors == []


def _itk_warp(field_path, fixed_path, moving_path):
    """Resample the moving file onto the fixed file with ITK alone, through the field."""
    itk = pytest.importorskip("itk")
    field = itk.imread(str(field_path), itk.Vector[itk.F, 3])
    double = itk.image_from_array(itk.array_from_image(field).astype(np.float64), is_vector=True)
    double.CopyInformation(field)
    transform = itk.DisplacementFieldTransform[itk.D, 3].New()
    transform.SetDisplacementField(double)
    fixed = itk.imread(str(fixed_path), itk.F)
    moving = itk.imread(str(moving_path), itk.F)
    warped = itk.resample_image_filter(
        moving, transform=transform, use_reference_image=True, reference_image=fixed
    )
    return np.transpose(itk.array_from_image(warped))  # ITK's (z, y, x) to the file's (x, y, z)
