"""The Big stack widget: a stack larger than memory registered frame by frame into a store.

For the 2D+t and serial-section stacks that napari shows lazily (a layer backed by a
dask or Zarr array, or a multiscale layer from an OME-Zarr pyramid). The chosen
registration model registers every frame onto a reference frame (or each onto the one
before, composed) at the chosen level, reading one batch of frames at a time, in this
process or on a Dask cluster (``local``, ``local:N`` worker processes, or a scheduler's
``tcp://`` address); each frame's warped image, field, Jacobian and metrics go to an
OME-Zarr store as it finishes (:mod:`napari_deepsim._jobs.bigstack`). Registered at a
coarser level, the fields then warp the finest level into the store too. **Stop** keeps
every finished frame, and "resume" completes the store later. The result layers read the
store lazily, so nothing of the stack is ever held whole in memory.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, LineEdit, PushButton, SpinBox
from napari.layers import Image
from napari.utils.notifications import show_info, show_warning
from qtpy.QtWidgets import QLabel

from napari_deepsim._jobs.bigstack import StoreJob, frame_ranges, run_store
from napari_deepsim._state.models import trained_models
from napari_deepsim._widgets.bigstack.layers import add_store_layers, levels_of
from napari_deepsim._widgets.controls import device_picker, layer_choices
from napari_deepsim._widgets.dock import JobDock
from napari_deepsim._widgets.layout import scrolled
from napari_deepsim._widgets.model_panel import ModelPanel
from napari_deepsim._widgets.subscriptions import subscribe, watch_layers, when_closed
from napari_deepsim._widgets.workers import advance, gui_wording

if TYPE_CHECKING:
    import napari

    from napari_deepsim._jobs.bigstack import StoreResult
    from src_training.engine.registration import Progress

STORE_TIP = (
    "An OME-Zarr store (a folder ending in .zarr) that receives the warped frames, fields, "
    "Jacobians and per-frame metrics as they finish"
)
CLUSTER_TIP = (
    "Empty: register in this process. local: a Dask worker process per CPU core; local:N: N "
    "workers; tcp://HOST:PORT: a running Dask scheduler (its workers need napari-deepsim)"
)


class BigStackWidget(JobDock):
    """Register every frame of a (lazy, possibly multiscale) stack into an OME-Zarr store.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose stack layer is registered and which receives the result layers.
    """

    action = "Register stack"
    failure = "Registration"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.stack = ComboBox(label="stack", choices=self._stacks, nullable=True)
        self.stack.tooltip = "A 2D+t or serial-section layer (its first axis is the frames)"
        self.level = ComboBox(label="level", choices=self._levels)
        self.level.tooltip = (
            "The level of a multiscale layer the frames are registered at; at a coarser "
            "level the fields then warp the finest level too"
        )
        self.model_panel = ModelPanel(self.viewer)
        self.reference = ComboBox(
            label="reference", choices=["one frame", "previous frame"], value="one frame"
        )
        self.reference.tooltip = (
            "one frame: every frame onto the frame below; previous frame: each frame onto the "
            "one before, composed onto the first"
        )
        self.frame = SpinBox(label="frame", min=0, max=0, value=0)
        self.store = FileEdit(label="store", mode="w", filter="OME-Zarr (*.zarr)")
        self.store.tooltip = STORE_TIP
        self.resume = CheckBox(text="resume: keep the frames the store already holds")
        self.cluster = LineEdit(label="cluster", value="")
        self.cluster.tooltip = CLUSTER_TIP
        self.cluster.native.setPlaceholderText("empty: this process; local, local:2, tcp://…")
        self.device = device_picker()
        self.batch = SpinBox(label="batch size", min=1, max=256, value=8)
        self.batch.tooltip = "Frames per forward pass (and per task on a cluster)"
        self.button = PushButton(text=self.action)
        self.results = QLabel("")
        self.results.setWordWrap(True)
        self.inputs = Container(
            widgets=[
                self.stack,
                self.level,
                *self.model_panel.widgets,
                self.reference,
                self.frame,
                self.store,
                self.resume,
                self.cluster,
                self.device,
                self.batch,
                self.button,
            ]
        )
        scrolled(self, self.inputs.native, self.results)
        self.follow(self.button, self.register)
        self.stack.changed.connect(self._stack_changed)
        self.reference.changed.connect(self._stack_changed)
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self.model_panel.refresh)
        subscribe(self, [events.trained], self.model_panel.model_trained)
        watch_layers(self, self.viewer, self.reset_choices)
        when_closed(self, self.abandon)
        self.reset_choices()

    def reset_choices(self, *_args: Any) -> None:
        """Refresh the layer and level pickers from the viewer's layers."""
        self.inputs.reset_choices()
        self._stack_changed()

    def _stacks(self, _widget: Any = None) -> list[tuple[str, Image]]:
        return [(n, layer) for n, layer in layer_choices(self.viewer, Image) if layer.ndim >= 3]

    def _levels(self, _widget: Any = None) -> list[tuple[str, int]]:
        layer = self.stack.value if hasattr(self, "stack") else None
        if layer is None or not layer.multiscale:
            return [("full resolution", 0)]
        return [(f"level {k}: {tuple(d.shape[1:])}", k) for k, d in enumerate(layer.data)]

    def _stack_changed(self, *_args: Any) -> None:
        layer = self.stack.value
        self.level.reset_choices()
        self.level.visible = layer is not None and layer.multiscale
        self.frame.visible = self.reference.value == "one frame"
        frames = 0 if layer is None else int(levels_of(layer)[0].shape[0])
        self.frame.max = max(0, frames - 1)

    def register(self, *_args: Any) -> Any:
        """Start registering the chosen stack into the store in a worker thread.

        Returns
        -------
        worker or None
            The started worker, or None when the inputs were refused (the reason shown).
        """
        job = self.new_job("A registration is already running; wait for it to finish.")
        if job is None:
            return None
        layer = self.stack.value
        self.results.setText(f"registering {len(job.frames)} frames into {job.out}…")
        return self.launch(
            partial(run_store, stop=self.stop_event.is_set),
            job,
            len(job.frames),
            f"Registering {job.name} into a store",
            partial(self._on_returned, layer),
            self._on_errored,
            yielded=self._on_step,
            counted=False,
        )

    def stop(self) -> None:
        """Stop after the frames in progress: every finished frame stays in the store."""
        if self.running:
            self.ask_to_stop()
            self.results.setText("stopping: the finished frames stay in the store…")

    def _make_job(self) -> StoreJob:
        layer = self.stack.value
        if layer is None:
            raise ValueError("open a 2D+t or serial-section stack and choose it in 'stack'")
        levels = levels_of(layer)
        level = int(self.level.value or 0)
        frames = levels[level]
        if frames.ndim not in (3, 4):
            raise ValueError(
                f"the layer {layer.name!r} is {frames.ndim}D; choose a 2D+t or 3D+t stack"
            )
        self.model_panel.check_fits(frames.ndim, True, layer.name)
        out = Path(str(self.store.value))
        if out.suffix != ".zarr":
            raise ValueError("choose a store ending in .zarr in 'store'")
        if out.exists() and not self.resume.value:
            raise ValueError(
                f"the store {out} already exists; tick 'resume' to complete it, or choose "
                "another store (nothing in it was changed)"
            )
        cluster = str(self.cluster.value).strip() or None
        if cluster is not None:
            from src_training.engine.cluster import check_cluster

            check_cluster(cluster)
        reference = (
            "previous" if self.reference.value == "previous frame" else int(self.frame.value)
        )
        scale = tuple(float(s) for s in layer.scale[1:])
        factors = [full / part for full, part in zip(levels[0].shape, frames.shape, strict=True)]
        return StoreJob(
            frames=frames,
            name=layer.name,
            model=self.model_panel.source(),
            reference=reference,
            out=out,
            resume=bool(self.resume.value),
            cluster=cluster,
            device=str(self.device.value),
            batch_size=int(self.batch.value),
            spacing=tuple(s * f for s, f in zip(scale, factors[1:], strict=True)),
            full=levels[0] if level > 0 else None,
            full_spacing=scale if level > 0 else None,
        )

    def _on_step(self, step: Progress) -> None:
        if self.worker is None or self.closed:
            return
        self.results.setText(step.what)
        advance(self.worker, step.done, max(step.total, 1))

    def _on_errored(self, err: BaseException) -> None:
        self.results.setText("registration failed; the frames written so far stay in the store")
        self.report(err)

    def _on_returned(self, layer: Image, result: StoreResult) -> None:
        if self.closed:
            return
        written = frame_ranges(result.done)
        if result.series is None:
            said = (
                f"stopped: the store {result.path} holds frames {written} of {result.frames}; "
                "tick 'resume' and register again to complete it"
            )
        else:
            series = result.series
            said = (
                f"{result.frames} frames in {result.path} ({series.written} written now, "
                f"{series.skipped} kept) in {result.seconds:.1f} s; folding "
                f"{series.folding_percent:.2f} %, sd log J {series.sdlogj:.3f}"
            )
        if result.full:
            said += f"; frames {frame_ranges(result.full)} warped at full resolution"
        self.results.setText(said)
        if layer not in self.viewer.layers:
            show_info(f"{said}. The layer {layer.name!r} was removed, so no layers were added.")
            self.settle()
            return
        self.add_layers(add_store_layers(self.viewer, layer, result))
        for line in result.warnings:
            show_warning(gui_wording(line))
