"""Regenerate the napari screenshots of the docs by driving the widgets as a user would.

Four parts, each a sequence of button clicks on real widgets in a real window:

* ``click-through``: a new user's path on the built-in sample only: open the samples,
  train a feature extractor, train DeepSim and NCC models, register, look at the grid
  and the Jacobian, compare the two models on a zoomed patch, save the field;
* ``real-data``: the widgets on ``../shared/data`` with the models of
  ``scripts/example-runs.sh``: Register and Compare on ISBI 2012 EM, both training
  widgets on the T98G phase-contrast time-lapse;
* ``overlays``: the deformation views: the 2D grid on ISBI with the built-in ``em-2d``
  model, and the 3D brain MRI of ``../shared/data`` (half resolution) against a
  smoothly deformed copy, optimised: a slice with its grid, and the 3D view with the
  grid's plane, the folds as points and the displacement vectors;
* ``small-screen``: two widgets docked in a 1366×768 window: a registration model
  trained briefly on the sample (its plot with the identity's Dice line and the "train
  longer" advice) above the Register widget's result (wall time, Jacobian legend).

Run under a virtual X server (the canvas needs OpenGL)::

    xvfb-run -a -s "-screen 0 1920x1200x24" .venv/bin/python scripts/screenshots.py \
        --runs runs --out docs/screenshots
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
import numpy as np
from qtpy.QtWidgets import QApplication, QFileDialog, QScrollArea

from napari_deepsim._state.models import trained_models
from src_training.data.reading import read_image

WINDOW = (1500, 1000)


def wait(condition: Callable[[], bool], timeout: float = 1800.0) -> None:
    """Process Qt events until ``condition()`` holds (a worker finished)."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise TimeoutError("the widget did not finish in time")
        QApplication.processEvents()
        time.sleep(0.02)
    for _ in range(20):  # let layers and plots repaint
        QApplication.processEvents()
        time.sleep(0.02)


def new_viewer() -> napari.Viewer:
    """Open a viewer window of a fixed size."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*WINDOW)
    return viewer


def dock(viewer: napari.Viewer, name: str) -> Any:
    """Open one of the plugin's widgets, hiding the other docks."""
    for widget in list(viewer.window.dock_widgets.values()):
        viewer.window.remove_dock_widget(widget)
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", name)
    return widget


