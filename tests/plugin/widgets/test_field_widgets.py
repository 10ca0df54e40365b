"""Fields that travel, in a real viewer: saved, reopened with napari's reader, applied back,
exported for ITK, and moving Points, Shapes and Tracks drawn on the moving image."""

import numpy as np
import pytest
from napari.layers import Points, Shapes, Tracks
from test_register_widget import (
    SCALE,
    TRANSLATE,
    _applied,
    _pair_widget,
    _registration_model,
    _run,
)

from src_training.spatial.fieldio import load_field
from src_training.spatial.points import sample_field

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return _registration_model(tmp_path_factory.mktemp("models") / "reg2d.pt")


def _registered(make_napari_viewer, qtbot, model):
    viewer, widget = _pair_widget(make_napari_viewer, model)
    widget.show_checkerboard.value = widget.show_grid.value = False
    _run(widget, qtbot)
    return viewer, widget


def test_a_saved_field_reopened_by_napari_applies_like_the_registration(
    make_napari_viewer, qtbot, model, errors, tmp_path
):
    viewer, widget = _registered(make_napari_viewer, qtbot, model)
    saved = widget.save_field(tmp_path / "field.npz")
    made = load_field(saved)
    assert made.spacing == SCALE and made.origin == TRANSLATE
    assert made.provenance["method"] == str(model)
    assert (made.provenance["fixed"], made.provenance["moving"]) == ("fixed", "moving")
    widget.field_controls.field = (
        None  # nothing in memory: the field comes back through napari's reader
    )

    viewer.open(saved, plugin="napari-deepsim")
    axes = [viewer.layers["field axis 0"], viewer.layers["field axis 1"]]
    assert all(tuple(layer.scale) == SCALE for layer in axes)
    widget.field_controls.reset_choices()
    assert "field (opened)" in [choice[0] for choice in widget.field_controls.sources()]
    assert all(layer not in widget.field_controls.apply_target.choices for layer in axes)
    widget.field_controls.field_source.value = "field"
    again = _applied(viewer, widget, viewer.layers["moving"], qtbot)
    np.testing.assert_allclose(again.data, viewer.layers["moving warped"].data, atol=1e-5)
    np.testing.assert_array_equal(again.scale, SCALE)  # on the fixed grid of the file
    assert errors == []


def test_the_itk_export_of_the_widget_warps_like_the_widget(
    make_napari_viewer, qtbot, model, errors, tmp_path
):
    itk = pytest.importorskip("itk")
    viewer, widget = _registered(make_napari_viewer, qtbot, model)
    path = widget.save_field(tmp_path / "field.nii.gz")
    field = itk.imread(path)
    double = itk.image_from_array(itk.array_from_image(field).astype(np.float64), is_vector=True)
    double.CopyInformation(field)
    transform = itk.DisplacementFieldTransform[itk.D, 2].New()
    transform.SetDisplacementField(double)
    moving = itk.image_from_array(np.asarray(viewer.layers["moving"].data, np.float32))
    moving.SetSpacing(SCALE[::-1])  # the moving image on the fixed grid, ITK's x first
    moving.SetOrigin(TRANSLATE[::-1])
    warped = itk.resample_image_filter(
        moving, transform=transform, use_reference_image=True, reference_image=moving
    )
    ours = viewer.layers["moving warped"].data
    inner = (slice(8, -8), slice(8, -8))  # ITK fills 0 where the field leaves the image
    difference = np.abs(itk.array_from_image(warped)[inner] - ours[inner])
    assert difference.max() < 1e-4 * max(1.0, float(np.abs(ours).max()))
    assert errors == []


def test_points_shapes_and_tracks_move_onto_the_fixed_image(
    make_napari_viewer, qtbot, model, errors
):
    viewer, widget = _registered(make_napari_viewer, qtbot, model)
    field = widget.field
    on_grid = np.array([[40.0, 50.0], [90.5, 30.25], [64.0, 100.0]])
    points = viewer.add_points(on_grid, scale=SCALE, translate=TRANSLATE, name="landmarks")
    points.features = {"label": ["a", "b", "c"]}
    moved = widget.apply_field(points)
    assert isinstance(moved, Points) and moved.name == "landmarks moved"
    assert list(moved.features["label"]) == ["a", "b", "c"]
    # drawn in a colour of its own: the copy does not hide under the original
    assert np.abs(moved.face_color[:, :3] - points.face_color[:, :3]).sum(axis=1).min() > 1
    orange = viewer.add_points(on_grid, face_color="orange", name="orange landmarks")
    moved_orange = widget.apply_field(orange)
    assert np.abs(moved_orange.face_color[:, :3] - orange.face_color[:, :3]).sum(1).min() > 1
    # a landmark at p on the moving image lies at q on the fixed image, q + u(q) = p
    np.testing.assert_allclose(moved.data + sample_field(field, moved.data), on_grid, atol=1e-3)
    # the same landmarks on a layer of another grid move in world coordinates
    world = on_grid * SCALE + TRANSLATE
    unscaled = viewer.add_points(world, name="world landmarks")
    np.testing.assert_allclose(widget.apply_field(unscaled).data, moved.data * SCALE + TRANSLATE)

    shapes = viewer.add_shapes(
        [on_grid[:2], on_grid], shape_type=["path", "polygon"], scale=SCALE, translate=TRANSLATE
    )
    moved_shapes = widget.apply_field(shapes)
    assert isinstance(moved_shapes, Shapes) and moved_shapes.shape_type == ["path", "polygon"]
    assert np.abs(moved_shapes.edge_color - shapes.edge_color)[:, :3].sum(axis=1).min() > 1
    np.testing.assert_allclose(moved_shapes.data[1], moved.data, atol=1e-9)
    tracks = np.column_stack([[1, 1, 2], [0, 1, 0], on_grid])  # id, t, row, column
    track_layer = viewer.add_tracks(tracks, scale=(1, *SCALE), translate=(0, *TRANSLATE))
    moved_tracks = widget.apply_field(track_layer)
    assert isinstance(moved_tracks, Tracks) and moved_tracks.colormap != track_layer.colormap
    np.testing.assert_allclose(moved_tracks.data[:, :2], tracks[:, :2])
    np.testing.assert_allclose(moved_tracks.data[:, 2:], moved.data, atol=1e-9)
    count = len(viewer.layers)
    widget.apply_field(points)  # applying again replaces the moved copy
    assert len(viewer.layers) == count
    assert errors == []
