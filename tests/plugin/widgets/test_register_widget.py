"""The Register widget end to end in a real viewer, on the built-in synthetic sample."""

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
import torch
from napari.layers import Image, Labels, Points, Vectors

import napari_deepsim
import napari_deepsim._widgets.register.widget as register_module
from napari_deepsim._layers.choices import SOURCE
from napari_deepsim._state.models import builtin_choices, trained_models
from napari_deepsim._widgets.register.widget import RegisterWidget
from src_training.networks.modelio import load_model, save_model
from src_training.networks.models import FeatureExtractor, RegistrationNet

pytestmark = pytest.mark.gui

SHIFT = (1.5, -2.5)  # the head bias: a clearly non-zero, fold-free field
SCALE, TRANSLATE = (0.5, 0.5), (10.0, 20.0)


def _registration_model(path, ndim=2):
    torch.manual_seed(0)
    net = RegistrationNet(ndim, channels=(4, 8))
    with torch.no_grad():
        net.unet.head.bias.copy_(torch.tensor(SHIFT[:ndim] + (1.0,) * (ndim - 2)))
    return save_model(path, net, {"metric": "ncc"})


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    features = FeatureExtractor(2, 1, 3, channels=(4, 8))
    return {
        "2d": _registration_model(folder / "reg2d.pt"),
        "3d": _registration_model(folder / "reg3d.pt", ndim=3),
        "features": save_model(folder / "features.pt", features, {}),
    }


def _pair_widget(make_napari_viewer, model=None, show=False):
    viewer = make_napari_viewer(show=show)
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    for name in ("fixed", "moving"):  # one grid: the moving layer is not resampled
        viewer.layers[name].scale = SCALE
        viewer.layers[name].translate = TRANSLATE
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    assert isinstance(widget, RegisterWidget)
    if model is not None:
        widget.set_model(model)
    return viewer, widget


def _run(widget, qtbot):
    worker = widget.register()
    assert worker is not None and worker.pbar.total == register_module.STAGES
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)
    assert widget.register_button.text == "Register"


def _outputs(viewer):
    return [layer for layer in viewer.layers if SOURCE in layer.metadata]


def test_register_adds_every_output_on_the_fixed_grid(
    make_napari_viewer, qtbot, models, errors, monkeypatch
):
    threads = []

    def spy(job, **options):
        threads.append(threading.current_thread())
        return (yield from run(job, **options))

    run = register_module.run
    monkeypatch.setattr(register_module, "run", spy)
    viewer, widget = _pair_widget(make_napari_viewer, models["2d"])
    assert widget.fixed.value is viewer.layers["fixed"]  # the sample's layers are preselected
    assert widget.moving_labels.value is viewer.layers["moving labels"]
    extra = viewer.add_image(viewer.layers["moving"].data * 2, name="moving copy")
    widget.extras.value = [extra]
    _run(widget, qtbot)
    assert errors == []
    assert threads and threads[0] is not threading.main_thread()  # never on the GUI thread
    names = {layer.name for layer in _outputs(viewer)}
    assert names == {
        "moving warped",
        "moving labels warped",
        "moving copy warped",
        "moving grid",
        "moving Jacobian",
        "moving folds",
        "moving checkerboard",
    }
    for layer in _outputs(viewer):
        np.testing.assert_array_equal(layer.scale, SCALE)
        np.testing.assert_array_equal(layer.translate, TRANSLATE)
        assert layer.data.shape == (128, 128)
    grid = viewer.layers["moving grid"].data  # the warped lines drawn as an image
    np.testing.assert_array_equal(grid[0, 3:11], 0)  # row 0's line moved to row 1.5 by u
    np.testing.assert_allclose(grid[1:3, 3:11], 0.5, atol=0.01)  # half on each row
    assert grid[3:16, 3:11].max() == 0
    assert isinstance(viewer.layers["moving labels warped"], Labels)
    assert isinstance(viewer.layers["moving folds"], Image)
    assert viewer.layers["moving folds"].data.max() == 0
    jacobian = viewer.layers["moving Jacobian"]
    assert jacobian.contrast_limits == [0.0, 2.0]
    np.testing.assert_allclose(widget.field.mean(axis=(1, 2)), SHIFT, atol=0.05)
    warped, copy = viewer.layers["moving warped"].data, viewer.layers["moving copy warped"].data
    np.testing.assert_allclose(copy, 2 * warped, rtol=1e-5, atol=1e-5)
    assert not np.allclose(warped, viewer.layers["moving"].data)
    text = widget.results.text()
    assert text.startswith("Dice 0.") and " -> 0." in text
    assert "% folding" in text and "sdlogj" in text and " s on cpu" in text

    count = len(viewer.layers)
    _run(widget, qtbot)  # re-running replaces the outputs of this moving layer
    assert len(viewer.layers) == count
    widget.keep.value = True  # keeping them numbers the new ones instead
    _run(widget, qtbot)
    assert {layer.name for layer in _outputs(viewer)} == names | {f"{n} #2" for n in names}
    assert not any("[" in layer.name for layer in viewer.layers)
    widget.keep.value = False
    _run(widget, qtbot)  # the unnumbered ones are replaced, the kept ones stay
    assert len(viewer.layers) == count + len(names)
    assert errors == []


