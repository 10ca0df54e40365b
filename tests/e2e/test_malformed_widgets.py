"""Malformed input through the napari widgets: one notification, and the viewer keeps working.

Each case sets up the built-in sample pair in a real viewer, does one wrong thing with a
widget (or lets its worker fail), and checks that exactly one error notification names
the problem and a fix, no input layer lost or changed data, nothing is left running, and
the viewer still takes a new layer. The second table of docs/errors.md documents every
case; a test compares the two.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from test_malformed import FIX, matches

from napari_deepsim._state.models import trained_models
from napari_deepsim._widgets.bigstack.widget import BigStackWidget
from napari_deepsim._widgets.compare.widget import CompareWidget
from napari_deepsim._widgets.register.widget import RegisterWidget
from napari_deepsim._widgets.train.widget import TrainFeaturesWidget, TrainRegistrationWidget
from src_training.networks.modelio import save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet

pytestmark = pytest.mark.gui
DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
ROW = re.compile(r"\| `(napari-[a-z0-9-]+)` \| (.+) \| (.+) \|")
# widgets name fixes with a few more verbs than the command line ("pick a file")
WIDGET_FIX = re.compile(rf"{FIX.pattern}|\b(pick|apply|paint|split|draw|tick|add|load|press)\b")
# the Plugins menu names of the widgets (napari.yaml)
MENU = {
    RegisterWidget: "Register",
    TrainFeaturesWidget: "Train feature extractor",
    TrainRegistrationWidget: "Train registration model",
    CompareWidget: "Compare metrics",
    BigStackWidget: "Big stack",
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("widget-models")
    torch.manual_seed(0)
    corrupt = folder / "corrupt.pt"
    corrupt.write_bytes(b"\x80\x02 half a model")
    return {
        "2d": save_model(folder / "r2d.pt", RegistrationNet(2, channels=(4, 8)), {}),
        "3d": save_model(folder / "r3d.pt", RegistrationNet(3, channels=(4, 8)), {}),
        "features": save_model(folder / "f.pt", FeatureExtractor(2, 1, 3, channels=(4, 8)), {}),
        "corrupt": corrupt,
    }


class Case:
    """The viewer, the widgets and what the case did, for the case functions."""

    def __init__(self, viewer, qtbot, models, tmp_path):
        self.viewer = viewer
        self.qtbot = qtbot
        self.models = models
        self.tmp_path = tmp_path
        self.widgets = []

    def open(self, cls):
        """Dock the widget as the Plugins menu does."""
        _, widget = self.viewer.window.add_plugin_dock_widget("napari-deepsim", MENU[cls])
        assert isinstance(widget, cls)
        self.widgets.append(widget)
        return widget

    def register(self, model=None):
        widget = self.open(RegisterWidget)
        if model is not None:
            widget.set_model(self.models[model])
        return widget

    def run(self, widget, start: Callable[[], object]) -> None:
        """Start the widget's job; if a worker starts, wait for it to fail."""
        if start() is not None:
            self.qtbot.waitUntil(lambda: not widget.running, timeout=30000)


def _register_without_layers(c):
    c.viewer.layers.clear()
    widget = c.register("2d")
    c.run(widget, widget.register)


def _register_rgb_layer(c):
    widget = c.register("2d")
    widget.moving.value = c.viewer.add_image(np.zeros((32, 32, 3), np.uint8), name="photo")
    c.run(widget, widget.register)


def _register_4d_layer(c):
    widget = c.register("2d")
    widget.moving.value = c.viewer.add_image(np.zeros((2, 3, 16, 16)), name="4d")
    c.run(widget, widget.register)


def _register_2d_with_3d(c):
    widget = c.register("2d")
    widget.moving.value = c.viewer.add_image(np.zeros((8, 16, 16)), name="volume")
    widget.moving_labels.value = None
    c.run(widget, widget.register)


def _align_centres_2d_with_3d(c):
    widget = c.register("2d")
    widget.moving.value = c.viewer.add_image(np.zeros((8, 16, 16)), name="volume")
    widget.pair.centre.changed.emit(True)


def _register_labels_of_another_shape(c):
    widget = c.register("2d")
    widget.moving_labels.value = c.viewer.add_labels(np.zeros((20, 20), np.uint8), name="other")
    c.run(widget, widget.register)


def _register_without_model(c):
    widget = c.register()
    widget.trained.value = None  # clear the built-in model chosen when the widget opens
    c.run(widget, widget.register)


def _register_missing_model_file(c):
    widget = c.register()
    widget.model_file.value = c.tmp_path / "gone.pt"
    c.run(widget, widget.register)


