"""Training widgets: a feature extractor and a registration model, trained in napari.

Training runs in a napari generator worker (:func:`napari_deepsim._train_job.train`)
that yields the trainer's events; the GUI thread receives them to draw the loss curve
and never waits for a step. Stop sets a flag that the trainer polls before its next
step. Trained models stay in memory, can be saved, and are shared through
:data:`napari_deepsim._train_job.trained_models`: the registration widget offers the
feature extractors trained here, and a trained registration model goes to the docked
Register widget.
"""

from __future__ import annotations

import threading
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
    SpinBox,
)
from napari.layers import Image, Labels, Layer
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from qtpy.QtWidgets import QApplication, QFileDialog, QLabel, QVBoxLayout, QWidget

from napari_deepsim._choices import disconnect, guess_training, inputs, partner, watch_layers
from napari_deepsim._register_widget import RegisterWidget
from napari_deepsim._train_job import (
    VALIDATION_FRAMES,
    TrainedModel,
    TrainJob,
    check_features_data,
    dataset_from_arrays,
    error_message,
    save,
    split_registration_data,
    train,
    trained_models,
)
from src_training.engine.options import parse_channels
from src_training.runtime.devices import DEVICE_CHOICES as DEVICES

if TYPE_CHECKING:
    import napari

    from src_training.data.datasets import Dataset
    from src_training.metrics import MetricSpec
    from src_training.networks.modelio import ModelFile
    from src_training.training.trainer import Event

MARGIN = 8


def _metrics() -> dict[str, MetricSpec]:
    """Return the metric registry, importing torch only when a widget needs it."""
    from src_training.metrics import METRICS

    return METRICS


class LossPlot(QWidget):
    """A small plot of the training loss per step and the validation scores."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(120)
        self.losses: list[tuple[int, float]] = []
        self.validation: list[tuple[int, float]] = []
        self.steps = 1

    def clear(self, steps: int) -> None:
        """Forget the points of the last run and set the x range to ``steps``.

        Parameters
        ----------
        steps : int
            Steps of the coming run.
        """
        self.losses, self.validation, self.steps = [], [], max(1, steps)
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        """Add the training loss of a step."""
        self.losses.append((step, loss))
        self.update()

    def add_validation(self, step: int, value: float) -> None:
        """Add a validation score (Dice, or loss without labels)."""
        self.validation.append((step, value))
        self.update()

    def _polygon(self, points: list[tuple[int, float]], low: float, high: float) -> QPolygonF:
        width = self.width() - 2 * MARGIN
        height = self.height() - 2 * MARGIN
        span = high - low or 1.0
        return QPolygonF(
            [
                QPointF(
                    MARGIN + width * step / self.steps,
                    MARGIN + height * (1 - (value - low) / span),
                )
                for step, value in points
            ]
        )

    def paintEvent(self, _event: QPaintEvent) -> None:
        """Draw the loss curve and the validation points, each scaled to the plot."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor("gray")))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        finite = [(s, v) for s, v in self.losses if np.isfinite(v)]
        if finite:
            values = [v for _, v in finite]
            painter.setPen(QPen(QColor("deepskyblue"), 1.5))
            painter.drawPolyline(self._polygon(finite, min(values), max(values)))
            painter.drawText(MARGIN + 2, MARGIN + 12, f"loss {values[-1]:.4g}")
        if self.validation:
            values = [v for _, v in self.validation]
            painter.setPen(QPen(QColor("orange"), 2))
            painter.setBrush(QColor("orange"))
            for point in self._polygon(self.validation, min(values), max(values)):
                painter.drawEllipse(point, 3, 3)
            painter.drawText(MARGIN + 2, MARGIN + 26, f"validation {values[-1]:.4g}")
        painter.end()


