"""Optimisation in the Register and Compare widgets: no model, refinement, Stop, stacks."""

import re
import time

import numpy as np
import pytest
import torch
from qtpy.QtCore import Qt, QTimer

import napari_deepsim._widgets.dock as dock_module
import napari_deepsim._widgets.register.widget as register_module
from napari_deepsim._jobs.optimise import optimisation
from napari_deepsim._state.models import TrainedModel, builtin_choices, trained_models
from napari_deepsim._widgets.compare.widget import CompareWidget
from napari_deepsim._widgets.register.widget import RegisterWidget
from src_training.engine.optimisation import own_refinement
from src_training.engine.options import OWN
from src_training.networks.modelio import load_model, save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.optimisation.config import REFINE_ITERATIONS, REFINE_LAM_SCALE

pytestmark = pytest.mark.gui

EXTRACTOR_MESSAGE = (
    "The deepsim metric needs a feature extractor; pick a built-in one, train one with "
    "'Train feature extractor' or choose an extractor file."
)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("optimise-models")
    torch.manual_seed(0)
    net = RegistrationNet(2, channels=(4, 8))
    with torch.no_grad():  # a constant shift: the refinement has something to correct
        net.unet.head.weight.zero_()
        net.unet.head.bias.copy_(torch.tensor([1.5, -2.5]))
    extractor = FeatureExtractor(2, 1, 3, channels=(4, 8))
    return {
        "shift": save_model(folder / "shift.pt", net, {"metric": "ncc"}),
        "mse": save_model(folder / "mse.pt", net, {"metric": "mse"}),
        "features": save_model(folder / "features.pt", extractor, {}),
    }


@pytest.fixture
def viewer(make_napari_viewer):
    trained_models.clear()
    viewer = make_napari_viewer()
    yield viewer
    trained_models.clear()


def _register(viewer, sample="noisy_cell_pair"):
    viewer.open_sample("napari-deepsim", sample)
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    assert isinstance(widget, RegisterWidget)
    return widget


def _run(widget, qtbot, steps=None):
    worker = widget.register()
    assert worker is not None
    if steps is not None:
        worker.yielded.connect(steps.append)
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    return worker


def _dice(widget):
    before, after = re.search(r"Dice (\S+) -> (\S+)", widget.results.text()).groups()
    return float(before), float(after)


def test_optimising_a_pair_without_a_model(viewer, qtbot, errors, monkeypatch):
    previews = []
    show_preview = register_module.show_preview
    monkeypatch.setattr(
        register_module,
        "show_preview",
        lambda *args: previews.append(args[2].shape) or show_preview(*args),
    )
    widget = _register(viewer)
    widget.method.value = "optimise"
    assert widget.trained.native.isHidden() and not widget.optimise.metric.native.isHidden()
    assert widget.optimise.extractor.native.isHidden()  # ncc needs no extractor
    widget.optimise.metric.value = "deepsim"
    assert not widget.optimise.extractor.native.isHidden()
    widget.optimise.metric.value = "ncc"
    widget.optimise.iterations.value = "20,10"
    steps, ticks, arrivals = [], [], []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start(10)
    worker = widget.register()
    worker.yielded.connect(steps.append)
    worker.yielded.connect(lambda step: arrivals.append((time.perf_counter(), step.text)))
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    timer.stop()
    assert errors == []
    for name in ("moving warped", "moving labels warped", "moving grid", "moving Jacobian"):
        assert name in viewer.layers
    assert "moving preview" not in viewer.layers  # the result replaced the live preview
    before, after = _dice(widget)
    assert after > before + 0.02
    assert "iterations of ncc, loss at full resolution" in widget.results.text()
    iterations = [s for s in steps if "iteration" in s.text]
    levels = {"level 1/2 (1/2 resolution)", "level 2/2 (full resolution)"}
    assert {s.text.split(",")[0] for s in iterations} == levels
    # each level is a segment of its own on the plot, and the last (full resolution) one
    # ends at the summary's loss: the live number and the summary are the same quantity
    assert [name for _, name in widget.plot.segments] == ["L1", "L2"]
    start = widget.plot.segments[1][0]
    summary = float(re.search(r"-> (\S+)", widget.results.text().splitlines()[0]).group(1))
    full = min(loss for _, loss in widget.plot.losses[start:])
    assert summary == pytest.approx(full, abs=1e-4)
    done = [s.done for s in steps]
    assert done == sorted(done) and done[-1] == steps[-1].total == worker.pbar.total
    assert steps[-1].total == register_module.STAGES + 30  # the planned 20 + 10 iterations
    assert previews == [(128, 128)]  # the coarse level's best, on the fine level's grid
    run = int(widget.results.text().split(" iterations")[0])
    assert len(widget.plot.losses) == run  # every iteration's loss reached the curve
    # while the worker optimised, the GUI thread kept ticking (a job on the GUI thread
    # leaves no tick between its steps); the longest pause, napari adding the preview
    # layer, is measured by benchmarks/bench_gui_gap.py, not timed here on a busy CPU
    iterating = [t for t, text in arrivals if "iteration" in text]
    during = np.array([t for t in ticks if iterating[0] <= t <= iterating[-1]])
    assert len(during) > 1 and np.median(np.diff(during)) < 0.1
    assert np.diff(during).max() < 1.5