def shoot(viewer: napari.Viewer, path: Path) -> None:
    """Save a screenshot of the whole window, docks included."""
    wait(lambda: True)
    viewer.window.screenshot(path=str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def only_visible(viewer: napari.Viewer, names: list[str]) -> None:
    """Show exactly the named layers."""
    for layer in viewer.layers:
        layer.visible = layer.name in names


def click_through(out: Path) -> None:
    """Sample → features → DeepSim and NCC → register → grid/Jacobian → compare → save."""
    trained_models.clear()
    viewer = new_viewer()
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    only_visible(viewer, ["fixed", "fixed labels"])
    shoot(viewer, out / "01_sample.png")

    features = dock(viewer, "Train feature extractor")
    features.train_button.native.click()
    wait(lambda: not features.running)
    shoot(viewer, out / "02_train_features.png")

    registration = dock(viewer, "Train registration model")
    registration.metric.value = "deepsim"
    registration.train_button.native.click()
    wait(lambda: not registration.running)
    shoot(viewer, out / "03_train_deepsim.png")
    registration.metric.value = "ncc"
    registration.train_button.native.click()
    wait(lambda: not registration.running)

    register = dock(viewer, "Register")
    names = {name: model for name, model in register.model_panel.choices()}
    register.trained.value = names["deepsim model #1"]
    register.register_button.native.click()
    wait(lambda: not register.running)
    only_visible(viewer, ["fixed", "moving warped", "moving grid", "moving folds"])
    shoot(viewer, out / "04_register_grid.png")
    only_visible(viewer, ["moving Jacobian", "moving folds"])
    shoot(viewer, out / "05_jacobian.png")
    field_file = out / "click-through-displacement.npy"
    field_file.unlink(missing_ok=True)
    QFileDialog.getSaveFileName = lambda *args, **kwargs: (str(field_file), "")
    register.field_controls.save_button.native.click()
    assert np.load(field_file).shape == (2, 128, 128)
    field_file.unlink()

    compare = dock(viewer, "Compare metrics")
    compare.compare_button.native.click()
    wait(lambda: not compare.running)
    compare.zoom.zoom_button.click()
    viewer.layers["compare zoom"].add_rectangles(np.array([[64.0, 60.0], [115.0, 111.0]]))
    only_visible(
        viewer,
        ["fixed", "deepsim model #1 grid", "ncc model #2 grid", "compare zoom"],
    )
    shoot(viewer, out / "06_compare.png")
    viewer.close()


def small_screen(out: Path) -> None:
    """Training and Register docked one above the other in a 1366×768 window."""
    trained_models.clear()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1366, 768)
    viewer.open_sample("napari-deepsim", "noisy_cell_timelapse")
    viewer.open_sample("napari-deepsim", "noisy_cell_pair")
    _, training = viewer.window.add_plugin_dock_widget("napari-deepsim", "Train registration model")
    settings = {"steps": 60, "crop": 64, "channels": "8,16", "device": "cpu"}
    for name, value in settings.items():
        getattr(training, name).value = value
    training.train_button.native.click()
    wait(lambda: not training.running)
    _, register = viewer.window.add_plugin_dock_widget("napari-deepsim", "Register")
    register.set_model(training.model)
    register.show_vectors.value = True
    register.register_button.native.click()
    wait(lambda: not register.running)
    only_visible(viewer, ["moving warped", "moving Jacobian"])
    viewer.layers["moving Jacobian"].opacity = 0.4  # its colour bar shows while it is visible
    for layer in viewer.layers:
        if layer.name.startswith("moving displacement"):
            layer.visible = True
    for widget, part in ((training, training.plot), (register, register.results)):
        widget.findChild(QScrollArea).ensureWidgetVisible(part)  # scrolled as a user would
    shoot(viewer, out / "07_small_screen.png")
    viewer.close()


def _isbi(viewer: napari.Viewer, data: Path) -> None:
    root = data / "isbi2012_em"
    for index, role in ((25, "fixed"), (26, "moving")):
        image = read_image(root / "images" / f"{index:02d}.png")[0]
        labels = read_image(root / "labels" / f"{index:02d}.png", as_label=True)[0]
        viewer.add_image(image, name=f"EM {index} ({role})", colormap="gray")
        viewer.add_labels((labels > 0).astype(np.uint8), name=f"EM {index} ({role}) labels")


def real_data(runs: Path, data: Path, out: Path) -> None:
    """Register and Compare on ISBI EM; the training widgets on T98G."""
    trained_models.clear()
    viewer = new_viewer()
    _isbi(viewer, data)
    register = dock(viewer, "Register")
    register.model_file.value = runs / "isbi" / "deepsim.pt"
    register.register_button.native.click()
    wait(lambda: not register.running)
    only_visible(
        viewer,
        ["EM 25 (fixed)", "EM 26 (moving) warped", "EM 26 (moving) grid", "EM 26 (moving) folds"],
    )
    viewer.camera.zoom *= 1.6
    shoot(viewer, out / "register_isbi.png")

    compare = dock(viewer, "Compare metrics")
    compare.add_model_files([runs / "isbi" / "deepsim.pt", runs / "isbi" / "ncc.pt"])
    compare.spacing.value = 32
    compare.compare_button.native.click()
    wait(lambda: not compare.running)
    compare.zoom.zoom_button.click()
    viewer.layers["compare zoom"].add_rectangles(np.array([[300.0, 100.0], [395.0, 195.0]]))
    only_visible(viewer, ["EM 25 (fixed)", "deepsim grid", "ncc grid", "compare zoom"])
    viewer.camera.center = (348.0, 148.0)
    viewer.camera.zoom = 3.0
    shoot(viewer, out / "compare_isbi.png")
    viewer.close()

    trained_models.clear()
    viewer = new_viewer()
    root = data / "t98g_phase"
    frames = np.stack([read_image(p)[0] for p in sorted((root / "images").glob("t*.tif"))[:8]])
    labels = np.stack(
        [read_image(p, as_label=True)[0] > 0 for p in sorted((root / "labels").glob("t*.png"))[:8]]
    ).astype(np.uint8)
    viewer.add_image(frames, name="T98G", colormap="gray")
    viewer.add_labels(labels, name="T98G labels", opacity=0.3)
    _, features = viewer.window.add_plugin_dock_widget("napari-deepsim", "Train feature extractor")
    _, registration = viewer.window.add_plugin_dock_widget(
        "napari-deepsim", "Train registration model"
    )
    features.steps.value = 200
    features.crop.value = 128
    features.train_button.native.click()
    wait(lambda: not features.running)
    registration.metric.value = "deepsim"
    registration.steps.value = 200
    registration.crop.value = 128
    registration.train_button.native.click()
    wait(lambda: not registration.running)
    shoot(viewer, out / "train_t98g.png")
    viewer.close()