def _register_corrupt_model_file(c):
    widget = c.register("corrupt")
    c.run(widget, widget.register)


def _register_features_model(c):
    widget = c.register("features")
    c.run(widget, widget.register)


def _register_3d_model_on_2d(c):
    widget = c.register("3d")
    c.run(widget, widget.register)


def _register_nan_pixels(c):
    widget = c.register("2d")
    data = np.ones((32, 32), np.float32)
    data[3, 4] = np.nan
    widget.fixed.value = c.viewer.add_image(data, name="nan fixed")
    widget.moving.value = c.viewer.add_image(np.ones((32, 32), np.float32), name="plain")
    widget.fixed_labels.value = widget.moving_labels.value = None
    c.run(widget, widget.register)


def _register_single_pixel(c):
    widget = c.register("2d")
    widget.fixed.value = c.viewer.add_image(np.ones((1, 1), np.float32), name="dot")
    widget.fixed_labels.value = widget.moving_labels.value = None
    c.run(widget, widget.register)


def _register_lazy_stack_too_big(c):
    import dask.array as da

    widget = c.register("2d")
    big = da.zeros((600, 1024, 1024), dtype=np.float32, chunks=(1, 1024, 1024))  # 2.3 GiB, lazy
    widget.moving.value = c.viewer.add_image(big, name="big")
    c.run(widget, widget.register)


def _big_stack(c):
    widget = c.open(BigStackWidget)
    widget.stack.value = c.viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    widget.model_panel.set_model(c.models["2d"])
    return widget


def _bigstack_existing_store(c):
    widget = _big_stack(c)
    (c.tmp_path / "out.zarr").mkdir()
    widget.store.value = c.tmp_path / "out.zarr"
    c.run(widget, widget.register)


def _bigstack_bad_cluster(c):
    widget = _big_stack(c)
    widget.store.value = c.tmp_path / "out.zarr"
    widget.cluster.value = "lokal"
    c.run(widget, widget.register)
    assert not (c.tmp_path / "out.zarr").exists()


def _apply_field_before_register(c):
    widget = c.register("2d")
    widget.apply_field(c.viewer.layers["moving"])


def _apply_field_to_another_shape(c):
    widget = c.register()
    field = c.tmp_path / "field.npy"
    np.save(field, np.zeros((2, 128, 128), np.float32))
    widget.load_field(field)
    widget.apply_field(c.viewer.add_image(np.zeros((30, 30)), name="small"))


def _load_a_field_that_is_not_one(c):
    widget = c.register()
    path = c.tmp_path / "image.npy"
    np.save(path, np.zeros((128, 128), np.float32))
    widget.load_field(path)


def _save_field_before_register(c):
    widget = c.register()
    widget.save_field(c.tmp_path / "field.npy")


def _save_field_into_a_missing_folder(c):
    widget = c.register()
    field = c.tmp_path / "field.npy"
    np.save(field, np.zeros((2, 8, 8), np.float32))
    widget.load_field(field)
    widget.save_field(c.tmp_path / "no" / "such" / "folder" / "field.npy")


def _load_an_image_archive_as_a_field(c):
    widget = c.register()
    path = c.tmp_path / "images.npz"
    np.savez(path, images=np.zeros((3, 8, 8), np.float32))
    widget.load_field(path)


def _save_a_stack_field_for_itk(c):
    widget = c.register()
    field = c.tmp_path / "stack.npy"
    np.save(field, np.zeros((4, 2, 8, 8), np.float32))
    widget.load_field(field)
    widget.save_field(c.tmp_path / "field.mha")


def _apply_a_3d_field_to_2d_points(c):
    widget = c.register()
    field = c.tmp_path / "field.npy"
    np.save(field, np.zeros((3, 4, 8, 8), np.float32))
    widget.load_field(field)
    widget.apply_field(c.viewer.add_points(np.array([[1.0, 2.0]]), name="landmarks"))


def _features_without_labels(c):
    widget = c.open(TrainFeaturesWidget)
    widget.labels.value = None
    c.run(widget, widget.start)


def _features_labels_of_one_class(c):
    widget = c.open(TrainFeaturesWidget)
    widget.labels.value = c.viewer.add_labels(np.full((128, 128), 3, np.uint8), name="one class")
    c.run(widget, widget.start)


def _features_bad_channels(c):
    widget = c.open(TrainFeaturesWidget)
    widget.channels.value = "16,x"
    c.run(widget, widget.start)


def _features_missing_folder(c):
    widget = c.open(TrainFeaturesWidget)
    widget.folder.value = c.tmp_path / "no_dataset_here"
    widget.steps.value = 1
    c.run(widget, widget.start)