def _applied(viewer, widget, layer, qtbot):
    """Apply the field to an image or labels layer; wait for the worker's warped copy."""
    key = f"applied:{layer.unique_id}"

    def added():
        return [lay for lay in viewer.layers if lay.metadata.get(SOURCE) == key]

    before = added()
    assert widget.apply_field(layer) is not None  # a worker: the GUI thread does not warp
    qtbot.waitUntil(lambda: any(lay not in before for lay in added()), timeout=30000)
    return next(lay for lay in added() if lay not in before)


def test_field_save_load_and_apply(make_napari_viewer, qtbot, models, errors, tmp_path):
    viewer, widget = _pair_widget(make_napari_viewer, models["2d"])
    widget.show_checkerboard.value = False
    _run(widget, qtbot)
    target = viewer.add_image(viewer.layers["moving"].data, name="other channel")
    layer = _applied(viewer, widget, target, qtbot)
    np.testing.assert_allclose(layer.data, viewer.layers["moving warped"].data, atol=1e-5)
    np.testing.assert_array_equal(layer.scale, SCALE)  # the field's grid is the fixed layer's
    field = widget.field.copy()
    saved = widget.save_field(tmp_path / "field.npy")
    assert saved == str(tmp_path / "field.npy")
    widget.field_controls.field = None
    np.testing.assert_array_equal(widget.load_field(saved), field)
    count = len(viewer.layers)
    again = _applied(viewer, widget, target, qtbot)  # again: replaces the earlier result
    assert len(viewer.layers) == count
    np.testing.assert_allclose(again.data, layer.data)
    np.testing.assert_array_equal(again.scale, target.scale)  # a file has no grid: the target's
    labels = _applied(viewer, widget, viewer.layers["fixed labels"], qtbot)
    assert isinstance(labels, Labels) and labels.data.dtype == viewer.layers["fixed labels"].dtype
    assert set(np.unique(labels.data)) <= {0, 1, 2}
    # The napari reader opens the saved field as one layer per axis.
    before = len(viewer.layers)
    viewer.open(saved, plugin="napari-deepsim")
    assert [layer.name for layer in viewer.layers[before:]] == ["field axis 0", "field axis 1"]
    assert errors == []


def test_bad_inputs_are_reported_and_the_viewer_keeps_working(
    make_napari_viewer, qtbot, models, errors, tmp_path
):
    viewer, widget = _pair_widget(make_napari_viewer)
    widget.trained.value = None  # clear the built-in model chosen when the widget opens
    assert widget.register() is None
    assert "no model chosen" in errors[-1].lower()

    for model, message in (
        (models["features"], "features model"),
        (models["3d"], "registers 3D images"),
    ):
        widget.set_model(model)
        assert widget.register() is None  # refused before any work
        assert message in errors[-1]

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"definitely not a model")
    widget.set_model(garbage)
    assert widget.model_info.value.startswith("cannot use this file: ")
    assert widget.register() is None
    assert "not a napari-deepsim model file" in errors[-1]

    widget.set_model(load_model(models["features"]))
    assert "features model" in errors[-1]
    widget.set_model(models["2d"])
    small = viewer.add_labels(np.zeros((64, 64), np.uint8), name="small labels")
    widget.moving_labels.value = small
    assert widget.register() is None
    assert "have shape (64, 64)" in errors[-1]

    (tmp_path / "bad.npy").write_bytes(b"nope")
    assert widget.load_field(tmp_path / "bad.npy") is None
    assert widget.apply_field(viewer.layers["moving"]) is None  # no field yet
    assert len(errors) == 8 and all(e.endswith(".") for e in errors)
    assert not _outputs(viewer)

    widget.moving_labels.value = viewer.layers["moving labels"]
    _run(widget, qtbot)  # the widget still works after all that
    assert "moving warped" in viewer.layers


