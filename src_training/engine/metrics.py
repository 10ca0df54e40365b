"""Build a similarity metric by name with what it needs: its feature extractor(s), checked.

:func:`load_extractor` loads an extractor (a file, a built-in name or one in memory)
and checks it suits the metric and the data; :func:`registration_metric` builds the
metric with it. ``deepsim-seg`` may take one extractor per image (``features`` a pair:
the fixed image's, then the moving image's), for two modalities that one network does
not segment alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from src_training.metrics.feature_maps import FeatureOptions
from src_training.metrics.registry import MetricInputs, Similarity, build_metric, metric_spec
from src_training.models import is_builtin, resolve
from src_training.networks.modelio import ModelFile, load_model, require_kind
from src_training.networks.models import FeatureExtractor


def load_extractor(
    source: str | Path | ModelFile, metric: str, ndim: int, channels: int
) -> FeatureExtractor:
    """Load a feature extractor and check it suits the metric and the data.

    Parameters
    ----------
    source : str, Path or ModelFile
        An extractor file, a built-in name (its extractor), or one in memory.
    metric : str
        The metric that will compare its features.
    ndim, channels : int
        Dimensionality and channels of the data.

    Returns
    -------
    FeatureExtractor
        The network.
    """
    name = str(source) if not isinstance(source, ModelFile) else "the feature extractor"
    model = source if isinstance(source, ModelFile) else load_model(resolve(source, "features"))
    require_kind(model, "features", name)
    network = model.network
    assert isinstance(network, FeatureExtractor)
    if network.ndim != ndim or network.in_channels != channels:
        raise ValueError(
            f"the feature extractor {name} is {network.ndim}D with {network.in_channels} "
            f"channel(s) but the data is {ndim}D with {channels}; train features on this data"
        )
    wanted = metric_spec(metric).extractor_kind
    if wanted is None:
        raise ValueError(
            f"{metric} takes no feature extractor; remove {name}, or choose a metric that "
            "compares features (see `deepsim metrics`)"
        )
    if network.kind != wanted:
        other = "deepsim-ae" if network.kind == "autoencoder" else "deepsim"
        raise ValueError(
            f"{metric} needs a {wanted} feature extractor but {name} is an {network.kind}; "
            f"use --metric {other}"
        )
    return network


def registration_metric(
    name: str,
    *,
    ndim: int,
    channels: int,
    features: str | Path | ModelFile | None = None,
    vgg_weights: str | None = None,
    feature_levels: Sequence[int] | None = None,
    how_to_get_extractor: str = MetricInputs.how_to_get_extractor,
    feature_options: FeatureOptions | None = None,
    moving_features: str | Path | ModelFile | None = None,
) -> Similarity:
    """Build a metric by name with what it needs, checked against the data.

    Parameters
    ----------
    name : str
        A registered metric.
    ndim, channels : int
        The data the metric will compare.
    features : str, Path or ModelFile, optional
        The feature extractor of deepsim and deepsim-ae: a file, a built-in name or one
        in memory.
    vgg_weights : str, optional
        The VGG16 weights file of vgg.
    feature_levels : sequence of int, optional
        Encoder stages DeepSim compares.
    how_to_get_extractor : str
        The end of the message when an extractor is needed but missing.
    feature_options : FeatureOptions, optional
        How the feature-map metrics compare; their defaults when None.
    moving_features : str, Path or ModelFile, optional
        deepsim-seg only: the moving image's extractor (``features`` then segments the
        fixed image only).

    Returns
    -------
    Similarity
        The metric; its metadata records the extractor files.
    """
    spec = metric_spec(name)
    extractor = moving = None
    if spec.extractor_kind is not None and features is not None:
        extractor = load_extractor(features, name, ndim, channels)
    if moving_features is not None:
        moving = load_extractor(moving_features, name, ndim, channels)
    inputs = MetricInputs(
        extractor, vgg_weights, feature_levels, how_to_get_extractor, feature_options, moving
    )
    metric = build_metric(name, inputs)
    for key, source in (("features", features), ("moving_features", moving_features)):
        if is_builtin(source):
            metric.metadata[key] = source
        elif source is not None and extractor is not None and not isinstance(source, ModelFile):
            metric.metadata[key] = str(Path(str(source)).resolve())
    return metric
