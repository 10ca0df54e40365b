"""The plugin's Qt-free helpers: layers stacked for training, the verdict, moved points."""

import itertools
import time

import numpy as np
import pytest
from napari.layers import Points

from napari_deepsim._jobs.train_data import stack_layers, verdict
from napari_deepsim._layers.points import moved_layer_data
from src_training.spatial.fieldio import FieldFile


def test_layers_of_one_shape_stack_as_frames_and_others_are_refused():
    frames = [np.full((4, 5), t, np.float32) for t in range(3)]
    stack = stack_layers(frames, ["a", "b", "c"])
    assert stack.shape == (3, 4, 5) and stack[2, 0, 0] == 2
    with pytest.raises(ValueError, match="different shapes"):
        stack_layers([frames[0], np.zeros((5, 4))], ["a", "b"])
    with pytest.raises(ValueError, match="two or more layers"):
        stack_layers(frames[:1], ["a"])


def test_a_run_that_beats_the_identity_gets_no_advice():
    assert verdict([0.7, 0.8], 0.75, 100) is None
    advice = verdict([0.7, 0.75], 0.75, 100)
    assert advice is not None and "raise 'steps' (now 100, e.g. to 1000)" in advice
    assert verdict([], 0.75, 100) is None and verdict([0.1], None, 100) is None
    assert verdict([0.6, 0.5], None, 100, by_loss=True) is None  # the validation loss fell
    advice = verdict([0.6, 0.6], None, 100, by_loss=True)
    assert advice is not None and "no labels" in advice and "Dice" not in advice


def test_points_move_by_the_inverse_of_a_constant_field_in_world_coordinates():
    shift = np.zeros((2, 16, 16), np.float32)
    shift[0] = 2.0  # fixed q samples the moving image at q + (2, 0) voxels
    field = FieldFile(shift, spacing=(0.5, 0.5), origin=(0.0, 0.0))
    points = Points(np.array([[6.0, 3.0], [4.0, 5.0]]), scale=(0.5, 0.5))
    data, state, kind, far = moved_layer_data(points, field)
    assert kind == "points" and far == 0
    np.testing.assert_allclose(data, [[4.0, 3.0], [2.0, 5.0]], atol=1e-3)
    assert tuple(state["scale"]) == (0.5, 0.5)


@pytest.mark.gui
def test_layer_steps_let_the_other_timers_of_the_gui_thread_run_between_them(qtbot):
    from qtpy.QtCore import QTimer

    from napari_deepsim._widgets.workers import Turns

    ticks, starts, done = [], [], []
    heartbeat = QTimer()
    heartbeat.timeout.connect(lambda: ticks.append(time.perf_counter()))
    heartbeat.start(10)

    def step():  # as long as napari adding a layer
        starts.append(time.perf_counter())
        time.sleep(0.05)

    turns = Turns([step] * 5, lambda: done.append(True), pytest.fail)
    qtbot.waitUntil(lambda: bool(done), timeout=5000)
    heartbeat.stop()
    assert not turns.active and len(starts) == 5
    for before, after in itertools.pairwise(starts):
        assert any(before < tick < after for tick in ticks), "two steps ran back to back"