def _deformed(volume: np.ndarray) -> np.ndarray:
    """Warp a volume with a smooth sine field of a few voxels (a known deformation)."""
    import torch

    from src_training.spatial.transforms import warp

    grids = np.meshgrid(*[np.linspace(0, np.pi, n) for n in volume.shape], indexing="ij")
    field = np.stack([4 * np.sin(2 * grids[(a + 1) % 3]) for a in range(3)]).astype(np.float32)
    image = torch.as_tensor(volume, dtype=torch.float32)[None, None]
    return warp(image, torch.as_tensor(field)[None]).numpy()[0, 0]


def overlays(data: Path, out: Path) -> None:
    """Shoot the 2D grid on ISBI, and a 3D brain's grid per slice, fold points and vectors."""
    trained_models.clear()
    viewer = new_viewer()
    _isbi(viewer, data)
    register = dock(viewer, "Register")
    register.register_button.native.click()  # the built-in em-2d model is chosen
    wait(lambda: not register.running)
    only_visible(viewer, ["EM 25 (fixed)", "EM 26 (moving) grid", "EM 26 (moving) folds"])
    viewer.camera.zoom *= 1.6
    shoot(viewer, out / "overlays_2d.png")
    viewer.close()

    viewer = new_viewer()
    brain = np.load(data / "brain_mri_3d" / "test_scan.npz")["vol"][::2, ::2, ::2]
    brain = brain.astype(np.float32)
    viewer.add_image(brain, name="brain (fixed)", colormap="gray")
    viewer.add_image(_deformed(brain), name="deformed (moving)", colormap="gray")
    register = dock(viewer, "Register")
    register.fixed.value = viewer.layers["brain (fixed)"]
    register.moving.value = viewer.layers["deformed (moving)"]
    register.method.value = "optimise"
    register.optimise.metric.value = "mse"
    register.optimise.iterations.value = "40,20,10"
    register.spacing.value = 8
    register.show_vectors.value = True
    register.register_button.native.click()
    wait(lambda: not register.running)
    only_visible(viewer, ["deformed (moving) warped", "deformed (moving) grid"])
    viewer.layers["deformed (moving) grid"].opacity = 0.7
    viewer.dims.set_current_step(0, 40)
    viewer.reset_view()
    shoot(viewer, out / "overlays_3d_slice.png")
    only_visible(
        viewer,
        [
            "deformed (moving) warped",
            "deformed (moving) grid",
            "deformed (moving) folds",
            "deformed (moving) displacement",
        ],
    )
    viewer.dims.ndisplay = 3
    viewer.reset_view()
    viewer.camera.angles = (0.0, 30.0, 120.0)
    shoot(viewer, out / "overlays_3d_view.png")
    viewer.close()


def main() -> None:
    """Parse the arguments and take the screenshots."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--data", type=Path, default=Path("../shared/data"))
    parser.add_argument("--out", type=Path, default=Path("docs/screenshots"))
    parts = ["click-through", "real-data", "overlays", "small-screen", "all"]
    parser.add_argument("--part", choices=parts, default="all")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.part in ("click-through", "all"):
        click_through(args.out)
    if args.part in ("real-data", "all"):
        real_data(args.runs, args.data, args.out)
    if args.part in ("overlays", "all"):
        overlays(args.data, args.out)
    if args.part in ("small-screen", "all"):
        small_screen(args.out)


if __name__ == "__main__":
    main()