def test_refining_a_model_is_at_least_as_good(viewer, qtbot, files, errors):
    widget = _register(viewer)
    widget.set_model(files["shift"])
    _run(widget, qtbot)
    model_dice = _dice(widget)[1]
    count = len(viewer.layers)
    widget.method.value = "model + refine"
    assert not widget.trained.native.isHidden() and not widget.optimise.metric.native.isHidden()
    assert widget.optimise.iterations.label == "refine iterations"
    assert widget.optimise.iterations.value == ",".join(map(str, REFINE_ITERATIONS))
    assert widget.optimise.metric.value == OWN  # the model's metric, as --refine own
    model = load_model(files["shift"])
    config = optimisation(widget.optimise.spec(), 2, model).config  # the command line's
    assert config.iterations == REFINE_ITERATIONS and config.lam_scale == REFINE_LAM_SCALE
    widget.optimise.iterations.value = "20,10"
    _run(widget, qtbot)
    assert errors == []
    assert widget.results.text().startswith("refining the model, ")
    assert _dice(widget)[1] >= model_dice
    assert len(viewer.layers) == count  # the result layers took the new data
    assert "moving preview" not in viewer.layers
    widget.method.value = "optimise"  # an unedited default follows the method
    assert widget.optimise.iterations.value == "20,10"


def test_refining_defaults_to_the_models_own_metric_as_the_command_line(
    viewer, qtbot, files, errors
):
    widget = _register(viewer)
    widget.set_model(files["mse"])
    widget.method.value = "model + refine"
    assert widget.optimise.metric.value == OWN
    assert widget.optimise.extractor.native.isHidden()  # the model brings its own
    spec = widget.optimise.spec()
    model = load_model(files["mse"])
    widget_refinement = optimisation(spec, 2, model)
    command_line = own_refinement(model, ndim=2, channels=1)  # deepsim evaluate --refine own
    assert widget_refinement.name == command_line.name == "mse"
    assert widget_refinement.config == command_line.config
    _run(widget, qtbot)
    assert errors == []
    assert re.match(r"refining the model, \d+ iterations of mse, loss", widget.results.text())
    widget.method.value = "optimise"  # from the identity the default metric comes back
    assert widget.optimise.metric.value == "ncc"
    assert OWN not in widget.optimise.metric.choices


def test_stop_ends_within_one_iteration_and_shows_the_best_field(
    viewer, qtbot, errors, monkeypatch
):
    polls = []
    run = register_module.run

    def spy(job, stop):
        def watched():
            polls.append(stop())
            return polls[-1]

        return (yield from run(job, stop=watched))

    monkeypatch.setattr(register_module, "run", spy)
    widget = _register(viewer)
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "500,500"
    pressed = []

    def press_stop(step):
        if "iteration" in step.text and not pressed:
            pressed.append(time.perf_counter())
            widget.register_button.native.click()

    worker = widget.register()
    assert widget.register_button.text == "Stop" and widget.register_button.enabled
    worker.yielded.connect(press_stop)
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert pressed and time.perf_counter() - pressed[0] < 10
    assert errors == []
    assert polls.count(True) == 1  # the engine saw the stop once and ran nothing after it
    text = widget.results.text()
    assert f"{polls.index(True)} iterations of ncc, stopped" in text
    assert polls.index(True) < 1000
    assert "moving warped" in viewer.layers and widget.field.shape == (2, 128, 128)
    assert widget.register_button.text == "Register"


def test_a_double_click_on_register_runs_once_and_does_not_stop_it(viewer, qtbot, errors):
    widget = _register(viewer)
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "20,10"
    widget.register_button.native.click()
    widget.register_button.native.click()  # the second click of a double click
    assert widget.running and widget.register_button.text == "Stop"
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert errors == []
    text = widget.results.text()
    done = int(re.search(r"(\d+) iterations of ncc", text).group(1))
    assert done > 0 and "stopped" not in text
    assert "moving warped" in viewer.layers