def _train_on_a_single_image(c):
    widget = c.open(TrainRegistrationWidget)
    widget.image.value = c.viewer.layers["fixed"]
    c.run(widget, widget.start)


def _train_deepsim_without_extractor(c):
    c.viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack")
    widget = c.open(TrainRegistrationWidget)
    widget.metric.value = "deepsim"
    c.run(widget, widget.start)


def _train_vgg_without_weights(c):
    c.viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack")
    widget = c.open(TrainRegistrationWidget)
    widget.metric.value = "vgg"
    c.run(widget, widget.start)


def _train_ncc_sup_without_labels(c):
    c.viewer.add_image(np.zeros((4, 32, 32), np.float32), name="stack")
    widget = c.open(TrainRegistrationWidget)
    widget.labels.value = None
    widget.metric.value = "ncc-sup"
    c.run(widget, widget.start)


def _compare_same_layer(c):
    widget = c.open(CompareWidget)
    widget.add_model_files([c.models["2d"]])
    widget.moving.value = widget.fixed.value
    c.run(widget, widget.compare)


def _compare_nothing_ticked(c):
    widget = c.open(CompareWidget)
    c.run(widget, widget.compare)


def _compare_missing_model_file(c):
    widget = c.open(CompareWidget)
    widget.add_model_files([c.tmp_path / "gone.pt"])


def _optimise(c, metric="ncc"):
    widget = c.register()
    widget.method.value = "optimise"
    widget.optimise.metric.value = metric
    return widget


def _optimise_deepsim_without_extractor(c):
    widget = _optimise(c, "deepsim")
    c.run(widget, widget.register)


def _optimise_missing_extractor_file(c):
    widget = _optimise(c, "deepsim")
    widget.optimise.extractor_file.value = c.tmp_path / "gone.pt"
    c.run(widget, widget.register)


def _optimise_extractor_of_another_kind(c):
    widget = _optimise(c, "deepsim-ae")
    widget.optimise.extractor_file.value = c.models["features"]
    c.run(widget, widget.register)


def _optimise_model_as_extractor(c):
    widget = _optimise(c, "deepsim")
    widget.optimise.extractor_file.value = c.models["2d"]
    c.run(widget, widget.register)


def _optimise_bad_iterations(c):
    widget = _optimise(c)
    widget.optimise.iterations.value = "20,x"
    c.run(widget, widget.register)


def _optimise_vgg_without_weights(c):
    widget = _optimise(c, "vgg")
    c.run(widget, widget.register)


def _optimise_ncc_sup_without_labels(c):
    widget = _optimise(c, "ncc-sup")
    widget.moving_labels.value = None
    c.run(widget, widget.register)


def _optimise_ncc_sup_on_a_stack(c):
    stack = c.viewer.add_image(np.zeros((3, 32, 32), np.float32), name="stack")
    widget = _optimise(c, "ncc-sup")
    widget.fixed.value = widget.moving.value = stack
    widget.fixed_labels.value = widget.moving_labels.value = None
    c.run(widget, widget.register)


def _optimise_a_2d_layer_as_a_stack(c):
    widget = _optimise(c)
    widget.moving.value = widget.fixed.value
    c.run(widget, widget.register)


def _refine_without_model(c):
    widget = c.register()
    widget.trained.value = None  # clear the built-in model chosen when the widget opens
    widget.method.value = "model + refine"
    c.run(widget, widget.register)


def _refine_with_own_metric_of_a_model_without_one(c):
    widget = c.register("2d")  # its file records no metric
    widget.method.value = "model + refine"  # the metric becomes the model's own
    c.run(widget, widget.register)


def _compare_refine_nothing_selected(c):
    widget = c.open(CompareWidget)
    widget.add_model_files([c.models["2d"]])
    widget.refine_selected()


def _compare_optimisation_without_extractor(c):
    widget = c.open(CompareWidget)
    widget.optimise.metric.value = "deepsim"
    widget.add_optimisation()


