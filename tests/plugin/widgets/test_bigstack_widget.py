"""The Big stack dock: a lazy or multiscale stack into an OME-Zarr store, frame by frame."""

import time

import numpy as np
import pytest

import napari_deepsim._widgets.bigstack.widget as bigstack_module
from napari_deepsim._layers.choices import SOURCE

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")
pytestmark = pytest.mark.gui


class Frames:
    """A stack that records how many frames each read asks for."""

    def __init__(self, data):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = []

    def __getitem__(self, key):
        part = self.data[key]
        self.reads.append(1 if part.ndim < self.ndim else part.shape[0])
        return part


def _frames(n=6, size=64):
    rng = np.random.default_rng(0)
    base = rng.random((size + 8, size + 8)).astype(np.float32)
    return np.stack([base[t % 4 : t % 4 + size, 2 : 2 + size] for t in range(n)])


def _dock(make_napari_viewer, model, data, **options):
    viewer = make_napari_viewer()
    layer = viewer.add_image(data, name="lazy cells", **options)
    _, widget = viewer.window.add_plugin_dock_widget("napari-deepsim", "Big stack")
    widget.stack.value = layer
    widget.model_panel.set_model(model)
    return viewer, widget


def _run(widget, qtbot):
    widget.button.changed.emit(True)  # as a click
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)


def _outputs(viewer):
    return {layer.name: layer for layer in viewer.layers if SOURCE in layer.metadata}


def test_a_dask_stack_registers_frame_by_frame_into_a_store_read_lazily(
    make_napari_viewer, qtbot, moving_model_file, tmp_path, errors
):
    frames = Frames(_frames())
    data = da.from_array(frames, chunks=(1, 64, 64))
    viewer, widget = _dock(make_napari_viewer, moving_model_file, data)
    assert not widget.level.native.isVisibleTo(widget)  # one level: nothing to pick
    widget.frame.value = 2
    widget.store.value = tmp_path / "out.zarr"
    _run(widget, qtbot)
    assert errors == []
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert np.asarray(root["done"]).all()
    fields = np.asarray(root["fields/0"])
    assert np.abs(fields[2]).max() == 0 and np.abs(fields[0]).max() > 0.1  # onto frame 2
    assert max(frames.reads) == 1  # never more than one frame read at once
    out = _outputs(viewer)
    warped, jac = out["lazy cells registered"], out["lazy cells Jacobian"]
    assert isinstance(warped.data, da.Array) and not jac.visible
    np.testing.assert_allclose(np.asarray(warped.data[4]), root["0"][4, 0], atol=1e-6)
    assert "6 frames" in widget.results.text() and "folding" in widget.results.text()


def test_stop_keeps_the_finished_frames_and_resume_completes_the_store(
    make_napari_viewer, qtbot, moving_model_file, tmp_path, errors, monkeypatch
):
    run, seen = bigstack_module.run_store, []

    def slow(job, stop=None):
        steps = run(job, stop=stop)
        while True:
            try:
                step = next(steps)
            except StopIteration as end:
                return end.value
            seen.append(step.what)
            time.sleep(0.3)
            yield step

    monkeypatch.setattr(bigstack_module, "run_store", slow)
    viewer, widget = _dock(
        make_napari_viewer, moving_model_file, da.from_array(_frames(12), (1, 64, 64))
    )
    widget.batch.value = 2
    widget.store.value = store = tmp_path / "out.zarr"
    widget.button.changed.emit(True)
    qtbot.waitUntil(lambda: any(w.startswith("frame") for w in seen), timeout=60000)
    widget.button.changed.emit(True)  # Stop
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    done = np.asarray(zarr.open_group(str(store), mode="r")["done"])
    assert 0 < done.sum() < 12
    assert "stopped" in widget.results.text() and "resume" in widget.results.text()
    (name,) = [n for n in _outputs(viewer) if "registered" in n]
    assert "(frames 0-" in name
    _run(widget, qtbot)  # again without resume: refused, the store untouched
    assert len(errors) == 1 and "tick 'resume'" in errors[0]
    assert (np.asarray(zarr.open_group(str(store), mode="r")["done"]) == done).all()
    widget.resume.value = True
    _run(widget, qtbot)
    assert np.asarray(zarr.open_group(str(store), mode="r")["done"]).all()
    assert "lazy cells registered" in _outputs(viewer) and len(_outputs(viewer)) == 2


def test_a_multiscale_stack_registers_at_a_coarse_level_and_warps_the_finest(
    make_napari_viewer, qtbot, moving_model_file, tmp_path, errors
):
    full = np.repeat(np.repeat(_frames(4, 32), 2, axis=1), 2, axis=2)
    pyramid = [full, full[:, ::2, ::2]]
    viewer, widget = _dock(make_napari_viewer, moving_model_file, pyramid, multiscale=True)
    assert widget.level.native.isVisibleTo(widget) and len(widget.level.choices) == 2
    widget.level.value = 1
    widget.store.value = tmp_path / "out.zarr"
    _run(widget, qtbot)
    assert errors == []
    root = zarr.open_group(str(tmp_path / "out.zarr"), mode="r")
    assert root["fields/0"].shape == (4, 2, 32, 32) and root["full/0"].shape == (4, 1, 64, 64)
    out = _outputs(viewer)
    warped, jac = out["lazy cells registered"], out["lazy cells Jacobian"]
    assert warped.data.shape == (4, 64, 64) and tuple(jac.scale) == (1, 2, 2)
    np.testing.assert_allclose(np.asarray(warped.data[0]), full[0], atol=1e-4)  # reference
    assert "warped at full resolution" in widget.results.text()
