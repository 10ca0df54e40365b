"""The training widgets in a real viewer on the built-in noisy cell time-lapse."""

import itertools
import threading
import time

import pytest
import tifffile
from qtpy.QtCore import QEvent, QTimer
from qtpy.QtWidgets import QApplication

import napari_deepsim._widgets.model_panel as model_module
import napari_deepsim._widgets.train.base as train_base
from napari_deepsim._state.models import builtin_choices, trained_models
from napari_deepsim._widgets.compare.widget import CompareWidget
from napari_deepsim._widgets.register.widget import RegisterWidget
from napari_deepsim._widgets.train.widget import TrainFeaturesWidget, TrainRegistrationWidget
from src_training.data.samples import noisy_cell_sequence
from src_training.networks.modelio import load_model

pytestmark = pytest.mark.gui

TINY = {"crop": 32, "channels": "4,8", "device": "cpu", "steps": 3}


@pytest.fixture
def viewer(make_napari_viewer):
    trained_models.clear()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    yield viewer
    trained_models.clear()


WIDGETS = {
    "Register": RegisterWidget,
    "Compare metrics": CompareWidget,
    "Train feature extractor": TrainFeaturesWidget,
    "Train registration model": TrainRegistrationWidget,
}


def _dock(viewer, name):
    """Open a widget as the Plugins menu does (it gets its own proxy of the viewer)."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", name)
    assert isinstance(widget, WIDGETS[name])
    return widget


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


def test_precision_and_checkpointing_reach_the_trained_network(viewer, qtbot, errors):
    widget = _dock(viewer, "Train registration model")
    _setup(widget, viewer, precision="bf16", checkpointing=True)
    _train(qtbot, widget)
    assert errors == []
    assert widget.model.metadata["precision"] == "bf16"
    assert widget.model.network.unet.activation_checkpointing
    assert [step for step, _ in widget.plot.losses] == [1, 2, 3]


def test_features_then_deepsim_registration_saved_and_offered(
    viewer, make_napari_viewer, qtbot, errors, tmp_path
):
    features = _dock(viewer, "Train feature extractor")
    registration = _dock(viewer, "Train registration model")
    register = _dock(viewer, "Register")
    _setup(features, viewer)
    _train(qtbot, features)
    assert features.model is not None and features.model.kind == "features"
    assert len(features.plot.losses) == 3
    assert registration.extractor.value is features.model  # the newest extractor is chosen
    opened_later = _dock(make_napari_viewer(), "Train registration model")
    assert opened_later.extractor.value is features.model
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
    assert register.trained.value is registration.model
    assert registration.train_button.text == "Train"


def test_self_supervised_features_from_a_plain_image_layer(viewer, qtbot, errors):
    widget = _dock(viewer, "Train feature extractor")
    _setup(widget, viewer, kind="self-supervised")
    widget.labels.value = None  # nothing painted
    _train(qtbot, widget)
    assert errors == []
    assert widget.model.network.kind == "autoencoder"
    assert widget.model.metadata["self_supervised"]["noise"] > 0
    assert len(widget.plot.losses) == 3


def test_stop_ends_a_long_run_quickly(viewer, qtbot, errors):
    widget = _dock(viewer, "Train registration model")
    _setup(widget, viewer, steps=10000)
    ticks: list[float] = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(50)
    widget.train_button.changed.emit(True)  # press the button
    assert widget.train_button.text == "Stop"
    qtbot.waitUntil(lambda: len(widget.plot.losses) >= 2, timeout=20000)
    qtbot.wait(1500)
    timer.stop()
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    print(f"largest event-loop gap during training: {max(gaps) * 1000:.0f} ms")
    assert max(gaps) < 0.5
    start = time.perf_counter()
    widget.train_button.changed.emit(True)  # press the button
    qtbot.waitUntil(lambda: not widget.running, timeout=5000)
    assert time.perf_counter() - start < 3
    assert widget.train_button.text == "Train"
    assert 2 <= len(widget.plot.losses) < 10000
    assert widget.model is not None and errors == []


def test_bad_inputs_are_reported(viewer, qtbot, errors):
    features = _dock(viewer, "Train feature extractor")
    _setup(features, viewer)
    features.labels.value = None
    assert features.start() is None
    assert "labels" in errors[-1]
    registration = _dock(viewer, "Train registration model")
    _setup(registration, viewer)
    registration.metric.value = "deepsim"
    # only the built-in models' extractors: none trained here yet
    assert registration.extractor.choices == (None, *[n for _, n in builtin_choices("features")])
    assert registration.start() is None
    assert "feature extractor" in errors[-1]
    assert not registration.running and registration.train_button.text == "Train"
    assert features.save("unused.pt") is None
    assert len(errors) == 3


def test_the_likely_training_layers_are_preselected(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    features = _dock(viewer, "Train feature extractor")
    registration = _dock(viewer, "Train registration model")
    assert features.image.value is viewer.layers["fixed"]
    assert features.labels.value is viewer.layers["fixed labels"]
    assert registration.image.value is None  # no stack of frames yet
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    assert registration.image.value is viewer.layers["noisy cells"]
    assert registration.labels.value is viewer.layers["noisy cells labels"]
    assert features.image.value is viewer.layers["fixed"]  # a choice is never overridden


def _tiny_folder(root, frames=4):
    seq = noisy_cell_sequence(n_frames=frames, size=48)
    for sub, data in (("images", seq.images), ("labels", seq.labels)):
        (root / sub).mkdir(parents=True)
        for t, frame in enumerate(data):
            tifffile.imwrite(root / sub / f"f{t}.tif", frame)
    return root


def test_a_dataset_folder_is_read_in_the_worker(viewer, qtbot, errors, tmp_path, monkeypatch):
    import src_training.engine.public as public  # where the training job finds it

    threads = []
    original = public.load_dataset

    def spy(*args, **kwargs):
        threads.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(public, "load_dataset", spy)
    widget = _dock(viewer, "Train registration model")
    _setup(widget, viewer, steps=2)
    widget.folder.value = _tiny_folder(tmp_path / "data")
    _train(qtbot, widget)
    assert errors == []
    assert threads and all(t is not threading.main_thread() for t in threads)
    assert "data (images/ and labels/)" in widget.model.metadata["train_data"]
    widget.folder.value = tmp_path / "missing"
    _train(qtbot, widget)
    assert "missing" in errors[-1] and widget.train_button.text == "Train"


def test_a_trained_model_reaches_the_docked_register_widget(viewer, qtbot, errors):
    registration = _dock(viewer, "Train registration model")
    register = _dock(viewer, "Register")
    compare = _dock(viewer, "Compare metrics")
    assert register.viewer is not registration.viewer  # napari gives each dock its own proxy
    assert register.trained.value == builtin_choices()[0][1]  # the first built-in model
    _setup(registration, viewer)
    _train(qtbot, registration)
    assert errors == []
    assert registration.model is not None
    assert register.trained.value is registration.model
    assert register.model_info.value == (
        "2D, 1 channel, metric ncc; trained on napari layer 'noisy cells'; subset 0:6, 3 steps "
        "(trained here)"
    )
    builtins = [text for text, _ in builtin_choices()]  # listed first
    assert [name for name, _ in register.model_panel.choices()] == [*builtins, "ncc model #1"]
    assert [compare.models.item(i).text() for i in range(compare.models.count())] == [
        *builtins,
        "ncc model #1",
    ]


def test_a_register_widget_docked_after_training_starts_on_the_model_trained_here(
    viewer, make_napari_viewer, qtbot, errors, monkeypatch
):
    notes: list[str] = []
    monkeypatch.setattr(model_module, "show_info", notes.append)
    registration = _dock(viewer, "Train registration model")
    _setup(registration, viewer)
    _train(qtbot, registration)
    assert errors == [] and registration.model is not None
    register = _dock(viewer, "Register")  # docked after the training ended
    assert register.trained.value is registration.model
    assert register.model_info.value.endswith("(trained here)")
    assert notes == [model_module.IN_USE]
    other = make_napari_viewer()  # a viewer that trained nothing keeps the built-in model
    _, elsewhere = other.window.add_plugin_dock_widget("napari-deepsim", "Register")
    assert elsewhere.trained.value == builtin_choices()[0][1]
    assert notes == [model_module.IN_USE]


def test_a_closed_register_widget_no_longer_hears_the_registry(
    viewer, make_napari_viewer, qtbot, errors
):
    trained = trained_models.events.trained
    listening = len(trained.callbacks)
    dock, closed = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    assert len(trained.callbacks) == listening + 1
    dock.destroyOnClose()  # what the dock's close button does
    assert len(trained.callbacks) == listening
    other = make_napari_viewer()
    _dock(other, "Register")
    other.close()  # its widgets are deleted with the window
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    assert len(trained.callbacks) == listening

    registration = _dock(viewer, "Train registration model")
    _setup(registration, viewer)
    _train(qtbot, registration)
    assert errors == []
    assert registration.model is not None and trained_models.of_kind("registration")
    # the closed widget did not take the model: it keeps the built-in model it opened with
    assert closed.trained.value == builtin_choices()[0][1]


def test_unlabelled_validation_frames_are_said_and_judged_by_the_validation_loss(
    viewer, qtbot, errors, monkeypatch
):
    warnings = []
    monkeypatch.setattr(train_base, "show_warning", warnings.append)
    labels = viewer.layers["noisy cells labels"]
    labels.data[-2:] = 0  # painted on the training frames only: the last two validate
    widget = _dock(viewer, "Train registration model")
    _setup(widget, viewer, steps=2, lr=1e-6)
    _train(qtbot, widget)
    assert errors == []
    assert widget.plot.by_loss and widget.plot.baseline is None
    assert len(widget.plot.validation) == 2  # the validation loss, once per step
    text = widget.status.text()
    assert "the validation frames have no labels" in text
    assert "validation Dice" not in text and "identity's" not in text
    assert len(warnings) == 1 and "judged by the validation loss, which did not fall" in warnings[0]