def test_a_run_stopped_before_its_first_iteration_keeps_the_previous_results(viewer, qtbot, errors):
    widget = _register(viewer)
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "20,10"
    _run(widget, qtbot)
    names = [layer.name for layer in viewer.layers]
    before = viewer.layers["moving warped"].data.copy()
    widget.register()
    widget.ask_to_stop()  # before the job has run one iteration
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert errors == []
    assert "stopped before the first iteration" in widget.results.text()
    assert [layer.name for layer in viewer.layers] == names
    np.testing.assert_array_equal(viewer.layers["moving warped"].data, before)
    assert widget.register_button.text == "Register"


def test_removing_the_moving_layer_during_a_run_says_so_and_adds_nothing(
    viewer, qtbot, errors, monkeypatch
):
    warnings: list[str] = []
    monkeypatch.setattr(dock_module, "show_warning", warnings.append)
    widget = _register(viewer)
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "500,500"
    names = [layer.name for layer in viewer.layers]

    def remove_moving(step):
        if "iteration" in step.text and "moving" in viewer.layers:
            viewer.layers.remove("moving")

    worker = widget.register()
    worker.yielded.connect(remove_moving)
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    qtbot.wait(200)  # anything still queued for the GUI thread arrives
    assert errors == []
    assert warnings == [
        "The moving layer 'moving' was removed from the viewer during the run; the run is "
        "stopped and no result layers are added for it."
    ]
    assert [layer.name for layer in viewer.layers] == [n for n in names if n != "moving"]
    assert "was removed" in widget.results.text()
    assert widget.register_button.text == "Register"


def test_a_stack_optimises_every_frame(viewer, qtbot, errors):
    widget = _register(viewer, "noisy_cell_timelapse")
    stack, labels = viewer.layers["noisy cells"], viewer.layers["noisy cells labels"]
    widget.fixed.value = widget.moving.value = stack
    widget.moving_labels.value = widget.fixed_labels.value = labels
    widget.reference.value = "previous"
    widget.show_checkerboard.value = False
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "20,10"
    steps = []
    _run(widget, qtbot, steps)
    assert errors == []
    for name in ("noisy cells warped", "noisy cells labels warped", "noisy cells grid"):
        assert viewer.layers[name].data.shape == (8, 128, 128)
    assert widget.field.shape == (8, 2, 128, 128)
    np.testing.assert_array_equal(widget.field[0], 0)
    assert any(s.text.startswith("frame pair 7/7: ") for s in steps)
    before, after = _dice(widget)
    assert after > before


def test_a_stopped_stack_says_which_frame_pairs_ran_and_leaves_the_rest_as_they_were(
    viewer, qtbot, errors
):
    widget = _register(viewer, "noisy_cell_timelapse")
    stack, labels = viewer.layers["noisy cells"], viewer.layers["noisy cells labels"]
    widget.fixed.value = widget.moving.value = stack
    widget.moving_labels.value = widget.fixed_labels.value = labels
    widget.reference.value = "previous"
    widget.method.value = "optimise"
    widget.optimise.iterations.value = "20,10"

    def press_stop(step):  # in the third frame pair: pairs 1→0 and 2→1 are done
        if step.text.startswith("frame pair 3/7: ") and not widget.stop_event.is_set():
            widget.register_button.native.click()

    worker = widget.register()
    worker.yielded.connect(press_stop)
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert errors == []
    text = widget.results.text()
    assert "frame pairs 1→0, 2→1, 3→2 of 7 optimised; the other frames are as they were" in text
    np.testing.assert_array_equal(widget.field[4:], 0)
    assert np.abs(widget.field[1:4]).max() > 0.01
    original = np.asarray(stack.data, np.float32)
    warped = viewer.layers["noisy cells warped"].data
    np.testing.assert_allclose(warped[4:], original[4:], atol=1e-5 * np.abs(original).max())
    np.testing.assert_array_equal(
        viewer.layers["noisy cells labels warped"].data[4:], labels.data[4:]
    )
    assert np.abs(warped[3] - original[3]).mean() > 1e-3  # the pairs that ran moved


