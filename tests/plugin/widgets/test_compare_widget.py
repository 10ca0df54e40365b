"""The Compare metrics widget in a real viewer on the built-in synthetic pair."""

import numpy as np
import pytest
import torch
from napari.layers import Image
from qtpy.QtCore import QRect, Qt
from qtpy.QtWidgets import QAbstractButton, QApplication, QLabel, QScrollArea

import napari_deepsim._widgets.compare.widget as compare_module
from napari_deepsim._jobs.compare import PALETTE, zoom_box
from napari_deepsim._layers.choices import SOURCE
from napari_deepsim._state.models import TrainedModel, builtin_choices, trained_models
from napari_deepsim._widgets.compare.widget import CompareWidget
from src_training.metrics.dice import mean_dice
from src_training.networks.modelio import load_model, save_model
from src_training.networks.models import RegistrationNet

pytestmark = pytest.mark.gui

SCALE, TRANSLATE = (0.5, 0.5), (10.0, 20.0)
SHIFTS = {"left": (0.0, -3.0), "down": (2.0, 0.0)}
BUILTIN = [text for text, _ in builtin_choices()]  # listed first, unticked


def _model(path, shift, ndim=2):
    torch.manual_seed(0)
    net = RegistrationNet(ndim, channels=(4, 8))
    with torch.no_grad():
        net.unet.head.weight.zero_()
        net.unet.head.bias.copy_(torch.tensor(shift, dtype=torch.float32))
    return save_model(path, net, {"metric": "ncc"})


@pytest.fixture(scope="module")
def model_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("compare-models")
    files = {name: _model(folder / f"{name}.pt", shift) for name, shift in SHIFTS.items()}
    files["volume"] = _model(folder / "volume.pt", (1.0, 1.0, 1.0), ndim=3)
    return files


@pytest.fixture
def viewer(make_napari_viewer):
    trained_models.clear()
    viewer = make_napari_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    for name in ("fixed", "fixed labels", "moving", "moving labels"):  # one grid: no resampling
        viewer.layers[name].scale = SCALE
        viewer.layers[name].translate = TRANSLATE
    yield viewer
    trained_models.clear()


def _dock(viewer):
    """Open the widget as the Plugins menu does."""
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Compare metrics")
    assert isinstance(widget, CompareWidget)
    return widget


def _compare(widget, qtbot):
    worker = widget.compare()
    assert worker is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=30000)


def _cells(widget):
    return [
        [widget.table.item(r, c).text() for c in range(widget.table.columnCount())]
        for r in range(widget.table.rowCount())
    ]


def test_every_model_gets_layers_a_row_and_a_zoom_tile(
    viewer, qtbot, model_files, errors, monkeypatch
):
    import src_training.engine.registration as registration

    calls = []
    predict = registration.predict
    monkeypatch.setattr(
        registration, "predict", lambda *a, **k: calls.append(1) or predict(*a, **k)
    )
    trained_models.append(TrainedModel("ncc model #1", load_model(model_files["down"])))
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Compare metrics")
    assert isinstance(widget, CompareWidget)
    # the sample's layers are preselected by name
    assert widget.fixed.value is viewer.layers["fixed"]
    assert widget.moving_labels.value is viewer.layers["moving labels"]
    widget.add_model_files([model_files["left"]])
    assert [widget.models.item(i).text() for i in range(widget.models.count())] == [
        *BUILTIN,
        "ncc model #1",
        "left",
    ]
    _compare(widget, qtbot)
    assert errors == []
    assert len(calls) == 8  # per model a warm-up pass, then the fastest of three is timed

    fixed = viewer.layers["fixed"]
    for index, name in enumerate(["ncc model #1", "left"]):
        warped = viewer.layers[f"{name} warped"]
        grid = viewer.layers[f"{name} grid"]
        assert isinstance(warped, Image) and warped.data.shape == fixed.data.shape
        assert isinstance(grid, Image) and grid.metadata[SOURCE] == f"compare:{name}"
        np.testing.assert_allclose(warped.scale, SCALE)
        np.testing.assert_allclose(warped.translate, TRANSLATE)
        assert grid.colormap.name == PALETTE[index] and grid.blending == "additive"
        assert f"{name} Jacobian" in viewer.layers and f"{name} folds" in viewer.layers
    # a constant shift of (0, -3) pixels moves the column line at 16 three pixels left
    grid = viewer.layers["left grid"].data
    assert grid[1:16, 13].min() > 0.9 and grid[1:16, 14:16].max() == 0

    rows = _cells(widget)
    assert [row[0] for row in rows] == ["identity", "ncc model #1", "left"]
    before = mean_dice(viewer.layers["moving labels"].data, viewer.layers["fixed labels"].data)
    assert float(rows[0][1]) == pytest.approx(before, abs=1e-3)
    for row, outcome in zip(rows[1:], widget.outcomes, strict=True):
        assert float(row[1]) == pytest.approx(outcome.result.dice[1], abs=1e-3)
        assert float(row[2]) == 0.0  # a constant shift never folds
        assert float(row[4]) > 0.0
    # the Register widget does not offer the comparison's layers as inputs
    assert all(name in ("fixed", "moving") for name, _ in widget._images())

    zoom_layer = widget.draw_zoom()
    assert zoom_layer.mode == "add_rectangle"
    zoom_layer.add_rectangles(np.array([[20.0, 30.0], [59.0, 89.0]]))
    assert set(widget.zoom.zooms) == {"fixed", "moving", "ncc model #1", "left"}
    np.testing.assert_array_equal(widget.zoom.zooms["fixed"].image, fixed.data[20:60, 30:90])
    patch = widget.zoom.zooms["left"]
    assert patch.image.shape == (40, 60)
    np.testing.assert_allclose(patch.lines[0][:, 1], np.arange(60) - 3.0, atol=1e-4)
    assert widget.zoom.zooms["fixed"].lines == []
    assert len(widget.zoom.tiles.items) == 4  # a captioned tile per panel