class _TrainWidget(QWidget):
    """Common parts: settings, Train/Stop, loss plot, keeping and saving the model."""

    title = "model"

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.model: ModelFile | None = None
        self._stop = threading.Event()
        self._started = 0.0
        self.folder = FileEdit(label="or folder", mode="d")
        self.folder.tooltip = "A dataset folder (used instead of the layers when set)"
        self.steps = SpinBox(label="steps", value=500, min=1, max=1_000_000)
        self.crop = SpinBox(label="crop", value=64, min=8, max=4096)
        self.lr = FloatSpinBox(label="learning rate", value=1e-3, min=1e-6, max=1.0, step=1e-4)
        self.lr.native.setDecimals(6)
        self.channels = LineEdit(label="channels", value="16,32,64")
        self.device = ComboBox(label="device", choices=list(DEVICES), value="auto")
        self.train_button = PushButton(text="Train")
        self.save_button = PushButton(text="Save…", enabled=False)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.plot = LossPlot()
        self.inputs = Container(widgets=self._input_widgets())
        self.settings = Container(
            widgets=[self.steps, self.crop, self.lr, self.channels, self.device, self.train_button]
        )
        column = QVBoxLayout(self)
        column.addWidget(self.inputs.native)
        column.addWidget(self.settings.native)
        column.addWidget(self.plot)
        column.addWidget(self.status)
        column.addWidget(self.save_button.native)
        column.addStretch()
        self.train_button.changed.connect(self._train_clicked)
        self.save_button.changed.connect(self._save_clicked)
        watch_layers(self, self.viewer, self.reset_choices)
        self.reset_choices()

    def _input_widgets(self) -> list[Any]:
        raise NotImplementedError

    def _make_job(self) -> TrainJob:
        raise NotImplementedError

    def _trained(self, model: ModelFile) -> None:
        raise NotImplementedError

    stack = False  # whether training needs a stack of frames (for the layer guess)

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

    def _layers(self, kind: type[Layer]) -> list[tuple[str, Layer]]:
        return [(layer.name, layer) for layer in inputs(self.viewer, kind)]

    def _images(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return self._layers(Image)

    def _labels(self, _widget: Any = None) -> list[tuple[str, Layer]]:
        return self._layers(Labels)

    def _folder(self) -> Path | None:
        path = Path(self.folder.value)
        return None if str(path) in ("", ".") else path

    def _settings(self) -> dict[str, Any]:
        return {
            "steps": int(self.steps.value),
            "crop": int(self.crop.value),
            "lr": float(self.lr.value),
            "channels": parse_channels(str(self.channels.value), "the channels"),
            "device": str(self.device.value),
        }

    @property
    def running(self) -> bool:
        """Whether training is in progress."""
        return self.worker is not None

    def _train_clicked(self, *_args: Any) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

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
            show_error(error_message(err))
            return None
        self._stop.clear()
        self._started = time.perf_counter()
        self.plot.clear(job.steps)
        worker = create_worker(
            train,
            job,
            self._stop.is_set,
            _progress={"total": job.events, "desc": f"Training the {self.title}"},
            _ignore_errors=True,
            _start_thread=False,
        )
        worker.yielded.connect(self._on_event)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self.worker = worker
        self.train_button.text = "Stop"
        self.status.setText("training…")
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the running training to end before its next step (the model is kept)."""
        self._stop.set()
        self.status.setText("stopping…")

    def _on_event(self, event: Event) -> None:
        if hasattr(event, "loss"):
            self.plot.add_loss(event.step, event.loss)
            self.status.setText(f"step {event.step}/{event.steps}  loss {event.loss:.4g}")
            return
        key = "dice" if "dice" in event.scores else "loss"
        if key in event.scores:
            self.plot.add_validation(event.step, event.scores[key])

    def _on_returned(self, model: ModelFile) -> None:
        self.model = model
        self.save_button.enabled = True
        steps = model.metadata.get("steps_trained", 0)
        seconds = time.perf_counter() - self._started
        self.status.setText(
            f"trained {steps} steps in {seconds:.0f} s; the {self.title} is kept in memory"
        )
        try:
            self._trained(model)
        except Exception as err:  # never raise into Qt's event loop
            show_error(error_message(err))

    def _on_errored(self, err: BaseException) -> None:
        self.status.setText("training failed")
        show_error(error_message(err))

    def _on_finished(self) -> None:
        self.worker = None
        self.train_button.text = "Train"

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
            show_error(error_message(err))
            return None

    def _save_clicked(self, *_args: Any) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, f"Save the {self.title}", "model.pt", "Model files (*.pt)"
        )
        if path and self.save(path):
            show_info(f"Saved the {self.title} to {path}.")


class TrainFeaturesWidget(_TrainWidget):
    """Train a feature extractor (segmentation or autoencoder) for the DeepSim metric.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose image and labels layers are the training data.
    """

    title = "feature extractor"

    def _input_widgets(self) -> list[Any]:
        self.image = ComboBox(label="image", choices=self._images, nullable=True)
        self.labels = ComboBox(label="labels", choices=self._labels, nullable=True)
        self.labels.tooltip = "Frames where labels are painted are the training data"
        self.volume = CheckBox(text="3D layer is one volume (not 2D+t)", value=False)
        self.kind = ComboBox(label="kind", choices=["segmentation", "autoencoder"])
        return [self.image, self.labels, self.volume, self.folder, self.kind]

    def _make_job(self) -> TrainJob:
        kind = str(self.kind.value)
        settings = self._settings()
        folder = self._folder()
        data = None if folder is not None else check_features_data(self._layer_data(kind), kind)
        return TrainJob(task="features", train=data, val=None, kind=kind, folder=folder, **settings)

    def _layer_data(self, kind: str) -> Dataset:
        image = self.image.value
        if image is None:
            raise ValueError("choose an image layer or a dataset folder")
        labels = self.labels.value if kind == "segmentation" else None
        return dataset_from_arrays(
            np.asarray(image.data),
            None if labels is None else np.asarray(labels.data),
            f"napari layer {image.name!r}",
            volume=bool(self.volume.value),
            labelled_only=labels is not None,
        )

    def _trained(self, model: ModelFile) -> None:
        count = sum(m.model.kind == "features" for m in trained_models) + 1
        trained_models.append(TrainedModel(f"{self.kind.value} extractor #{count}", model))


class TrainRegistrationWidget(_TrainWidget):
    """Train a registration model on the frames of a stack with any registered metric.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose stack layer is the training data.
    """

    title = "registration model"
    stack = True

    def __init__(self, napari_viewer: napari.Viewer) -> None:
        super().__init__(napari_viewer)
        self.metric.changed.connect(self._metric_changed)
        trained_models.events.inserted.connect(self._extractors_changed)
        self.destroyed.connect(
            partial(disconnect, [trained_models.events.inserted], self._extractors_changed)
        )
        self._extractors_changed()
        self._metric_changed()

    def _input_widgets(self) -> list[Any]:
        self.image = ComboBox(label="image stack", choices=self._images, nullable=True)
        self.labels = ComboBox(label="labels stack", choices=self._labels, nullable=True)
        self.labels.tooltip = (
            f"Optional: for ncc-sup, and to score Dice on the last {VALIDATION_FRAMES} frames"
        )
        self.metric = ComboBox(label="metric", choices=list(_metrics()), value="ncc")
        self.lam = FloatSpinBox(label="λ", value=0.5, min=0.0, max=1000.0, step=0.01)
        self.extractor = ComboBox(
            label="feature extractor", choices=self._extractors, nullable=True
        )
        self.extractor_file = FileEdit(
            label="or extractor file", mode="r", filter="Model files (*.pt *.pth)"
        )
        self.weights = FileEdit(label="VGG16 weights", mode="r", filter="Weights (*.pt *.pth)")
        return [
            self.image,
            self.labels,
            self.folder,
            self.metric,
            self.lam,
            self.extractor,
            self.extractor_file,
            self.weights,
        ]

    def _extractors(self, _widget: Any = None) -> list[tuple[str, ModelFile]]:
        return [(m.name, m.model) for m in trained_models if m.model.kind == "features"]

    def _extractors_changed(self, *_args: Any) -> None:
        self.extractor.reset_choices()
        extractors = [choice for choice in self.extractor.choices if choice is not None]
        if self.extractor.value is None and extractors:
            self.extractor.value = extractors[-1]

    def _metric_changed(self, *_args: Any) -> None:
        spec = _metrics()[str(self.metric.value)]
        self.lam.value = spec.default_lambda
        for widget in (self.extractor, self.extractor_file):
            widget.enabled = spec.needs_extractor
        self.weights.enabled = spec.needs_weights

    def _metric_options(self) -> dict[str, Any]:
        spec = _metrics()[str(self.metric.value)]
        if spec.needs_weights:
            path = Path(self.weights.value)
            if not path.is_file():
                raise ValueError(f"the {spec.name} metric needs a VGG16 weights file; choose one")
            return {"weights": str(path)}
        if not spec.needs_extractor:
            return {}
        if self.extractor.value is not None:
            return {"extractor": self.extractor.value}
        path = Path(self.extractor_file.value)
        if not path.is_file():
            raise ValueError(
                f"the {spec.name} metric needs a feature extractor; train one with "
                "'Train feature extractor' or choose an extractor file"
            )
        return {"extractor": str(path)}

    def _make_job(self) -> TrainJob:
        settings = self._settings()
        options = self._metric_options()
        folder = self._folder()
        metric = str(self.metric.value)
        data, val = None, None
        if folder is None:
            needs_labels = _metrics()[metric].needs_labels
            data, val = split_registration_data(self._layer_data(), metric, needs_labels)
        return TrainJob(
            task="registration",
            train=data,
            val=val,
            folder=folder,
            metric=str(self.metric.value),
            lam=float(self.lam.value),
            metric_options=options,
            **settings,
        )

    def _layer_data(self) -> Dataset:
        image = self.image.value
        if image is None:
            raise ValueError("choose an image stack layer or a dataset folder")
        if image.ndim not in (3, 4):
            raise ValueError(
                f"the layer {image.name!r} is {image.ndim}D; registration trains on frames, so "
                "choose a 2D+t or 3D+t stack (or a dataset folder)"
            )
        labels = self.labels.value
        return dataset_from_arrays(
            np.asarray(image.data),
            None if labels is None else np.asarray(labels.data),
            f"napari layer {image.name!r}",
        )

    def _trained(self, model: ModelFile) -> None:
        count = sum(m.model.kind == "registration" for m in trained_models) + 1
        trained_models.append(TrainedModel(f"{model.metadata['metric']} model #{count}", model))
        for widget in QApplication.allWidgets():
            if isinstance(widget, RegisterWidget) and widget.viewer is self.viewer:
                widget.set_model(model)
                show_info("The trained registration model is now used by the Register widget.")
