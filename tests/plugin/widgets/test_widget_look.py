"""The widgets as a user sees them: docks that fit a small screen, tooltips, model facts.

Widgets are docked through ``viewer.window.add_plugin_dock_widget`` as the Plugins menu
does, in a 1366×768 main window.
"""

import numpy as np
import pytest
import torch
from qtpy.QtCore import QPoint, QRect, Qt
from qtpy.QtGui import QImage
from qtpy.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QHeaderView,
    QLineEdit,
    QScrollArea,
    QTableWidget,
)

import napari_deepsim._layers.choices as choices_module
import napari_deepsim._layers.stack as stack_module
import napari_deepsim._widgets.dock as dock_module
import napari_deepsim._widgets.train.base as train_base
from napari_deepsim._widgets.loss_plot import MIN_SCORE_SPAN, LossPlot
from napari_deepsim._widgets.outputs import vector_scale
from napari_deepsim._widgets.workers import error_message
from src_training.networks.modelio import save_model
from src_training.networks.models import RegistrationNet

pytestmark = pytest.mark.gui

SCREEN = (1366, 768)
WIDGETS = ["Register", "Compare metrics", "Train feature extractor", "Train registration model"]
TINY = {"crop": 32, "channels": "4,8", "device": "cpu", "steps": 3}
CONTROLS = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QAbstractItemView)


@pytest.fixture
def viewer(make_napari_viewer):
    viewer = make_napari_viewer(show=True)
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    window = viewer.window._qt_window
    window.showNormal()
    window.resize(*SCREEN)
    return viewer


def _dock(viewer, name):
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", name)
    return widget


def _settle(qtbot):
    for _ in range(5):
        QApplication.processEvents()
    qtbot.wait(20)


def _shown(widget, kinds):
    return [child for child in widget.findChildren(kinds) if child.isVisibleTo(widget)]


@pytest.mark.parametrize("side_by_side", [False, True], ids=["stacked", "side-by-side"])
@pytest.mark.parametrize(
    "names",
    [WIDGETS[:2], WIDGETS[::3], WIDGETS[2:]],
    ids=lambda names: " + ".join(names),
)
def test_two_docked_widgets_fit_a_1366x768_window(viewer, qtbot, names, side_by_side):
    window = viewer.window._qt_window
    widgets = [_dock(viewer, name) for name in names]
    docks = [widget.parent() for widget in widgets]
    while docks[0] is not None and not hasattr(docks[0], "setFeatures"):  # the dock widgets
        docks = [dock.parent() for dock in docks]
    if side_by_side:
        window.splitDockWidget(docks[0], docks[1], Qt.Orientation.Horizontal)
    _settle(qtbot)
    assert window.width() <= SCREEN[0] and window.height() <= SCREEN[1]
    for dock, widget in zip(docks, widgets, strict=True):
        assert window.rect().contains(dock.geometry()), f"{dock.windowTitle()} is off-screen"
        scroll = widget.findChild(QScrollArea)
        assert scroll is not None, f"{type(widget).__name__} has no scroll area"
        assert not scroll.horizontalScrollBar().isVisible()
        viewport = scroll.viewport()
        panel = scroll.widget()
        assert panel.minimumSizeHint().width() <= viewport.width(), "a control is cut off"
        assert scroll.height() >= 150, "the dock is squeezed to a sliver"
        buttons = _shown(widget, QAbstractButton)
        assert any(button.text() in ("Register", "Compare", "Train") for button in buttons)
        for button in buttons:
            scroll.ensureWidgetVisible(button, 0, 0)
            _settle(qtbot)
            where = QRect(button.mapTo(viewport, QPoint(0, 0)), button.size())
            assert viewport.rect().contains(where), f"{button.text()!r} cannot be reached"


def _tooltip(control, root):
    """The tooltip Qt shows over ``control``: its own, or the nearest parent's."""
    while control is not None and control is not root:
        if control.toolTip():
            return control.toolTip()
        control = control.parent()
    return ""


@pytest.mark.parametrize("name", WIDGETS)
def test_every_control_has_a_tooltip(viewer, name):
    widget = _dock(viewer, name)
    controls = [
        control
        for control in _shown(widget, CONTROLS)
        if not isinstance(control, QTableWidget | QHeaderView)  # results, not controls
        and not isinstance(control.parent(), (QComboBox, QAbstractSpinBox))  # their editors
    ]
    assert len(controls) >= 8
    missing = [
        control.text() if isinstance(control, QAbstractButton) else type(control).__name__
        for control in controls
        if not _tooltip(control, widget)
    ]
    assert missing == []


def test_tooltips_state_units(viewer):
    register = _dock(viewer, "Register")
    assert "pixels" in register.spacing.tooltip
    assert "det J" in register.show_jacobian.tooltip
    assert "sdlogj" in register.results.toolTip() and "wall time" in register.results.toolTip()
    train = _dock(viewer, "Train registration model")
    assert "pixels" in train.crop.tooltip
    assert "per step" in train.lr.tooltip
    assert "regulariser" in train.lam.tooltip
    assert "U-Net" in train.channels.tooltip


