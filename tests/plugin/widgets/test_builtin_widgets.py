"""The built-in models in the widgets: listed first, used without training, fine-tuned."""

from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import tifffile
from qtpy.QtCore import Qt

import napari_deepsim._widgets.register.widget as register_module
from napari_deepsim._state.models import builtin_choices, trained_models
from src_training.models import builtin_models

pytestmark = pytest.mark.gui

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ISBI = DATA / "isbi2012_em"
T98G = DATA / "t98g_phase"
needs_data = pytest.mark.skipif(not ISBI.is_dir(), reason="../shared/data is absent")


def _dock(viewer, name):
    return viewer.window.add_plugin_dock_widget("napari-deepsim", name)[1]


@pytest.fixture
def viewer(make_napari_viewer):
    trained_models.clear()
    yield make_napari_viewer()
    trained_models.clear()


def _register(widget, qtbot):
    assert widget.register() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)


def test_register_lists_the_builtin_models_first_and_picks_the_first(viewer):
    widget = _dock(viewer, "Register")
    choices = widget.model_panel.choices()
    # the registration models (the gland extractor alone is offered as an extractor)
    assert [name for _, name in choices] == ["em-2d", "phase-contrast-2d"]
    assert choices[0][0].startswith("em-2d: serial-section EM, 2D (built-in, held-out Dice 0.")
    assert widget.trained.value == "em-2d"
    assert widget.model_info.value.startswith("2D, 1 channel, metric deepsim; trained on ")
    assert "consecutive sections" in widget.model_info.value
    widget.set_model("phase-contrast-2d")
    assert widget.trained.value == "phase-contrast-2d"


@needs_data
def test_two_em_sections_register_with_em_2d_and_no_training(viewer, qtbot, errors, monkeypatch):
    warnings = []
    monkeypatch.setattr(register_module, "show_warning", warnings.append)
    for index in ("26", "27"):
        viewer.add_image(np.asarray(PIL.Image.open(ISBI / "images" / f"{index}.png")), name=index)
        labels = np.asarray(PIL.Image.open(ISBI / "labels" / f"{index}.png")) // 255
        viewer.add_labels(labels.astype(np.uint8), name=f"{index} labels")
    widget = _dock(viewer, "Register")
    widget.fixed.value, widget.moving.value = viewer.layers["26"], viewer.layers["27"]
    widget.fixed_labels.value = viewer.layers["26 labels"]
    widget.moving_labels.value = viewer.layers["27 labels"]
    widget.device.value = "cpu"
    _register(widget, qtbot)
    assert errors == [] and warnings == []
    before, after = (float(v) for v in widget.results.text().split("\n")[0][5:].split(" -> "))
    assert after > before + 0.05
    assert "27 warped" in viewer.layers and "27 grid" in viewer.layers


@needs_data
def test_a_smaller_moving_section_is_not_blamed_for_the_padding(viewer, qtbot, errors, monkeypatch):
    warnings = []
    monkeypatch.setattr(register_module, "show_warning", warnings.append)
    fixed = np.asarray(PIL.Image.open(ISBI / "images" / "25.png"))
    moving = np.asarray(PIL.Image.open(ISBI / "images" / "26.png"))[:160, :160]
    viewer.add_image(fixed, name="25")
    viewer.add_image(moving, name="26 corner")  # 0 on the fixed grid beyond its corner
    widget = _dock(viewer, "Register")
    widget.fixed.value, widget.moving.value = viewer.layers["25"], viewer.layers["26 corner"]
    widget.device.value = "cpu"
    _register(widget, qtbot)
    assert errors == []
    assert warnings == []  # 90 % of the moving side on the fixed grid is padding, not data
    assert viewer.layers["26 corner warped"].data.shape == fixed.shape


@needs_data
def test_phase_contrast_frames_with_em_2d_get_a_warning_notification(
    viewer, qtbot, errors, monkeypatch
):
    warnings = []
    monkeypatch.setattr(register_module, "show_warning", warnings.append)
    for index in (21, 22):
        viewer.add_image(tifffile.imread(T98G / "images" / f"t{index:02d}.tif"), name=str(index))
    widget = _dock(viewer, "Register")
    widget.fixed.value, widget.moving.value = viewer.layers["21"], viewer.layers["22"]
    widget.device.value = "cpu"
    _register(widget, qtbot)
    assert errors == []
    assert len(warnings) == 1 and "training data of em-2d" in warnings[0]
    assert "deepsim train" not in warnings[0] and "'start from'" in warnings[0]  # GUI words
    widget.set_model("phase-contrast-2d")
    _register(widget, qtbot)
    assert len(warnings) == 1  # the right model for the data: no warning


def test_compare_lists_the_builtin_models_first_unticked(viewer):
    widget = _dock(viewer, "Compare metrics")
    texts = [widget.models.item(i).text() for i in range(widget.models.count())]
    assert texts == [text for text, _ in builtin_choices()]
    assert all(
        widget.models.item(i).checkState() == Qt.CheckState.Unchecked
        for i in range(widget.models.count())
    )
    widget.models.item(0).setCheckState(Qt.CheckState.Checked)
    assert [(e.name, e.source) for e in widget.rows.entries()] == [("em-2d", "em-2d")]


def test_training_widgets_start_from_a_builtin_model(viewer, qtbot, errors):
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    widget = _dock(viewer, "Train registration model")
    assert list(widget.start_from.choices) == ["", "em-2d", "phase-contrast-2d"]  # "": new
    widget.start_from.value = "em-2d"
    assert widget.channels.value == "16,32,64" and not widget.channels.enabled
    assert widget.metric.value == "deepsim" and widget.extractor.value == "em-2d"
    widget.image.value = viewer.layers["noisy cells"]
    widget.labels.value = viewer.layers["noisy cells labels"]
    widget.steps.value, widget.crop.value, widget.device.value = 2, 32, "cpu"
    assert widget.start() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert errors == []
    assert widget.model.metadata["init"] == "em-2d"
    assert widget.model.metadata["features"] == "em-2d"
    widget.start_from.value = ""
    assert widget.channels.enabled

    features = _dock(viewer, "Train feature extractor")
    assert list(features.start_from.choices) == ["", *builtin_models()]  # every extractor
    features.start_from.value = "phase-contrast-2d"
    assert features.channels.value == "16,32,64" and not features.channels.enabled