def test_zoom_tiles_draw_each_grid_in_its_colour(viewer, qtbot, model_files):
    widget = _dock(viewer)
    widget.add_model_files([model_files["left"]])
    _compare(widget, qtbot)
    widget.draw_zoom().add_rectangles(np.array([[0.0, 0.0], [63.0, 63.0]]))
    # panels fixed, moving, left: a caption above each tile
    labels = [tile.findChildren(QLabel) for tile in widget.zoom.tiles.items]
    captions, images = zip(*labels, strict=True)
    assert [caption.text() for caption in captions] == ["fixed", "moving", "left"]
    tiles = [images[0].pixmap().toImage(), images[2].pixmap().toImage()]

    def yellow_pixels(image):
        image = image.convertToFormat(image.Format.Format_RGB32)  # bytes B, G, R, 255
        bits = image.constBits()
        bits.setsize(image.sizeInBytes())
        bgra = np.frombuffer(bits, np.uint8).reshape(image.height(), image.width(), 4)
        return int(np.sum((bgra[..., 2] > 200) & (bgra[..., 1] > 200) & (bgra[..., 0] < 80)))

    fixed_tile, model_tile = tiles
    assert yellow_pixels(fixed_tile) == 0
    assert yellow_pixels(model_tile) > 500


def test_a_model_that_cannot_run_fails_alone(viewer, qtbot, model_files, errors):
    widget = _dock(viewer)
    widget.add_model_files([model_files["volume"], model_files["left"]])
    _compare(widget, qtbot)
    rows = _cells(widget)
    assert rows[1][0] == "volume" and rows[1][1].startswith("failed: ")
    assert "3D" in rows[1][1]
    assert rows[2][0] == "left" and float(rows[2][1]) > 0
    assert len(errors) == 1 and errors[0].startswith("volume: ")
    assert "left warped" in viewer.layers and "volume warped" not in viewer.layers


def test_built_in_models_are_listed_first_unticked_and_named_by_name(
    viewer, qtbot, model_files, errors, monkeypatch
):
    warnings = []
    monkeypatch.setattr(compare_module, "show_warning", warnings.append)
    run = compare_module.run

    def unlike(job):  # the data-profile check's lines, as the engine gives them
        outcomes = yield from run(job)
        for outcome in outcomes:
            outcome.result.warnings = [f"unlike {outcome.name}'s training data"]
        return outcomes

    monkeypatch.setattr(compare_module, "run", unlike)
    widget = _dock(viewer)
    widget.add_model_files([model_files["left"]])
    items = [widget.models.item(i) for i in range(widget.models.count())]
    assert [item.text() for item in items] == [*BUILTIN, "left"]
    assert [item.checkState() for item in items] == [Qt.CheckState.Unchecked] * len(BUILTIN) + [
        Qt.CheckState.Checked
    ]
    name = builtin_choices()[0][1]
    items[0].setCheckState(Qt.CheckState.Checked)
    widget.add_model_files([model_files["down"]])  # relisting keeps the ticks
    assert widget.models.item(0).checkState() == Qt.CheckState.Checked
    assert [entry.name for entry in widget.rows.entries()] == [name, "left", "down"]
    widget.models.item(0).setSelected(True)
    assert widget.refine_selected() == [f"{name} + refine: ncc"]
    widget.models.item(widget.models.count() - 1).setCheckState(Qt.CheckState.Unchecked)
    _compare(widget, qtbot)
    assert errors == []
    assert [row[0] for row in _cells(widget)] == ["identity", name, "left", "down"]
    assert f"{name} warped" in viewer.layers
    assert warnings == [f"{n}: unlike {n}'s training data" for n in (name, "left", "down")]