def test_time_lapse_registers_every_frame_to_its_predecessor(
    make_napari_viewer, qtbot, models, errors
):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    stack, labels = viewer.layers["noisy cells"], viewer.layers["noisy cells labels"]
    widget.fixed.value = widget.moving.value = stack
    widget.moving_labels.value = widget.fixed_labels.value = labels
    assert not widget.reference.native.isHidden()  # the stack reference control shows
    widget.reference.value = "previous"
    widget.show_checkerboard.value = False
    model = load_model(models["2d"])
    widget.set_model(model)  # a model another widget trained in this viewer
    assert widget.trained.value is model
    assert [name for name, m in widget.model_panel.choices() if m is model] == ["ncc model (given)"]
    assert widget.model_info.value.startswith("2D, 1 channel, metric ncc; trained on ")
    assert widget.model_info.value.endswith("(trained here)")
    widget.model_file.value = models["2d"]  # choosing a file replaces the trained model
    assert widget.trained.value is None and widget.model_info.value.endswith("(reg2d.pt)")
    widget.set_model(model)
    _run(widget, qtbot)
    assert errors == []
    for name, kind in (
        ("noisy cells warped", Image),
        ("noisy cells labels warped", Labels),
        ("noisy cells Jacobian", Image),
        ("noisy cells folds", Image),
        ("noisy cells grid", Image),
    ):
        assert isinstance(viewer.layers[name], kind)
        assert viewer.layers[name].data.shape == (8, 128, 128)
    assert widget.field.shape == (8, 2, 128, 128)
    np.testing.assert_array_equal(widget.field[0], 0)  # frame 0 is the reference
    assert "Dice" in widget.results.text()


def test_a_built_in_model_registers_two_sections_with_no_training(
    make_napari_viewer, qtbot, models, errors, monkeypatch
):
    warnings = []
    monkeypatch.setattr(register_module, "show_warning", warnings.append)
    run = register_module.run

    def unlike(job, **options):  # the data-profile check's lines, as the engine gives them
        result = yield from run(job, **options)
        result.warnings = ["the data is darker than em-2d's", "it is noisier too"]
        return result

    monkeypatch.setattr(register_module, "run", unlike)
    trained_models.clear()  # no model trained by an earlier test
    viewer, widget = _pair_widget(make_napari_viewer)
    builtins = builtin_choices()
    assert builtins and widget.trained.value == builtins[0][1]  # chosen when the widget opens
    given = load_model(models["2d"])
    widget.set_model(given)
    choices = widget.model_panel.choices()
    assert choices[: len(builtins)] == builtins  # the built-in models first, then trained ones
    assert choices[-1][1] is given
    texts = [widget.trained.native.itemText(i) for i in range(widget.trained.native.count())]
    shown = texts[-len(choices) :][: len(builtins)]  # after the empty choice
    assert shown == [text for text, _ in builtins]  # each with its one-line description
    widget.set_model(builtins[0][1])
    assert widget.trained.value == builtins[0][1]
    assert widget.model_info.value.endswith("(built-in)")
    _run(widget, qtbot)
    assert errors == []
    assert "moving warped" in viewer.layers
    assert warnings == ["the data is darker than em-2d's", "it is noisier too"]
    loaded = widget.model_panel.source()  # the built-in model read once is kept for the next run
    assert not isinstance(loaded, str) and loaded.kind == "registration"
    widget.model_file.value = models["2d"]  # a model file replaces the built-in model
    source = widget.model_panel.source()  # read when it was picked, to show what it is
    assert widget.trained.value is None and source is not loaded and source.kind == "registration"
    assert widget.model_info.value.endswith("(reg2d.pt)")


