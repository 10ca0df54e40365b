"""What both training widgets share: settings, Train/Stop, the loss plot, saving.

Training runs in a napari generator worker (:func:`napari_deepsim._jobs.train.train`)
that yields the trainer's events; the GUI thread receives them to draw the loss curve
(with the identity's validation Dice as the line to beat, or the validation loss when the
validation frames have no labels) and never waits for a step.
The data is a layer (a stack), two or more layers of one shape (stacked for the user:
2D images as a 2D+t stack, 3D volumes as a 3D+t stack) or a dataset folder; a run that
ends without beating the identity says what to change ("train longer: …"). Stop sets a
flag that the trainer polls before its next step. Training starts from new weights or
fine-tunes a built-in model ("start from"; its channels are then the built-in's). A
trained model stays in memory, can be saved, and is added to
:data:`napari_deepsim._state.models.trained_models`, which announces it to the other widgets.
"""

from __future__ import annotations

import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    LineEdit,
    PushButton,
    Select,
    SpinBox,
)
from napari.layers import Image, Labels, Layer
from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QFileDialog, QLabel

from napari_deepsim._jobs.train import TrainJob, save, train
from napari_deepsim._jobs.train_data import verdict
from napari_deepsim._layers.choices import guess_training, inputs, partner
from napari_deepsim._layers.stack import stacked_layers
from napari_deepsim._state.models import builtin_choices, trained_models
from napari_deepsim._widgets import tips
from napari_deepsim._widgets.controls import device_picker, layer_choices, precision_picker
from napari_deepsim._widgets.dock import JobDock
from napari_deepsim._widgets.layout import scrolled
from napari_deepsim._widgets.loss_plot import LossPlot
from napari_deepsim._widgets.subscriptions import watch_layers
from src_training.engine.options import parse_channels
from src_training.engine.public import builtin_models

if TYPE_CHECKING:
    import napari

    from src_training.engine.public import Event, ModelFile

UNLABELLED = (
    "the validation frames have no labels, so no Dice is scored: the run is judged by the "
    "validation loss (orange, lower is better)"
)
TRAINING_MEMORY_FIX = "choose the cpu device, a smaller crop or fewer channels"