def test_deepsim_uses_an_extractor_trained_here_and_refuses_none(viewer, qtbot, files, errors):
    widget = _register(viewer)
    widget.method.value = "optimise"
    widget.optimise.metric.value = "deepsim"
    assert widget.register() is None
    assert errors == [EXTRACTOR_MESSAGE]
    trained_models.append(TrainedModel("segmentation extractor #1", load_model(files["features"])))
    assert widget.optimise.extractor.value is not None  # the new extractor is chosen
    widget.optimise.iterations.value = "5"
    _run(widget, qtbot)
    assert errors == [EXTRACTOR_MESSAGE]
    # picking deepsim optimises with the measured best variant, named in the results
    assert "iterations of deepsim-seg+ncc" in widget.results.text()
    widget.optimise.metric.value = "deepsim-ae"
    _run(widget, qtbot)
    assert "compares the features of an autoencoder extractor" in errors[-1]
    assert "choose the deepsim metric" in errors[-1]


def test_the_extractor_picker_offers_the_builtin_extractors(viewer, qtbot, errors):
    widget = _register(viewer)
    widget.method.value = "optimise"
    widget.optimise.metric.value = "deepsim"
    names = [name for _, name in builtin_choices("features")]
    assert names and set(names) <= set(widget.optimise.extractor.choices)
    assert widget.optimise.extractor.value is None  # offered, not imposed
    widget.optimise.extractor.value = names[0]
    widget.optimise.iterations.value = "3"
    _run(widget, qtbot)
    assert errors == []
    assert "iterations of deepsim-seg+ncc" in widget.results.text()
    assert "moving warped" in viewer.layers


def _cells(widget):
    return [
        [widget.table.item(r, c).text() for c in range(widget.table.columnCount())]
        for r in range(widget.table.rowCount())
    ]


def test_compare_shows_optimisation_rows(viewer, qtbot, files, errors):
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Compare metrics")
    assert isinstance(widget, CompareWidget)
    widget.add_model_files([files["shift"]])
    widget.optimise.iterations.value = "20,10"
    assert widget.add_optimisation() == "optimise: ncc"
    widget.optimise.metric.value = "mse"
    assert widget.add_optimisation() == "optimise: mse"
    assert widget.refine_selected() == []  # nothing selected yet
    assert errors[-1].startswith("No model is selected")
    first = len(builtin_choices())  # the built-in models are listed first, unticked
    widget.models.item(first).setSelected(True)
    assert widget.refine_selected() == ["shift + refine: mse"]
    refined = widget.rows.optimisations["shift + refine: mse"].optimise
    assert refined.refine and refined.iterations == (20, 10)  # edited iterations are kept
    assert not widget.rows.optimisations["optimise: mse"].optimise.refine
    widget.optimise.metric.value = "deepsim"
    assert widget.add_optimisation() is None
    assert errors[-1] == EXTRACTOR_MESSAGE
    worker = widget.compare()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=120000)
    assert len(errors) == 2
    assert worker.pbar.total == 4 * 100
    rows = _cells(widget)
    names = ["identity", "shift", "optimise: ncc", "optimise: mse", "shift + refine: mse"]
    assert [row[0] for row in rows] == names
    dice = {row[0]: float(row[1]) for row in rows}
    assert dice["optimise: ncc"] > dice["identity"] and dice["optimise: mse"] > dice["identity"]
    assert dice["shift + refine: mse"] >= dice["shift"]
    assert all(float(row[4]) > 0 for row in rows[1:])
    assert "optimise: ncc warped" in viewer.layers and "shift + refine: mse grid" in viewer.layers
    widget.models.item(first + 3).setCheckState(Qt.CheckState.Unchecked)  # rows can be unticked
    assert [entry.name for entry in widget.rows.entries()] == names[1:4]
    widget.models.clearSelection()
    widget.models.item(first + 1).setSelected(True)
    widget.rows.remove_clicked()  # and removed
    assert [widget.models.item(i).text() for i in range(widget.models.count())][first:] == [
        "shift",
        "optimise: mse",
        "shift + refine: mse",
    ]


def test_the_progress_plan_counts_the_linear_stage_where_it_runs():
    from napari_deepsim._jobs.optimise import OptimiseSpec
    from napari_deepsim._jobs.progress import Tracker

    tracker = Tracker(stages=2)
    spec = OptimiseSpec("ncc", (100, 50, 25, 5), linear="affine")
    tracker.plan(optimisation(spec, 2), (256, 256), pairs=3)
    linear = [key for key in tracker.schedule if key[0] == "affine"]
    assert linear == [("affine", 0), ("affine", 1)]  # not on the two finest levels
    assert tracker.per_pair == 2 * 50 + 180 and tracker.total == 2 + 3 * 280
