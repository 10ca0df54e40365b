"""A new user's journey through the plugin, in one viewer, as issue 16 walked it.

Every widget is docked as the Plugins menu does; the steps depend on each other, so a
broken hand-off anywhere (the trained model not reaching Register, a stop that does not
stop, a field that another tool warps differently, landmarks left behind) fails here.
"""

import re

import numpy as np
import pytest
import torch
from test_register_stop import _slow
from test_train_widgets import TINY, WIDGETS

import napari_deepsim._widgets.model_panel as model_module
import napari_deepsim._widgets.register.widget as register_module
from napari_deepsim._layers.choices import SOURCE
from napari_deepsim._state.models import trained_models
from src_training.engine.optimisation import own_refinement
from src_training.engine.options import OWN
from src_training.optimisation.config import REFINE_ITERATIONS
from src_training.spatial.points import sample_field

pytestmark = pytest.mark.gui


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", name)
    assert isinstance(widget, WIDGETS[name])
    return widget


def _itk_warp(path, moving):
    """Warp ``moving`` (on the fixed grid: unit spacing, zero origin) with ITK alone."""
    itk = pytest.importorskip("itk")
    field = itk.imread(str(path))
    double = itk.image_from_array(itk.array_from_image(field).astype(np.float64), is_vector=True)
    double.CopyInformation(field)
    transform = itk.DisplacementFieldTransform[itk.D, 2].New()
    transform.SetDisplacementField(double)
    image = itk.image_from_array(np.asarray(moving, np.float32))
    warped = itk.resample_image_filter(
        image, transform=transform, use_reference_image=True, reference_image=image
    )
    return itk.array_from_image(warped)


def test_dock_train_register_stop_export_to_itk_and_move_landmarks(
    make_napari_viewer, qtbot, errors, monkeypatch, tmp_path
):
    trained_models.clear()
    torch.manual_seed(0)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    stack = viewer.layers["noisy cells"]
    fixed = viewer.add_image(np.asarray(stack.data[0]), name="frame 0")
    moving = viewer.add_image(np.asarray(stack.data[1]), name="frame 1")

    # train briefly; the model reaches the Register widget docked beside it
    training = _dock(viewer, "Train registration model")
    register = _dock(viewer, "Register")
    training.image.value = stack
    training.labels.value = viewer.layers["noisy cells labels"]
    for name, value in TINY.items():
        getattr(training, name).value = value
    assert training.start() is not None
    qtbot.waitUntil(lambda: not training.running, timeout=60000)
    assert errors == [] and training.model is not None
    assert register.trained.value is training.model

    # register the whole stack, and stop it after its first frames: nothing is added
    texts: list[str] = []
    with monkeypatch.context() as patch:
        _slow(register_module, patch, texts)
        register.fixed.value = register.moving.value = stack
        register.register()
        qtbot.waitUntil(lambda: "frame 3/8" in texts, timeout=30000)
        register.register_button.changed.emit(True)  # the button reads Stop
        qtbot.waitUntil(lambda: not register.running, timeout=10000)
    assert "stopped" in register.results.text()
    assert [layer for layer in viewer.layers if SOURCE in layer.metadata] == []

    # register the two 2D layers
    register.fixed.value, register.moving.value = fixed, moving
    # the stack's labels, of another shape, are no longer chosen for the 2D frames
    assert register.fixed_labels.value is None and register.moving_labels.value is None
    register.register()
    qtbot.waitUntil(lambda: not register.running, timeout=30000)
    qtbot.waitUntil(lambda: "frame 1 warped" in viewer.layers, timeout=5000)  # one per turn
    assert errors == []
    warped = viewer.layers["frame 1 warped"].data
    assert warped.shape == fixed.data.shape

    # export the field for ITK; ITK warps the moving image as the plugin did
    path = register.save_field(tmp_path / "field.nii.gz")
    inner = (slice(8, -8), slice(8, -8))  # ITK fills 0 where the field leaves the image
    difference = np.abs(_itk_warp(path, moving.data)[inner] - warped[inner])
    assert difference.max() < 1e-4 * max(1.0, float(np.abs(warped).max()))

    # landmarks clicked on the moving image land where the field takes them
    clicked = np.array([[20.0, 25.0], [31.5, 12.25], [40.0, 40.0]])
    landmarks = viewer.add_points(clicked, name="landmarks")
    moved = register.apply_field(landmarks)
    assert moved is not None and moved.name == "landmarks moved"
    field = register.field
    np.testing.assert_allclose(moved.data + sample_field(field, moved.data), clicked, atol=1e-3)
    assert np.abs(field).max() > 1e-3  # a field that moves something: not the identity
    assert errors == []


def test_train_then_dock_register_refine_with_the_models_metric_by_a_double_click(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    """Issue 26's findings 3, 4 and 1, in the order a user meets them."""
    trained_models.clear()
    torch.manual_seed(0)
    notes: list[str] = []
    monkeypatch.setattr(model_module, "show_info", notes.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")

    # train an mse model, with no Register widget docked yet
    training = _dock(viewer, "Train registration model")
    training.image.value = viewer.layers["noisy cells"]
    training.labels.value = viewer.layers["noisy cells labels"]
    for name, value in {**TINY, "metric": "mse"}.items():
        getattr(training, name).value = value
    assert training.start() is not None
    qtbot.waitUntil(lambda: not training.running, timeout=60000)
    assert errors == [] and training.model is not None

    # finding 3: Register docked afterwards starts on that model, and says so
    register = _dock(viewer, "Register")
    assert register.trained.value is training.model
    assert notes == [model_module.IN_USE]
    assert register.fixed.value is viewer.layers["fixed"]

    # finding 4: model + refine refines with the model's own metric, as --refine own
    register.method.value = "model + refine"
    assert register.optimise.metric.value == OWN
    assert register.optimise.iterations.value == ",".join(map(str, REFINE_ITERATIONS))
    command_line = own_refinement(training.model, ndim=2, channels=1)
    assert command_line.name == "mse"

    # finding 1: a double click on Register is one run, which is not stopped
    register.register_button.native.click()
    register.register_button.native.click()
    assert register.running and register.register_button.text == "Stop"
    qtbot.waitUntil(lambda: not register.running, timeout=120000)
    qtbot.waitUntil(lambda: "moving warped" in viewer.layers, timeout=5000)
    assert errors == []
    text = register.results.text()
    assert re.match(r"refining the model, [1-9]\d* iterations of mse, loss", text), text
    assert "stopped" not in text
    assert register.register_button.text == "Register"
