"""A run's life: Stop, closing the dock, per-frame progress, and a GUI that never freezes."""

import time

import numpy as np
import pytest
import torch
from qtpy.QtCore import QTimer

import napari_deepsim._widgets.compare.widget as compare_module
import napari_deepsim._widgets.register.widget as register_module
from napari_deepsim._layers.choices import SOURCE
from src_training.networks.modelio import save_model
from src_training.networks.models import RegistrationNet

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return save_model(
        tmp_path_factory.mktemp("m") / "reg.pt", RegistrationNet(2, channels=(4, 8)), {}
    )


def _slow(module, monkeypatch, texts):
    """Make the widget's job sleep after each step and record the steps' texts."""
    run = module.run

    def slow(*args, **options):
        steps = run(*args, **options)
        while True:
            try:
                step = next(steps)
            except StopIteration as end:
                return end.value
            texts.append(step.text)
            time.sleep(0.15)
            yield step

    monkeypatch.setattr(module, "run", slow)


def _stack_widget(make_napari_viewer, model):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.fixed.value = widget.moving.value = viewer.layers["noisy cells"]
    widget.set_model(model)
    return viewer, dock, widget


def _outputs(viewer):
    return [layer for layer in viewer.layers if SOURCE in layer.metadata]


def test_stop_cancels_a_stack_within_one_frame_and_adds_nothing(
    make_napari_viewer, qtbot, model, errors, monkeypatch
):
    texts = []
    _slow(register_module, monkeypatch, texts)
    viewer, _, widget = _stack_widget(make_napari_viewer, model)
    widget.register()
    assert widget.register_button.text == "Stop"
    qtbot.waitUntil(lambda: any(t == "frame 3/8" for t in texts), timeout=30000)
    widget.register_button.changed.emit(True)  # the button reads Stop: press it
    qtbot.waitUntil(lambda: not widget.running, timeout=10000)
    frames = [int(t.split()[1].split("/")[0]) for t in texts if t.startswith("frame ")]
    assert frames[:2] == [2, 3] and max(frames) <= 4  # one frame per step, stopped at once
    assert "stopped" in widget.results.text() and widget.register_button.text == "Register"
    qtbot.wait(500)
    assert _outputs(viewer) == [] and errors == []


def test_closing_the_dock_cancels_and_no_output_arrives(
    make_napari_viewer, qtbot, model, errors, monkeypatch
):
    texts = []
    _slow(register_module, monkeypatch, texts)
    viewer, dock, widget = _stack_widget(make_napari_viewer, model)
    worker = widget.register()
    qtbot.waitUntil(lambda: len(texts) >= 2, timeout=30000)
    viewer.window.remove_dock_widget(dock)  # what the dock's close button does
    qtbot.waitUntil(lambda: not worker.is_running, timeout=10000)
    qtbot.wait(1000)
    assert _outputs(viewer) == [] and errors == []
    assert len(texts) <= 4  # no step ran long after the close


def test_stopping_a_comparison_keeps_the_last_results(
    make_napari_viewer, qtbot, model, errors, monkeypatch
):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Compare metrics")
    widget.add_model_files([model])
    widget.compare()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    before = {layer.name for layer in _outputs(viewer)}
    assert before and widget.compare_button.text == "Compare"
    texts = []
    _slow(compare_module, monkeypatch, texts)
    data = viewer.layers[sorted(before)[0]].data.copy()
    widget.compare()
    assert widget.compare_button.text == "Stop"
    qtbot.waitUntil(lambda: len(texts) >= 1, timeout=30000)
    # a click within the double-click interval of Compare, before the worker reported,
    # is the second click of a double click and not a Stop: press Stop after it
    qtbot.waitUntil(lambda: not widget.starting, timeout=10000)
    pressed = len(texts)
    widget.compare_button.changed.emit(True)
    qtbot.waitUntil(lambda: not widget.running, timeout=10000)
    # the row in progress stopped at its next step: it never finished (6 steps, then
    # "reg done"), so the layers are the first run's and not an identical rerun's
    assert len(texts) <= pressed + 1 and not any(t.endswith(" done") for t in texts), texts
    qtbot.wait(500)
    assert {layer.name for layer in _outputs(viewer)} == before
    np.testing.assert_array_equal(viewer.layers[sorted(before)[0]].data, data)
    assert widget.compare_button.text == "Compare" and errors == []


def test_result_layers_arrive_one_per_turn_of_the_event_loop(
    make_napari_viewer, qtbot, model, errors
):
    viewer = make_napari_viewer(show=True)  # shown: drawing the new layers counts
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.set_model(model)
    widget.show_vectors.value = True
    qtbot.wait(500)  # the new window's first paints are napari's, not the run's
    seen, added = [], []  # how many layers had arrived at each tick of a 10 ms timer
    timer = QTimer()
    timer.timeout.connect(lambda: seen.append(len(added)))
    viewer.layers.events.inserted.connect(lambda _event: added.append(time.perf_counter()))
    timer.start(10)
    widget.register()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    timer.stop()
    assert len(_outputs(viewer)) == len(added) == 7 and errors == []
    # the timer ran while some layers had arrived and others had not: between two layers
    # the event loop turned (the window redrew and answered)
    assert len({n for n in seen if 0 < n < 7}) >= 3


def test_keeping_results_of_an_optimisation_leaves_the_last_ones_untouched(
    make_napari_viewer, qtbot, errors
):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "5,5"
    widget.register()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    first = {layer.name: layer.data.copy() for layer in _outputs(viewer)}
    assert "moving warped" in first
    widget.keep.value = True
    widget.register()  # its live preview must not take over the kept warped image
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    names = {layer.name for layer in _outputs(viewer)}
    assert names == set(first) | {f"{name} #2" for name in first} and errors == []
    for name, data in first.items():
        np.testing.assert_array_equal(viewer.layers[name].data, data)
