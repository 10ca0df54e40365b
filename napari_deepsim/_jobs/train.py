"""Training jobs of the training widgets, free of Qt so they run in a worker thread.

A job holds NumPy copies of the inputs and the settings; :func:`train` builds the
dataset, network and trainer, yields the trainer's events and returns the trained
model as an in-memory :class:`~src_training.networks.modelio.ModelFile`. Torch and the core
training code are imported inside functions.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src_training.engine.public import (
        Dataset,
        Event,
        FeatureTrainer,
        ModelFile,
        RegistrationTrainer,
        TrainConfig,
    )

VALIDATION_FRAMES = 2  # registration with labels holds out the last frames to score Dice


@dataclass
class TrainJob:
    """Everything a training run needs, copied from the widget on the GUI thread.

    Attributes
    ----------
    task : {"features", "registration"}
        What to train.
    train : Dataset or None
        Training data; None to load ``folder`` in the worker.
    val : Dataset or None
        Validation data.
    steps, crop : int
        Optimisation steps and training crop side.
    batch_size : int
        Pairs (or images) per step.
    lr : float
        Learning rate.
    channels : tuple of int or None
        Encoder channels; None with ``init`` (its channels).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    precision : str
        ``auto``, ``fp32``, ``bf16`` or ``fp16``.
    checkpointing : bool
        Activation checkpointing (less memory, about one more forward pass).
    kind : str
        Feature extractor kind (``segmentation``, ``autoencoder``, or
        ``self-supervised``: a denoising autoencoder, see
        :func:`~src_training.engine.training.features_trainer`).
    metric : str
        Registration metric name.
    lam : float
        Regulariser weight.
    metric_options : dict
        Options of the metric (``extractor`` or ``weights``).
    folder : Path or None
        A dataset folder, read by :func:`train` in the worker thread (it can be large)
        and checked like layer data.
    init : str or None
        A built-in model (or model file) to fine-tune instead of new weights.
    """

    task: str
    train: Dataset | None
    val: Dataset | None
    steps: int
    crop: int
    lr: float
    channels: tuple[int, ...] | None
    device: str = "auto"
    batch_size: int = 4
    precision: str = "auto"
    checkpointing: bool = False
    kind: str = "segmentation"
    metric: str = "ncc"
    lam: float = 0.5
    metric_options: dict[str, Any] = field(default_factory=dict)
    folder: Path | None = None
    init: str | None = None

    @property
    def val_every(self) -> int:
        """Validate ten times per run (and at the end)."""
        return max(1, self.steps // 10)

    @property
    def events(self) -> int:
        """Number of events the run yields: one per step and per validation.

        Before a folder is read, a registration run counts its possible validations.
        """
        if self.val is None and (self.task == "features" or self.train is not None):
            return self.steps
        return self.steps + -(-self.steps // self.val_every)


def check_features_data(data: Dataset, kind: str) -> Dataset:
    """Refuse data a feature extractor of ``kind`` cannot train on.

    Parameters
    ----------
    data : Dataset
        Training frames.
    kind : str
        ``segmentation`` or ``autoencoder``.

    Returns
    -------
    Dataset
        ``data``, unchanged.
    """
    if kind == "segmentation" and data.labels is None:
        raise ValueError("segmentation needs labels; choose a labels layer or an autoencoder")
    if kind == "segmentation" and data.num_classes < 2:
        raise ValueError("the labels hold one class; paint at least two classes")
    return data


def split_registration_data(
    data: Dataset, metric: str, needs_labels: bool
) -> tuple[Dataset, Dataset | None]:
    """Check registration training data and hold out its last frames when labelled.

    Parameters
    ----------
    data : Dataset
        All frames.
    metric : str
        The metric's name, for the message.
    needs_labels : bool
        Whether the metric reads labels.

    Returns
    -------
    train, val : Dataset
        Training frames, and the last :data:`VALIDATION_FRAMES` frames to score Dice on
        (None without labels or with too few frames).
    """
    if len(data) < 2:
        raise ValueError("registration needs at least two frames")
    if needs_labels and data.labels is None:
        raise ValueError(f"the {metric} metric needs a labels stack; choose one")
    if data.labels is None or len(data) < VALIDATION_FRAMES + 2:
        return data, None
    split = len(data) - VALIDATION_FRAMES
    return data.subset(range(split)), data.subset(range(split, len(data)))


def read_folder(job: TrainJob) -> tuple[Dataset, Dataset | None]:
    """Read and check the job's dataset folder (in the worker thread).

    Parameters
    ----------
    job : TrainJob
        A job with ``folder`` set.

    Returns
    -------
    train, val : Dataset
        As the widget would have built them from layers.
    """
    from src_training.engine.public import METRICS, load_dataset

    if job.folder is None:
        raise ValueError("the job has neither data nor a dataset folder")
    if job.task == "features":
        labels = "classes" if job.kind == "segmentation" else "none"
        return check_features_data(load_dataset(job.folder, labels=labels), job.kind), None
    return split_registration_data(
        load_dataset(job.folder), job.metric, METRICS[job.metric].needs_labels
    )


def train(job: TrainJob, stop: Callable[[], bool]) -> Generator[Event, None, ModelFile]:
    """Train the job's network, yielding each step and validation event.

    Parameters
    ----------
    job : TrainJob
        Data and settings.
    stop : callable
        Polled before every step; True ends the run early with the current weights.

    Yields
    ------
    StepEvent or ValidationEvent
        Progress.

    Returns
    -------
    ModelFile
        The trained network (on the CPU, in eval mode) and its metadata.
    """
    from src_training.engine.arrays import training_augment
    from src_training.engine.public import TrainConfig, resolve_device
    from src_training.engine.training import SELF_SUPERVISED_NOISE

    device = resolve_device(job.device)
    data, val = (job.train, job.val) if job.train is not None else read_folder(job)
    crop = min(job.crop, *data.images.shape[2:])
    self_supervised = job.kind == "self-supervised"
    config = TrainConfig(
        augment=training_augment(SELF_SUPERVISED_NOISE if self_supervised else 0.0),
        steps=job.steps,
        lr=job.lr,
        crop=crop,
        val_every=job.val_every,
        batch_size=job.batch_size,
        precision=job.precision,
    )
    trainer = _trainer(job, data, val, config, device)
    yield from trainer.run(stop=stop)
    return trainer.model_file()


def _trainer(
    job: TrainJob, data: Dataset, val: Dataset | None, config: TrainConfig, device: Any
) -> FeatureTrainer | RegistrationTrainer:
    """Build the engine's trainer of the job's network on its data."""
    from src_training.engine.metrics import registration_metric
    from src_training.engine.training import (
        features_trainer,
        registration_trainer,
    )

    metadata = {"source": "napari-deepsim training widget"}
    if job.task == "features":
        return features_trainer(
            data,
            val,
            config,
            kind=None if job.kind == "self-supervised" else job.kind,
            self_supervised=job.kind == "self-supervised",
            channels=job.channels,
            init=job.init,
            checkpointing=job.checkpointing,
            metadata=metadata,
            device=device,
        )
    else:
        metric = registration_metric(
            job.metric,
            ndim=data.ndim,
            channels=data.channels,
            features=job.metric_options.get("extractor"),
            vgg_weights=job.metric_options.get("weights"),
            how_to_get_extractor=(
                "train one with 'Train feature extractor', or choose a built-in one or a file"
            ),
        )
        return registration_trainer(
            data,
            val,
            metric,
            config,
            lam=job.lam,
            channels=job.channels,
            init=job.init,
            checkpointing=job.checkpointing,
            metadata=metadata,
            device=device,
        )


def save(model: ModelFile, path: str | Path) -> Path:
    """Write a model trained in this session to a file that ``load_model`` reads.

    Parameters
    ----------
    model : ModelFile
        The trained model.
    path : str or Path
        Destination ``.pt`` file.

    Returns
    -------
    Path
        The written file.
    """
    from src_training.engine.public import save_model

    extra = {k: v for k, v in model.metadata.items() if k not in ("kind", "network")}
    return save_model(path, model.network, extra)
