"""Training widgets: a feature extractor and a registration model, trained in napari.

Both are built on :class:`~napari_deepsim._widgets.train.base.TrainWidget` and differ in their
inputs and network. Either trains from one layer, from two or more layers of one shape
(stacked for the user, so two 2D sections or a pair of 3D volumes train a 2D or a 3D
model) or from a dataset folder. Trained models go to
:data:`napari_deepsim._state.models.trained_models`: the registration widget offers the feature
extractors trained here, and the Register widget selects a registration model as soon
as it is trained.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, ComboBox, FileEdit, FloatSpinBox

from napari_deepsim._jobs.train import (
    VALIDATION_FRAMES,
    TrainJob,
    check_features_data,
    split_registration_data,
)
from napari_deepsim._state.models import builtin_choices, trained_models
from napari_deepsim._widgets import tips
from napari_deepsim._widgets.controls import extractor_pickers
from napari_deepsim._widgets.subscriptions import subscribe
from napari_deepsim._widgets.train.base import TrainWidget

if TYPE_CHECKING:
    import napari

    from src_training.engine.public import Dataset, MetricSpec, ModelFile


def _metrics() -> dict[str, MetricSpec]:
    """Return the metric registry, importing torch only when a widget needs it."""
    from src_training.engine.public import METRICS

    return METRICS


class TrainFeaturesWidget(TrainWidget):
    """Train a feature extractor (segmentation or autoencoder) for the DeepSim metric.

    Parameters
    ----------
    napari_viewer : napari.Viewer
        The viewer whose image and labels layers are the training data.
    """

    title = "feature extractor"

    def _input_widgets(self) -> list[Any]:
        self.image = ComboBox(
            label="image", choices=self._images, nullable=True, tooltip=tips.IMAGE_TIP
        )
        self.labels = ComboBox(label="labels", choices=self._labels, nullable=True)
        self.labels.tooltip = "Frames where labels are painted are the training data"
        self.volume = CheckBox(
            text="3D layer is one volume (not 2D+t)", value=False, tooltip=tips.VOLUME_TIP
        )
        self.kind = ComboBox(
            label="kind",
            choices=["segmentation", "autoencoder", "self-supervised"],
            tooltip=tips.KIND_TIP,
        )
        return [self.image, self.labels, self.volume, self.layers, self.folder, self.kind]

    def _make_job(self) -> TrainJob:
        kind = str(self.kind.value)
        settings = self._settings()
        folder = self._folder()
        data = None if folder is not None else check_features_data(self._layer_data(kind), kind)
        return TrainJob(task="features", train=data, val=None, kind=kind, folder=folder, **settings)

    def _layer_data(self, kind: str) -> Dataset:
        from src_training.engine.arrays import dataset_from_arrays

        stacked = self._stacked()
        if stacked is not None:  # frames of 2D images or of 3D volumes
            images, labels, source = stacked
            keep = labels if kind == "segmentation" else None
            return dataset_from_arrays(images, keep, source, labelled_only=keep is not None)
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

    def _name_of(self, model: ModelFile) -> str:
        return f"{self.kind.value} extractor"


class TrainRegistrationWidget(TrainWidget):
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
        events = trained_models.events
        subscribe(self, [events.inserted, events.removed], self._extractors_changed)
        self._extractors_changed()
        self._metric_changed()

    def _input_widgets(self) -> list[Any]:
        self.image = ComboBox(
            label="image stack", choices=self._images, nullable=True, tooltip=tips.STACK_TIP
        )
        self.labels = ComboBox(label="labels stack", choices=self._labels, nullable=True)
        self.labels.tooltip = (
            f"Optional: for ncc-sup, and to score Dice on the last {VALIDATION_FRAMES} frames"
        )
        self.metric = ComboBox(
            label="metric", choices=list(_metrics()), value="ncc", tooltip=tips.METRIC_TIP
        )
        self.lam = FloatSpinBox(
            label="λ", value=0.5, min=0.0, max=1000.0, step=0.01, tooltip=tips.LAMBDA_TIP
        )
        self.extractor, self.extractor_file = extractor_pickers(
            self._extractors, "A built-in model's extractor, or one trained in this viewer"
        )
        self.weights = FileEdit(
            label="VGG16 weights",
            mode="r",
            filter="Weights (*.pt *.pth)",
            tooltip=tips.WEIGHTS_TIP,
        )
        return [
            self.image,
            self.labels,
            self.layers,
            self.folder,
            self.metric,
            self.lam,
            self.extractor,
            self.extractor_file,
            self.weights,
        ]

    def _extractors(self, _widget: Any = None) -> list[tuple[str, str | ModelFile]]:
        trained = [(m.name, m.model) for m in trained_models.of_kind("features")]
        return [*builtin_choices("features"), *trained]

    def _extractors_changed(self, *_args: Any) -> None:
        self.extractor.reset_choices()
        trained = trained_models.of_kind("features")
        if self.extractor.value is None and trained:
            self.extractor.value = trained[-1].model

    def _start_changed(self, *_args: Any) -> None:
        """Fine-tuning a built-in model: its metric (DeepSim) with its extractor."""
        super()._start_changed()
        name = str(self.start_from.value)
        if name:
            self.metric.value = "deepsim"
            self.extractor.value = name

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
            return {"extractor": self.extractor.value}  # a built-in name or a model
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
        from src_training.engine.arrays import dataset_from_arrays

        stacked = self._stacked()
        if stacked is not None:  # 2D images as a 2D+t stack, 3D volumes as a 3D+t stack
            return dataset_from_arrays(*stacked)
        image = self.image.value
        if image is None:
            raise ValueError("choose an image stack layer, two or more layers, or a dataset folder")
        if image.ndim not in (3, 4):
            raise ValueError(
                f"the layer {image.name!r} is one {image.ndim}D image; registration learns from "
                "pairs of frames, so select two or more layers of one shape under 'or layers' "
                "(stacked for you), or choose a 2D+t or 3D+t stack"
            )
        labels = self.labels.value
        return dataset_from_arrays(
            np.asarray(image.data),
            None if labels is None else np.asarray(labels.data),
            f"napari layer {image.name!r}",
        )

    def _name_of(self, model: ModelFile) -> str:
        return f"{model.metadata['metric']} model"