@pytest.fixture(scope="module")
def model_3d(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("look") / "brain.pt"
    return save_model(path, RegistrationNet(3, channels=(4, 8)), {"metric": "mind"})


def test_a_picked_model_shows_its_dimensions_channels_metric_and_data(viewer, model_3d):
    widget = _dock(viewer, "Register")
    info = widget.model_info.value
    assert info.startswith("2D, 1 channel, metric deepsim; trained on ")
    assert "held out: isbi2012_em 25:30" in info and "(built-in)" in info
    widget.set_model(model_3d)
    assert widget.model_info.value.startswith("3D, 1 channel, metric mind; trained on ")
    assert "brain.pt" in widget.model_info.value


def test_a_model_of_other_dimensions_is_refused_before_any_work(
    viewer, model_3d, errors, monkeypatch
):
    started = []
    monkeypatch.setattr(dock_module, "start_worker", lambda *a, **k: started.append(a))
    widget = _dock(viewer, "Register")
    widget.set_model(model_3d)
    assert widget.register() is None
    assert started == []
    assert len(errors) == 1
    assert errors[0].startswith("3D model, 2D layer 'fixed': ")
    assert "'optimise'" in errors[0]


def test_core_advice_names_the_widgets_controls_not_command_line_options():
    from src_training.runtime.devices import resolve_device

    advice = [
        "a training step needs 9 GB but 1 GB are free; lower --batch-size to 2, or use a "
        "device with more memory",
        "lower --crop (now 64) or use fewer --channels (now 16,32)",
        "crop or downsample the images, lower --batch-size, or use a device with more memory",
        "f.pt holds a features model; pass a registration model made by `deepsim train` instead",
        "the extractor: train one with `deepsim train-features` and pass --features F.pt",
        "the GPU X does not compute in bfloat16; use --precision fp16 or fp32",
    ]
    if not torch.cuda.is_available():
        with pytest.raises(ValueError) as refused:
            resolve_device("cuda")
        advice.append(str(refused.value))
    for text in advice:
        message = error_message(ValueError(text), "Training")
        assert "--" not in message and "deepsim " not in message, message
    assert "lower 'batch size' in the widget to 2" in error_message(ValueError(advice[0]), "")


def test_vectors_are_lengthened_by_a_stated_factor_when_small():
    positions = np.stack(np.mgrid[0:64:16, 0:64:16], -1).reshape(-1, 2).astype(np.float32)
    small = np.stack([positions, np.full_like(positions, 0.5)], 1).astype(np.float32)
    assert vector_scale(small) == round(8 / np.hypot(0.5, 0.5))
    assert vector_scale(np.stack([positions, np.full_like(positions, 6)], 1)) == 1
    assert vector_scale(np.stack([positions, np.zeros_like(positions)], 1)) == 1


def test_results_show_wall_time_a_jacobian_colour_bar_when_shown_and_scaled_vectors(
    viewer, qtbot, errors
):
    widget = _dock(viewer, "Register")
    widget.show_vectors.value = True
    assert widget.register() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert errors == []
    text = widget.results.text()
    assert " s wall time (registration " in text and " s on cpu)" in text
    assert "folds (det J <= 0)" in text
    jacobian = viewer.layers["moving Jacobian"]
    assert tuple(jacobian.contrast_limits) == (0.0, 2.0)
    # a hidden layer's colour bar is built when it is first shown, not while results arrive
    assert not jacobian.visible and not jacobian.colorbar.visible
    jacobian.visible = True
    assert jacobian.colorbar.visible
    vectors = [layer for layer in viewer.layers if layer.name.startswith("moving displacement")]
    assert len(vectors) == 1
    factor = vector_scale(vectors[0].data)
    assert vectors[0].length == factor
    assert (f"×{factor:g}" in vectors[0].name) == (factor != 1)


def test_a_moving_layer_of_another_scale_is_resampled_where_napari_shows_it(
    viewer, errors, monkeypatch
):
    jobs, notes = [], []
    monkeypatch.setattr(dock_module, "start_worker", lambda _f, job, *a, **k: jobs.append(job))
    monkeypatch.setattr(choices_module, "show_info", notes.append)
    square = np.zeros((64, 64), np.float32)
    square[16:32, 24:40] = 1
    fixed = viewer.add_image(square, name="fine", translate=(4, 0))
    moving = viewer.add_image(square[::2, ::2], name="coarse", scale=(2, 2), translate=(4, 0))
    widget = _dock(viewer, "Register")
    widget.fixed.value, widget.moving.value = fixed, moving
    widget.moving_labels.value = widget.fixed_labels.value = None
    widget.register()
    assert errors == [] and len(jobs) == 1
    resampled = jobs[0].moving
    assert resampled.shape == (64, 64)  # on the fixed grid, not stretched: the square stays
    np.testing.assert_allclose(resampled[18:30, 26:38], 1)
    assert resampled[:14].max() == 0 and resampled[34:].max() == 0
    assert len(notes) == 1 and "resampled onto the fixed grid where napari shows it" in notes[0]
    jobs.clear()
    moving.scale, moving.data = (1, 1), square  # the same grid: used as it is
    widget.register()
    assert jobs[0].moving is not None and len(notes) == 1


def test_the_training_plot_has_axes_an_identity_line_and_a_minimum_span(qtbot):
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(300, 180)
    plot.clear(100, baseline=0.6790)
    for step in range(1, 101):
        plot.add_loss(step, 0.5 + 1e-5 * step)
    plot.add_validation(50, 0.6791)
    plot.add_validation(100, 0.6792)
    low, high = plot.score_range()
    assert high - low >= MIN_SCORE_SPAN  # a 4th-decimal change stays a flat line
    assert low <= plot.baseline <= high
    low, high = plot.loss_range()
    assert high - low >= 0.1 * 0.501
    assert plot.x_label == "step" and "validation Dice" in plot.toolTip()
    assert not plot.grab().isNull()  # axes, ticks, the dashed identity line


def test_the_plot_names_each_level_reads_values_under_the_mouse_and_exports(qtbot, tmp_path):
    plot = LossPlot(x_label="iteration")
    qtbot.addWidget(plot)
    plot.resize(300, 180)
    plot.clear(30)
    for step in range(20):  # two pyramid levels: two curves, never one line between them
        plot.add_loss(step, 0.9 - 0.01 * step, "L1" if step < 10 else "L2")
    assert [len(curve.getData()[0]) for curve in plot.curves] == [10, 10]
    assert [mark.value() for mark in plot.marks] == [0, 10]
    assert plot.readout.text() == "loss 0.71 (L2)"  # the latest, with its level
    assert plot.values_at(12.4) == "iteration 12: loss 0.78 (L2)"
    assert plot.values_at(3) == "iteration 3: loss 0.87 (L1)"
    image = QImage(str(plot.export(tmp_path / "loss.png", width=400)))
    assert image.width() == 400 and image.height() > 50
    plot.clear(5)
    assert plot.curves == [] and plot.readout.text() == ""


def test_a_run_that_does_not_beat_the_identity_says_train_longer(
    make_napari_viewer, qtbot, errors, monkeypatch
):
    warnings = []
    monkeypatch.setattr(train_base, "show_warning", warnings.append)
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    widget = _dock(viewer, "Train registration model")
    widget.image.value = viewer.layers["noisy cells"]
    widget.labels.value = viewer.layers["noisy cells labels"]
    for name, value in {**TINY, "lr": 1e-6, "steps": 2}.items():
        getattr(widget, name).value = value
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert errors == []
    assert widget.plot.baseline is not None and widget.plot.validation
    assert "train longer: the validation Dice" in widget.status.text()
    assert len(warnings) == 1 and "raise 'steps' (now 2" in warnings[0]


def test_two_2d_layers_train_a_registration_model_stacked_for_the_user(
    viewer, qtbot, errors, monkeypatch
):
    notes = []
    monkeypatch.setattr(stack_module, "show_info", notes.append)
    widget = _dock(viewer, "Train registration model")
    widget.image.value = None
    widget.layers.value = [viewer.layers["fixed"], viewer.layers["moving"]]
    for name, value in TINY.items():
        getattr(widget, name).value = value
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert errors == []
    assert widget.model is not None and widget.model.ndim == 2
    assert notes[0].startswith("Stacked the 2 layers 'fixed', 'moving' as frames 0-1 of one 2D+t")
    assert "with their labels" in notes[0]


def test_a_3d_volume_pair_trains_3d_models_without_a_hand_built_stack(
    make_napari_viewer, qtbot, errors
):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    for name in ("volume a", "volume b"):
        viewer.add_image(rng.random((16, 16, 16)).astype(np.float32), name=name)
        viewer.add_labels((rng.random((16, 16, 16)) > 0.5).astype(np.uint8), name=f"{name} labels")
    volumes = [viewer.layers["volume a"], viewer.layers["volume b"]]
    for title in ("Train feature extractor", "Train registration model"):
        widget = _dock(viewer, title)
        widget.layers.value = volumes
        for name, value in {**TINY, "crop": 16, "steps": 2}.items():
            getattr(widget, name).value = value
        assert widget.start() is not None
        qtbot.waitUntil(lambda widget=widget: not widget.running, timeout=60000)
        assert errors == []
        assert widget.model.ndim == 3 and "volume a" in widget.model.metadata["train_data"]