def test_3d_volumes_get_a_grid_on_every_slice_fold_points_and_3d_vectors(
    make_napari_viewer, qtbot, models
):
    viewer = make_napari_viewer()
    rng = np.random.default_rng(0)
    fixed = viewer.add_image(rng.random((12, 20, 16)).astype(np.float32), name="fixed volume")
    fixed.scale, fixed.translate = (2.0, 0.5, 0.5), (1.0, 10.0, 20.0)
    moving = viewer.add_image(rng.random((10, 16, 16)).astype(np.float32), name="moving volume")
    moving.translate = fixed.translate  # overlapping in the world, or nothing is left to align
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    widget.fixed.value, widget.moving.value = fixed, moving
    widget.show_vectors.value = True
    widget.set_model(models["3d"])
    viewer.dims.set_point(0, 1.0 + 2.0 * 4)  # the 2D view shows the fixed volume's slice 4
    _run(widget, qtbot)
    grid = viewer.layers["moving volume grid"]
    assert isinstance(grid, Image) and grid.data.shape == (12, 20, 16)
    for name in ("grid", "Jacobian"):  # the 3D view's plane starts on that slice
        layer = viewer.layers[f"moving volume {name}"]
        assert layer.depiction == "plane" and layer.plane.position[0] == 4
    assert grid.data.max(axis=(1, 2)).min() > 0.5  # warped lines on every slice
    for name in ("warped", "grid", "Jacobian", "checkerboard"):
        layer = viewer.layers[f"moving volume {name}"]
        assert layer.data.shape == (12, 20, 16)  # moving resampled onto the fixed grid
        np.testing.assert_array_equal(layer.scale, fixed.scale)
        np.testing.assert_array_equal(layer.translate, fixed.translate)
    assert isinstance(viewer.layers["moving volume folds"], Points)
    vectors = viewer.layers["moving volume displacement"]
    assert isinstance(vectors, Vectors) and vectors.data.shape[1:] == (2, 3)
    assert widget.field.shape == (3, 12, 20, 16)
    assert "Dice" not in widget.results.text()


def test_screenshot_shows_the_deformation_grid(make_napari_viewer, qtbot, models, tmp_path):
    viewer, widget = _pair_widget(make_napari_viewer, models["2d"], show=True)  # to render
    _run(widget, qtbot)
    grid = viewer.layers["moving grid"]
    for layer in viewer.layers:
        layer.visible = layer is grid
    viewer.reset_view()
    with_grid = viewer.screenshot(canvas_only=True)
    grid.visible = False
    without = viewer.screenshot(canvas_only=True)
    PIL.Image.fromarray(with_grid).save(tmp_path / "grid_screenshot.png")
    changed = np.any(with_grid[..., :3] != without[..., :3], axis=-1)
    assert changed.mean() > 0.01
    # The changed pixels are yellow: strong red and green, little blue.
    red, green, blue = (with_grid[changed][:, i].astype(int) for i in range(3))
    assert np.median(red) > 150 and np.median(green) > 150 and np.median(blue) < 100


PLUGIN = Path(napari_deepsim.__file__).parent
MODULES = sorted(
    ".".join(path.relative_to(PLUGIN).with_suffix("").parts)
    for path in PLUGIN.rglob("*.py")
    if path.name != "__init__.py"
)


@pytest.mark.parametrize("module", MODULES)
def test_importing_any_plugin_module_does_not_import_torch(module):
    # every module of the plugin, found on disk: napari imports them when it starts
    code = (
        f"import sys, napari_deepsim.{module}; "
        "sys.exit('torch' in sys.modules or 'src_training.registration.inference' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


WIDGETS = {
    "Register": "RegisterWidget",
    "Compare metrics": "CompareWidget",
    "Train feature extractor": "TrainFeaturesWidget",
    "Train registration model": "TrainRegistrationWidget",
    "Big stack": "BigStackWidget",
}


def test_every_widget_is_in_layers_register_and_opens(make_napari_viewer):
    import npe2

    manifest = npe2.PluginManifest.from_distribution("napari-deepsim")
    widgets = {w.display_name: w.command for w in manifest.contributions.widgets}
    assert sorted(widgets) == sorted(WIDGETS)
    menu = manifest.contributions.menus["napari/layers/register"]
    assert sorted(item.command for item in menu) == sorted(widgets.values())
    viewer = make_napari_viewer()
    for name, cls in WIDGETS.items():
        dock, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", name)
        assert dock.name.startswith(name) and type(widget).__name__ == cls
    assert {r.command for r in manifest.contributions.readers} == {
        "napari-deepsim.get_reader",
        "napari-deepsim.get_volume_reader",
    }
    assert {w.command for w in manifest.contributions.writers} == {
        "napari-deepsim.write_displacement"
    }