class TrainWidget(JobDock):
    """Common parts of the training widgets; subclasses choose the data and the network.

    A subclass makes its input widgets (among them ``image`` and ``labels``) in
    ``_input_widgets``, builds the job in ``_make_job`` and names its models in
    ``_name_of``.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose layers are the training data.
    """

    title = "model"
    action = "Train"
    failure = "Training"
    memory_fix = TRAINING_MEMORY_FIX
    stack = False  # whether training needs a stack of frames (for the layer guess)

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.model: ModelFile | None = None
        self.folder = FileEdit(label="or folder", mode="d", tooltip=tips.FOLDER_TIP)
        self.layers = Select(label="or layers", choices=self._stackable, tooltip=tips.LAYERS_TIP)
        self.layers.native.setMaximumHeight(80)
        self.steps = SpinBox(label="steps", value=500, min=1, max=1_000_000, tooltip=tips.STEPS_TIP)
        self.crop = SpinBox(label="crop", value=64, min=8, max=4096, tooltip=tips.CROP_TIP)
        self.batch_size = SpinBox(
            label="batch size", value=4, min=1, max=256, tooltip=tips.BATCH_TIP
        )
        self.lr = FloatSpinBox(
            label="learning rate", value=1e-3, min=1e-6, max=1.0, step=1e-4, tooltip=tips.LR_TIP
        )
        self.lr.native.setDecimals(6)
        self.channels = LineEdit(label="channels", value="16,32,64", tooltip=tips.CHANNELS_TIP)
        self.start_from = ComboBox(
            label="start from", choices=[("new weights", ""), *self._builtin_starts()]
        )
        self.start_from.tooltip = "Fine-tune a built-in model instead of training from new weights"
        self.device = device_picker()
        self.precision = precision_picker()
        self.checkpointing = CheckBox(
            text="activation checkpointing (less memory)", value=False, tooltip=tips.CHECKPOINT_TIP
        )
        self.train_button = PushButton(text="Train", tooltip=tips.TRAIN_TIP)
        self.save_button = PushButton(text="Save…", enabled=False, tooltip=tips.SAVE_TIP)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = LossPlot()
        self.inputs = Container(widgets=self._input_widgets())
        self.settings = Container(
            widgets=[
                self.steps,
                self.crop,
                self.batch_size,
                self.lr,
                self.start_from,
                self.channels,
                self.device,
                self.precision,
                self.checkpointing,
                self.train_button,
            ]
        )
        parts = (self.inputs.native, self.settings.native, self.plot, self.status)
        scrolled(self, *parts, self.save_button.native)
        self.start_from.changed.connect(self._start_changed)
        self.follow(self.train_button, self.start)
        self.save_button.changed.connect(self._save_clicked)
        watch_layers(self, self.viewer, self.reset_choices)
        self.reset_choices()

    def _input_widgets(self) -> list[Any]:
        raise NotImplementedError

    def _make_job(self) -> TrainJob:
        raise NotImplementedError

    def _name_of(self, model: ModelFile) -> str:
        raise NotImplementedError

    def _builtin_starts(self) -> list[tuple[str, str]]:
        part = "features" if self.title == "feature extractor" else "registration"
        return [(f"built-in model {text}", name) for text, name in builtin_choices(part)]

    def _start_changed(self, *_args: Any) -> None:
        """Take a built-in model's channels (its architecture) when fine-tuning it."""
        name = str(self.start_from.value)
        if name:
            self.channels.value = ",".join(map(str, builtin_models()[name].network))
        self.channels.enabled = not name

    def reset_choices(self, *_args: Any) -> None:
        """Refresh the layer choosers; fill empty ones with the likely training layers."""
        self.inputs.reset_choices()
        if self.image.value is None:
            image = guess_training(self.viewer, self.stack)
            if image is not None:
                self.image.value = image
        if self.labels.value is None:
            labels = partner(self.image.value, inputs(self.viewer, Labels))
            if labels is not None:
                self.labels.value = labels

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Image)

    def _stackable(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return [(n, layer) for n, layer in self._images() if layer.ndim in (2, 3) and not layer.rgb]

    def _stacked(self) -> tuple[np.ndarray, np.ndarray | None, str] | None:
        """Return the layers chosen under 'or layers' as one stack (see ``stacked_layers``)."""
        return stacked_layers(self.viewer, list(self.layers.value))

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return layer_choices(self.viewer, Labels)

    def _folder(self) -> Path | None:
        path = Path(self.folder.value)
        return None if str(path) in ("", ".") else path

    def _settings(self) -> dict[str, Any]:
        init = str(self.start_from.value)  # a built-in model brings its own channels
        return {
            "steps": int(self.steps.value),
            "crop": int(self.crop.value),
            "batch_size": int(self.batch_size.value),
            "lr": float(self.lr.value),
            "channels": None if init else parse_channels(str(self.channels.value), "channels"),
            "device": str(self.device.value),
            "init": init or None,
            "precision": str(self.precision.value),
            "checkpointing": bool(self.checkpointing.value),
        }

    def start(self) -> Any:
        """Start training in a worker thread.

        Returns
        -------
        worker or None
            The started napari worker, or None when the inputs were refused (the reason
            is shown as a notification).
        """
        try:
            job = self._make_job()
        except (ValueError, FileNotFoundError) as err:
            self.report(err)
            return None
        from src_training.engine.arrays import identity_dice

        self.plot.clear(job.steps, identity_dice(job.val))
        self.status.setText("training…")
        return self.launch(
            partial(train, stop=self.stop_event.is_set),
            job,
            job.events,
            f"Training the {self.title}",
            self._on_returned,
            self._on_errored,
            yielded=self._on_event,
        )

    def stop(self) -> None:
        """Ask the running training to end before its next step (the model is kept)."""
        self.ask_to_stop()
        self.status.setText("stopping…")

    def _on_event(self, event: Event) -> None:
        if hasattr(event, "loss"):
            for step, loss in event.history:  # the losses read from the device at this step
                self.plot.add_loss(step, loss)
            self.status.setText(f"step {event.step}/{event.steps}  loss {event.loss:.4g}")
            return
        if "dice" not in event.scores and "loss" in event.scores and not self.plot.by_loss:
            self.plot.judge_by_loss()  # the validation frames have no labels
        key = "loss" if self.plot.by_loss else "dice"
        if key in event.scores:
            self.plot.add_validation(event.step, event.scores[key])

    def _on_returned(self, model: ModelFile) -> None:
        self.model = model
        self.save_button.enabled = True
        steps = model.metadata.get("steps_trained", 0)
        seconds = time.perf_counter() - self.started
        self.status.setText(
            f"trained {steps} steps in {seconds:.0f} s wall time; the {self.title} is kept in "
            "memory"
        )
        if self.plot.by_loss:
            self.status.setText(f"{self.status.text()}\n{UNLABELLED}")
        scores = [value for _, value in self.plot.validation]
        advice = verdict(scores, self.plot.baseline, int(self.steps.value), self.plot.by_loss)
        if advice is not None:  # it moved nothing worth having
            self.status.setText(f"{self.status.text()}\n{advice}")
            show_warning(advice[:1].upper() + advice[1:] + ".")
        try:
            trained_models.add_trained(model, self._name_of(model), self.viewer)
        except Exception as err:  # never raise into Qt's event loop
            self.report(err)

    def _on_errored(self, err: BaseException) -> None:
        self.status.setText("training failed")
        self.report(err)

    def save(self, path: str | Path) -> Path | None:
        """Write the trained model to a ``.pt`` file.

        Parameters
        ----------
        path : str or Path
            Destination.

        Returns
        -------
        Path or None
            The written file, or None when there was nothing to save or writing failed.
        """
        if self.model is None:
            show_error(f"There is no trained {self.title} yet; press Train first.")
            return None
        try:
            return save(self.model, path)
        except (OSError, ValueError) as err:
            self.report(err)
            return None

    def _save_clicked(self, *_args: Any) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, f"Save the {self.title}", "model.pt", "Model files (*.pt)"
        )
        if path and self.save(path):
            show_info(f"Saved the {self.title} to {path}.")