def test_bad_inputs_are_reported(viewer, qtbot, model_files, errors):
    widget = _dock(viewer)
    assert widget.compare() is None
    assert "No model is ticked" in errors[-1]
    widget.add_model_files([model_files["left"], "/nonexistent/model.pt"])
    assert "does not exist" in errors[-1]
    assert widget.models.count() == len(BUILTIN) + 1
    widget.models.item(len(BUILTIN)).setCheckState(Qt.CheckState.Unchecked)
    assert widget.compare() is None
    assert "No model is ticked" in errors[-1]
    widget.models.item(len(BUILTIN)).setCheckState(Qt.CheckState.Checked)
    widget.moving.value = widget.fixed.value
    assert widget.compare() is None
    assert "the same layer" in errors[-1]
    widget.moving.value = viewer.layers["moving"]
    viewer.add_image(np.zeros((4, 8, 8, 8)), name="4d")
    widget.moving.value = viewer.layers["4d"]
    assert widget.compare() is None
    assert "4D" in errors[-1]
    widget.moving.value = viewer.layers["moving"]
    widget.fixed_labels.value = viewer.layers["moving labels"]
    viewer.layers["moving labels"].data = np.zeros((8, 8), np.int32)
    assert widget.compare() is None
    assert "have shape (8, 8)" in errors[-1]
    assert not widget.running
    viewer.layers.remove("4d")  # the viewer keeps working


def test_every_button_column_and_tile_is_reachable_in_a_1366x768_window(
    viewer, qtbot, model_files, errors
):
    window = viewer.window._qt_window
    window.show()
    window.showNormal()
    window.resize(1366, 768)
    trained_models.append(TrainedModel("ncc model #1", load_model(model_files["down"])))
    widget = _dock(viewer)
    widget.add_model_files([model_files["left"], model_files["down"]])
    widget.optimise.iterations.value = "2"
    widget.add_optimisation()
    widget.models.findItems("left", Qt.MatchFlag.MatchExactly)[0].setSelected(True)
    widget.refine_selected()
    _compare(widget, qtbot)
    widget.draw_zoom().add_rectangles(np.array([[20.0, 30.0], [59.0, 89.0]]))
    assert errors == [] and widget.table.rowCount() == 6  # the identity and 5 methods
    scroll = widget.findChild(QScrollArea)
    viewport = scroll.viewport()

    def reachable(child, rect):
        scroll.ensureWidgetVisible(child, 0, 0)
        for _ in range(5):
            QApplication.processEvents()
        return viewport.rect().contains(QRect(child.mapTo(viewport, rect.topLeft()), rect.size()))

    buttons = [b for b in widget.findChildren(QAbstractButton) if b.isVisibleTo(widget)]
    assert {"Remove", "Refine selected models"} <= {button.text() for button in buttons}
    for button in buttons:
        assert button.width() >= button.sizeHint().width(), f"{button.text()!r} is cut"
        assert reachable(button, button.rect()), f"{button.text()!r} cannot be reached"
    table, header = widget.table, widget.table.horizontalHeader()
    for column in range(table.columnCount()):
        table.scrollTo(table.model().index(0, column))
        size = header.sectionSize(column)
        assert size >= header.sectionSizeHint(column), f"column {column}'s header is cut"
        section = QRect(header.sectionViewportPosition(column), 0, size, 1)
        assert table.viewport().rect().contains(section), f"column {column} cannot be reached"
        assert reachable(table.viewport(), section), f"column {column} cannot be reached"
    for tile in widget.zoom.tiles.items:
        assert reachable(tile, tile.rect()), "a zoom tile cannot be reached"


def test_zoom_box_clips_and_refuses_outside():
    plane, rows, cols = zoom_box(
        np.array([[-5.0, 10.2], [-5, 30], [40.7, 30], [40.7, 10.2]]), (32, 64)
    )
    assert plane is None and (rows, cols) == (slice(0, 32), slice(10, 31))
    plane, rows, _ = zoom_box(np.array([[3.2, 1, 1], [3.2, 9, 9]]), (5, 16, 16))
    assert plane == 3 and rows == slice(1, 10)
    with pytest.raises(ValueError, match="outside the image"):
        zoom_box(np.array([[100.0, 100.0], [120.0, 120.0]]), (32, 32))
