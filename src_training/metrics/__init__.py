"""Image similarity metrics for registration, built by name from one registry.

Every metric is a loss (lower is better) and an :class:`torch.nn.Module` called as
``metric(warped, fixed, **extra)`` on ``(B, C, *spatial)`` tensors with
``spatial = (H, W)`` or ``(D, H, W)``. The dimensionality is read from the data; the
result is a scalar tensor, the mean over the batch. Metrics that hold a network keep
it frozen and in eval mode whatever ``train()`` is called with; gradients still flow
to ``warped``.

Use :func:`get_metric` to build a metric by name and :data:`METRICS` to list them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from src_training.metrics.features import VGG, DeepSim, DeepSimAE, feature_cosine_loss
from src_training.metrics.intensity import MSE, NCC, SupervisedNCC, local_ncc, soft_dice_loss
from src_training.metrics.mind import MIND, mind_ssc
from src_training.metrics.nmi import NMI

__all__ = [
    "METRICS",
    "MIND",
    "MSE",
    "NCC",
    "NMI",
    "VGG",
    "DeepSim",
    "DeepSimAE",
    "MetricSpec",
    "SupervisedNCC",
    "feature_cosine_loss",
    "get_metric",
    "local_ncc",
    "metric_names",
    "metric_spec",
    "mind_ssc",
    "soft_dice_loss",
]


@dataclass(frozen=True)
class MetricSpec:
    """Registry entry of a similarity metric.

    Attributes
    ----------
    name : str
        Registry key.
    description : str
        One line for listings.
    factory : Callable[..., nn.Module]
        Builds the metric from keyword options.
    needs_labels : bool
        Whether ``forward`` needs ``warped_labels`` and ``fixed_labels``.
    needs_extractor : bool
        Whether the factory needs a trained feature extractor (``extractor=``).
    needs_weights : bool
        Whether the factory needs pretrained weights (``weights=`` or ``network=``).
    default_lambda : float
        Default weight of the diffusion regulariser for this metric.
    """

    name: str
    description: str
    factory: Callable[..., nn.Module]
    needs_labels: bool
    needs_extractor: bool
    needs_weights: bool
    default_lambda: float


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            name="mse",
            description="mean squared intensity difference",
            factory=MSE,
            needs_labels=False,
            needs_extractor=False,
            needs_weights=False,
            default_lambda=0.02,
        ),
        MetricSpec(
            name="ncc",
            description="local squared normalised cross-correlation in a 9-voxel window",
            factory=NCC,
            needs_labels=False,
            needs_extractor=False,
            needs_weights=False,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="ncc-sup",
            description="NCC plus the overlap of warped one-hot labels (needs label images)",
            factory=SupervisedNCC,
            needs_labels=True,
            needs_extractor=False,
            needs_weights=False,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="nmi",
            description="normalised mutual information with Parzen-window histograms",
            factory=NMI,
            needs_labels=False,
            needs_extractor=False,
            needs_weights=False,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="mind",
            description="MIND-SSC self-similarity context descriptors",
            factory=MIND,
            needs_labels=False,
            needs_extractor=False,
            needs_weights=False,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="vgg",
            description="cosine similarity of ImageNet VGG16 features (needs VGG16 weights)",
            factory=VGG,
            needs_labels=False,
            needs_extractor=False,
            needs_weights=True,
            default_lambda=1.0,
        ),
        MetricSpec(
            name="deepsim",
            description="cosine similarity of a segmentation network's features (DeepSim)",
            factory=DeepSim,
            needs_labels=False,
            needs_extractor=True,
            needs_weights=False,
            default_lambda=1.0,
        ),
        MetricSpec(
            name="deepsim-ae",
            description="cosine similarity of an autoencoder's features (DeepSim-AE)",
            factory=DeepSimAE,
            needs_labels=False,
            needs_extractor=True,
            needs_weights=False,
            default_lambda=1.0,
        ),
    )
}


def metric_names() -> list[str]:
    """Return the registered metric names in listing order.

    Returns
    -------
    list of str
        Names accepted by :func:`get_metric`.
    """
    return list(METRICS)


def metric_spec(name: str) -> MetricSpec:
    """Return the registry entry of a metric.

    Parameters
    ----------
    name : str
        One of :func:`metric_names`.

    Returns
    -------
    MetricSpec
        Its entry.

    Raises
    ------
    ValueError
        If ``name`` is not registered; the message lists the valid names.
    """
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; choose one of {', '.join(METRICS)}")
    return METRICS[name]


def get_metric(name: str, **options: object) -> nn.Module:
    """Build a similarity metric by name.

    Parameters
    ----------
    name : str
        One of :func:`metric_names`.
    **options
        Keyword options of the metric's factory, e.g. ``window=9`` for ``ncc`` or
        ``extractor=net`` for ``deepsim``.

    Returns
    -------
    nn.Module
        The metric, a loss called as ``metric(warped, fixed, **extra)``.

    Raises
    ------
    ValueError
        If ``name`` is not registered.
    TypeError
        If an option is not accepted by the metric.
    """
    factory = metric_spec(name).factory
    signature = inspect.signature(factory)
    try:
        signature.bind(**options)
    except TypeError as err:
        accepted = ", ".join(signature.parameters) or "none"
        raise TypeError(
            f"invalid options {sorted(options)} for metric {name!r} ({err}); "
            f"accepted options: {accepted}"
        ) from None
    return factory(**options)
