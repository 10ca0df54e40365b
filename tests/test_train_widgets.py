"""The training widgets in a real viewer on the built-in noisy cell time-lapse."""

import itertools
import subprocess
import sys
import time

import pytest
from qtpy.QtCore import QTimer

import napari_deepsim._train_widget as train_module
from napari_deepsim._register_widget import RegisterWidget
from napari_deepsim._train_job import trained_models
from napari_deepsim._train_widget import TrainFeaturesWidget, TrainRegistrationWidget
from src_training.modelio import load_model

pytestmark = pytest.mark.gui

TINY = {"crop": 32, "channels": "4,8", "device": "cpu", "steps": 3}


@pytest.fixture
def errors(monkeypatch):
    shown: list[str] = []
    monkeypatch.setattr(train_module, "show_error", shown.append)
    return shown


@pytest.fixture
def viewer(make_napari_viewer):
    trained_models.clear()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    yield viewer
    trained_models.clear()


def _setup(widget, viewer, **settings):
    widget.image.value = viewer.layers["noisy cells"]
    widget.labels.value = viewer.layers["noisy cells labels"]
    for name, value in {**TINY, **settings}.items():
        getattr(widget, name).value = value


def _train(qtbot, widget):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    return worker


def test_features_then_deepsim_registration_saved_and_offered(viewer, qtbot, errors, tmp_path):
    features = TrainFeaturesWidget(viewer)
    registration = TrainRegistrationWidget(viewer)
    register = RegisterWidget(viewer)
    _setup(features, viewer)
    _train(qtbot, features)
    assert features.model is not None and features.model.kind == "features"
    assert len(features.plot.losses) == 3
    assert registration.extractor.value is features.model  # the newest extractor is chosen
    assert features.save(tmp_path / "f.pt").is_file()

    _setup(registration, viewer)
    registration.metric.value = "deepsim"
    assert registration.lam.value == 1.0
    assert registration.extractor.enabled
    _train(qtbot, registration)
    assert errors == []
    assert len(registration.plot.losses) == 3
    assert registration.plot.validation  # labels given: Dice on the last two frames
    saved = load_model(registration.save(tmp_path / "r.pt"))
    assert saved.kind == "registration" and saved.metadata["metric"] == "deepsim"
    assert register._model is registration.model
    assert registration.train_button.text == "Train"


def test_stop_ends_a_long_run_quickly(viewer, qtbot, errors):
    widget = TrainRegistrationWidget(viewer)
    _setup(widget, viewer, steps=10000)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(50)
    widget._train_clicked()
    assert widget.train_button.text == "Stop"
    qtbot.waitUntil(lambda: len(widget.plot.losses) >= 2, timeout=20000)
    qtbot.wait(1500)
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    print(f"largest event-loop gap during training: {max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 0.5
    start = time.perf_counter()
    widget._train_clicked()
    qtbot.waitUntil(lambda: not widget.running, timeout=5000)
    assert time.perf_counter() - start < 3
    assert widget.train_button.text == "Train"
    assert 2 <= len(widget.plot.losses) < 10000
    assert widget.model is not None and errors == []


def test_bad_inputs_are_reported(viewer, qtbot, errors):
    features = TrainFeaturesWidget(viewer)
    _setup(features, viewer)
    features.labels.value = None
    assert features.start() is None
    assert "labels" in errors[-1]
    registration = TrainRegistrationWidget(viewer)
    _setup(registration, viewer)
    registration.metric.value = "deepsim"
    assert registration.extractor.choices == (None,)
    assert registration.start() is None
    assert "feature extractor" in errors[-1]
    assert not registration.running and registration.train_button.text == "Train"
    assert features.save("unused.pt") is None
    assert len(errors) == 3


def test_importing_the_training_widgets_does_not_import_torch():
    code = "import sys, napari_deepsim._train_widget; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