CASES = {
    "napari-register-without-layers": _register_without_layers,
    "napari-register-rgb-layer": _register_rgb_layer,
    "napari-register-4d-layer": _register_4d_layer,
    "napari-register-2d-with-3d": _register_2d_with_3d,
    "napari-align-centres-2d-with-3d": _align_centres_2d_with_3d,
    "napari-register-labels-of-another-shape": _register_labels_of_another_shape,
    "napari-register-without-model": _register_without_model,
    "napari-register-missing-model-file": _register_missing_model_file,
    "napari-register-corrupt-model-file": _register_corrupt_model_file,
    "napari-register-features-model": _register_features_model,
    "napari-register-3d-model-on-2d": _register_3d_model_on_2d,
    "napari-register-nan-pixels": _register_nan_pixels,
    "napari-register-single-pixel": _register_single_pixel,
    "napari-register-lazy-stack-too-big": _register_lazy_stack_too_big,
    "napari-bigstack-existing-store": _bigstack_existing_store,
    "napari-bigstack-bad-cluster": _bigstack_bad_cluster,
    "napari-apply-field-before-register": _apply_field_before_register,
    "napari-apply-field-to-another-shape": _apply_field_to_another_shape,
    "napari-load-a-field-that-is-not-one": _load_a_field_that_is_not_one,
    "napari-save-field-before-register": _save_field_before_register,
    "napari-save-field-into-a-missing-folder": _save_field_into_a_missing_folder,
    "napari-load-an-image-archive-as-a-field": _load_an_image_archive_as_a_field,
    "napari-save-a-stack-field-for-itk": _save_a_stack_field_for_itk,
    "napari-apply-a-3d-field-to-2d-points": _apply_a_3d_field_to_2d_points,
    "napari-features-without-labels": _features_without_labels,
    "napari-features-labels-of-one-class": _features_labels_of_one_class,
    "napari-features-bad-channels": _features_bad_channels,
    "napari-features-missing-folder": _features_missing_folder,
    "napari-train-on-a-single-image": _train_on_a_single_image,
    "napari-train-deepsim-without-extractor": _train_deepsim_without_extractor,
    "napari-train-vgg-without-weights": _train_vgg_without_weights,
    "napari-train-ncc-sup-without-labels": _train_ncc_sup_without_labels,
    "napari-compare-same-layer": _compare_same_layer,
    "napari-compare-nothing-ticked": _compare_nothing_ticked,
    "napari-compare-missing-model-file": _compare_missing_model_file,
    "napari-optimise-deepsim-without-extractor": _optimise_deepsim_without_extractor,
    "napari-optimise-missing-extractor-file": _optimise_missing_extractor_file,
    "napari-optimise-extractor-of-another-kind": _optimise_extractor_of_another_kind,
    "napari-optimise-model-as-extractor": _optimise_model_as_extractor,
    "napari-optimise-bad-iterations": _optimise_bad_iterations,
    "napari-optimise-vgg-without-weights": _optimise_vgg_without_weights,
    "napari-optimise-ncc-sup-without-labels": _optimise_ncc_sup_without_labels,
    "napari-optimise-ncc-sup-on-a-stack": _optimise_ncc_sup_on_a_stack,
    "napari-optimise-a-2d-layer-as-a-stack": _optimise_a_2d_layer_as_a_stack,
    "napari-refine-without-model": _refine_without_model,
    "napari-refine-own-metric-not-recorded": _refine_with_own_metric_of_a_model_without_one,
    "napari-compare-refine-nothing-selected": _compare_refine_nothing_selected,
    "napari-compare-optimisation-without-extractor": _compare_optimisation_without_extractor,
}


def documented() -> dict[str, str]:
    """The napari rows of docs/errors.md: case id to notification text."""
    rows = {}
    for line in DOC.read_text().splitlines():
        match = ROW.fullmatch(line)
        if match:
            rows[match[1]] = match[3].strip().strip("`").strip()
    return rows


def test_every_widget_case_is_documented():
    assert sorted(documented()) == sorted(CASES)
    assert len(CASES) >= 25


@pytest.mark.parametrize("name", list(CASES))
def test_widget_case_gives_one_notification_and_the_viewer_keeps_working(
    name, make_napari_viewer, qtbot, models, tmp_path, errors
):
    shown = errors
    trained_models.clear()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    before = {layer.name: np.array(layer.data, copy=True) for layer in viewer.layers}
    case = Case(viewer, qtbot, models, tmp_path)
    CASES[name](case)
    assert len(shown) == 1, shown
    message = shown[0].replace(f"{tmp_path}/", "")
    assert message.endswith(".") and "Traceback" not in message
    assert WIDGET_FIX.search(message.lower()), f"the notification names no fix: {message}"
    assert matches(documented()[name], message), f"docs/errors.md is stale: {message}"
    for layer_name, data in before.items():
        if layer_name in viewer.layers:
            np.testing.assert_array_equal(viewer.layers[layer_name].data, data)
    assert not any(getattr(widget, "running", False) for widget in case.widgets)
    viewer.add_image(np.zeros((8, 8)), name="still working")
    assert "still working" in viewer.layers
    trained_models.clear()
