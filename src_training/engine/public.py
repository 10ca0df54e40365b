"""The core's public types and small helpers that front ends use beside the engine's functions.

The napari plugin imports nothing of the core but :mod:`src_training.engine`: the engine's
functions for the work, and this module for what a front end shows, checks or passes on
(the model and field file types, the built-in models, the metric registry, the device
choices, the sample data and its download, the datasets and trainers the training jobs
drive, resampling a layer onto another grid). Importing
it loads no torch: the names whose modules need torch (the metric registry, the model
files, the training settings) are read from their modules when first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from src_training import __version__
from src_training.data.ctc import fetch, read_sequence
from src_training.data.datasets import Dataset, load_dataset
from src_training.data.normalise import resample, resample_onto
from src_training.data.samples import noisy_cell_sequence
from src_training.models import builtin_models, is_builtin, resolve
from src_training.runtime.devices import DEVICE_CHOICES, PRECISION_CHOICES, resolve_device
from src_training.spatial.fieldio import FieldFile, load_field, provenance, save_field
from src_training.spatial.grid import grid_lines
from src_training.spatial.itkfield import itk_suffix

if TYPE_CHECKING:
    from src_training.metrics import METRICS
    from src_training.metrics.registry import MetricSpec, metric_spec
    from src_training.networks.modelio import ModelFile, load_model, save_model
    from src_training.optimisation import OptimiseEvent
    from src_training.training.trainer import Event, TrainConfig
    from src_training.training.trainers import FeatureTrainer, RegistrationTrainer

_WITH_TORCH = {
    "METRICS": "src_training.metrics",
    "MetricSpec": "src_training.metrics.registry",
    "metric_spec": "src_training.metrics.registry",
    "ModelFile": "src_training.networks.modelio",
    "load_model": "src_training.networks.modelio",
    "save_model": "src_training.networks.modelio",
    "Event": "src_training.training.trainer",
    "TrainConfig": "src_training.training.trainer",
    "OptimiseEvent": "src_training.optimisation",
    "FeatureTrainer": "src_training.training.trainers",
    "RegistrationTrainer": "src_training.training.trainers",
}

__all__ = [
    "DEVICE_CHOICES",
    "METRICS",
    "PRECISION_CHOICES",
    "Dataset",
    "Event",
    "FeatureTrainer",
    "FieldFile",
    "MetricSpec",
    "ModelFile",
    "OptimiseEvent",
    "RegistrationTrainer",
    "TrainConfig",
    "__version__",
    "builtin_models",
    "fetch",
    "grid_lines",
    "is_builtin",
    "itk_suffix",
    "load_dataset",
    "load_field",
    "load_model",
    "metric_spec",
    "noisy_cell_sequence",
    "provenance",
    "read_sequence",
    "resample",
    "resample_onto",
    "resolve",
    "resolve_device",
    "save_field",
    "save_model",
]


def __getattr__(name: str) -> Any:
    """Read a name whose module needs torch from that module, when it is first used."""
    if name in _WITH_TORCH:
        return getattr(importlib.import_module(_WITH_TORCH[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
