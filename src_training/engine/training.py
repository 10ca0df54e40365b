"""Train a feature extractor or a registration model: datasets and options in, a trainer out.

The returned trainer's :meth:`~src_training.training.trainer.Trainer.run` yields the
progress events (steps and validations) and can be stopped between steps; its
:meth:`~src_training.training.trainer.Trainer.model_file` is the trained model in
memory, and with ``out`` the model, checkpoint and log are written as it goes. The
run's precision, ``torch.compile`` and how often losses are read are settings of the
:class:`~src_training.training.trainer.TrainConfig`; activation checkpointing is an
argument of the trainers' builders (it changes how the network runs, not what it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src_training.data.datasets import Dataset
from src_training.engine.metrics import registration_metric
from src_training.metrics.registry import Similarity, metric_spec
from src_training.models import is_builtin, resolve
from src_training.networks.modelio import ModelFile, load_model, require_kind
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.training.trainer import TrainConfig
from src_training.training.trainers import DenoisingTrainer, FeatureTrainer, RegistrationTrainer

DEFAULT_CHANNELS = (64, 128, 256)
ARCHITECTURE = {
    "ndim": "dimensionality",
    "in_channels": "number of image channels",
    "num_classes": "number of classes",
    "kind": "kind",
    "diffeomorphic": "diffeomorphic setting",
}
Source = str | Path | ModelFile
SELF_SUPERVISED_NOISE = 0.3
SELF_SUPERVISED = "denoising autoencoder, no labels: two noisy views of each crop (Noise2Noise)"


def _network(
    cls: type[FeatureExtractor] | type[RegistrationNet],
    init: Source | None,
    fixed: dict[str, Any],
    channels: Sequence[int] | None,
    tuning: dict[str, Any] | None = None,
) -> FeatureExtractor | RegistrationNet:
    """Build a new network, or a copy of ``init``'s checked against what the data fixes.

    Parameters
    ----------
    cls : type
        The network class.
    init : str, Path or ModelFile, optional
        A model (file, built-in name or in memory) whose weights to start from.
    fixed : dict
        Constructor arguments the data and task fix (an ``init`` must have them).
    channels : sequence of int, optional
        Encoder channels; None takes ``init``'s (or :data:`DEFAULT_CHANNELS`).
    tuning : dict, optional
        Constructor arguments that are not architecture (``dice_weight``,
        ``activation_checkpointing``).

    Returns
    -------
    FeatureExtractor or RegistrationNet
        The network.
    """
    tuning = tuning or {}
    if init is None:
        return cls(**fixed, channels=tuple(channels or DEFAULT_CHANNELS), **tuning)
    kind = "features" if cls is FeatureExtractor else "registration"
    name = "the initial model" if isinstance(init, ModelFile) else str(init)
    model = init if isinstance(init, ModelFile) else load_model(resolve(init, kind))
    require_kind(model, kind, name)
    config = dict(model.metadata["network"])
    for key, wanted in fixed.items():
        if config.get(key) != wanted:
            raise ValueError(
                f"cannot fine-tune {name}: its {ARCHITECTURE[key]} is {config.get(key)} but "
                f"this training needs {wanted}; start from a model made for such data, or "
                "train without --init"
            )
    if channels is not None and list(channels) != list(config["channels"]):
        shown = ",".join(map(str, config["channels"]))
        raise ValueError(
            f"--channels {','.join(map(str, channels))} differs from the channels of {name} "
            f"({shown}); leave --channels out to fine-tune it"
        )
    network = cls(**{**config, **tuning})
    network.load_state_dict(model.network.state_dict())
    return network


def _init_metadata(init: Source | None) -> dict[str, Any]:
    """Return what a model file records about the model it was fine-tuned from."""
    if init is None:
        return {}
    return {"init": "a model in memory" if isinstance(init, ModelFile) else str(init)}


def training_metric(
    model: ModelFile, *, ndim: int, channels: int, vgg_weights: str | None = None
) -> Similarity:
    """Rebuild the metric a registration model was trained with, for use without labels.

    Parameters
    ----------
    model : ModelFile
        A registration model; its metadata names the metric, the feature extractor and
        the DeepSim feature levels it was trained with.
    ndim, channels : int
        The data the metric will compare.
    vgg_weights : str, optional
        The VGG16 weights file, for a model trained with vgg.

    Returns
    -------
    Similarity
        The model's metric; ``ncc-sup`` becomes ``ncc``, its label-free part, since
        registering a pair sees no fixed labels.

    Raises
    ------
    ValueError
        If the metadata names no metric or its extractor file is gone.
    """
    name = model.metadata.get("metric")
    if not name:
        raise ValueError(
            "the model file does not say which metric it was trained with; "
            "pass a metric by name (e.g. --refine ncc) instead of own"
        )
    name = "ncc" if name == "ncc-sup" else str(name)
    features = model.metadata.get("features")
    needs_file = metric_spec(name).extractor_kind is not None and not is_builtin(features)
    if needs_file and features and not Path(str(features)).is_file():
        raise ValueError(
            f"the model was trained with the feature extractor {features}, which is "
            "not there any more; pass --refine deepsim:F.pt with its new place"
        )
    return registration_metric(
        name,
        ndim=ndim,
        channels=channels,
        features=features,
        vgg_weights=vgg_weights,
        feature_levels=model.metadata.get("feature_levels"),
    )


def features_trainer(
    train: Dataset,
    val: Dataset | None,
    config: TrainConfig,
    *,
    kind: str | None = None,
    channels: Sequence[int] | None = None,
    dice_weight: float = 0.0,
    self_supervised: bool = False,
    init: Source | None = None,
    checkpointing: bool = False,
    out: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    what: str = "the training data",
) -> FeatureTrainer:
    """Build a feature extractor for the data and its trainer.

    Parameters
    ----------
    train, val : Dataset
        Training and (optional) validation data.
    config : TrainConfig
        Optimisation settings (its seed also seeds the weights).
    kind : {"segmentation", "autoencoder"}, optional
        The extractor's task; by default segmentation, or autoencoder when
        ``self_supervised``.
    channels : sequence of int, optional
        Encoder channels; by default ``init``'s, or :data:`DEFAULT_CHANNELS`.
    dice_weight : float
        Weight of the soft Dice term of segmentation.
    self_supervised : bool
        Train an autoencoder without labels to denoise two noisy views of each crop
        (:class:`~src_training.training.trainers.DenoisingTrainer`, noise σ
        ``config.augment.noise``, e.g. :data:`SELF_SUPERVISED_NOISE`), for DeepSim-AE.
    init : str, Path or ModelFile, optional
        An extractor (file, built-in name or in memory) to fine-tune instead of new
        weights; refused unless it suits the data and the kind.
    checkpointing : bool
        Activation checkpointing: recompute each U-Net stage in the backward pass
        instead of keeping its activations (less memory, about one more forward pass).
    out : str or Path, optional
        Model file to write as training goes.
    metadata : dict, optional
        Facts to record in the model file.
    device : torch.device or str
        Where to train.
    rank, world_size : int
        Process index and count under distributed training.
    what : str
        How messages name the training data.

    Returns
    -------
    FeatureTrainer
        Ready to :meth:`run`.
    """
    kind = kind or ("autoencoder" if self_supervised else "segmentation")
    if self_supervised and not np.ptp(train.images.reshape(len(train.images), -1), 1).any():
        raise ValueError(
            f"{what} has only constant images, with nothing to learn features from; "
            "self-supervised training needs images with some structure"
        )
    unlabelled = train.labels is None or train.num_classes < 2
    if kind == "segmentation" and unlabelled and not self_supervised:
        raise ValueError(
            f"{what} has no label images with at least 2 classes; a segmentation extractor "
            "needs labels (or use --self-supervised, which needs none)"
        )
    if not 0 <= dice_weight < float("inf"):
        raise ValueError(f"--dice-weight must be a finite number >= 0, got {dice_weight}")
    torch.manual_seed(config.seed)
    fixed = {
        "ndim": train.ndim,
        "in_channels": train.channels,
        "num_classes": max(train.num_classes, 2),
        "kind": kind,
    }
    tuning = {"dice_weight": dice_weight, "activation_checkpointing": checkpointing}
    network = _network(FeatureExtractor, init, fixed, channels, tuning)
    meta = {"task": "features", **_init_metadata(init), **(metadata or {})}
    if self_supervised:
        meta["self_supervised"] = {"objective": SELF_SUPERVISED, "noise": config.augment.noise}
    trainer = DenoisingTrainer if self_supervised else FeatureTrainer
    return trainer(network, config, train, val, out, meta, device, rank, world_size)


def registration_trainer(
    train: Dataset,
    val: Dataset | None,
    metric: Similarity,
    config: TrainConfig,
    *,
    lam: float | None = None,
    regulariser: str = "diffusion",
    channels: Sequence[int] | None = None,
    diffeomorphic: bool = False,
    init: Source | None = None,
    checkpointing: bool = False,
    out: str | Path | None = None,
    metadata: dict[str, Any] | None = None,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
) -> RegistrationTrainer:
    """Build a registration network for the data and its trainer.

    Parameters
    ----------
    train, val : Dataset
        Training and (optional) validation data.
    metric : Similarity
        From :func:`registration_metric`.
    config : TrainConfig
        Optimisation settings (its seed also seeds the weights).
    lam : float, optional
        Regulariser weight; the metric's default when None.
    regulariser : str
        ``diffusion`` or ``bending``.
    channels : sequence of int, optional
        Encoder channels; by default ``init``'s, or :data:`DEFAULT_CHANNELS`.
    diffeomorphic : bool
        Predict a velocity field and integrate it.
    init : str, Path or ModelFile, optional
        A registration model (file, built-in name or in memory) to fine-tune instead
        of new weights; refused unless it suits the data.
    checkpointing, out, metadata, device, rank, world_size
        As for :func:`features_trainer`.

    Returns
    -------
    RegistrationTrainer
        Ready to :meth:`run`.
    """
    torch.manual_seed(config.seed)
    fixed = {"ndim": train.ndim, "in_channels": train.channels, "diffeomorphic": diffeomorphic}
    tuning = {"activation_checkpointing": checkpointing}
    network = _network(RegistrationNet, init, fixed, channels, tuning)
    return RegistrationTrainer(
        network,
        config,
        train,
        metric=metric,
        lam=metric.spec.default_lambda if lam is None else lam,
        regulariser=regulariser,
        val=val,
        out=out,
        metadata={"task": "registration", **_init_metadata(init), **(metadata or {})},
        device=device,
        rank=rank,
        world_size=world_size,
    )
