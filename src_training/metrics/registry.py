"""The registry of similarity metrics: what each needs, and how it is built.

:data:`METRICS` lists the metrics by name with what each one needs (labels, a feature
extractor of a given kind, pretrained weights, whether it compares chosen encoder
stages); :func:`build_metric` builds one from :class:`MetricInputs` as a
:class:`Similarity`, which carries its name and needs, so that trainers, the
optimiser and the evaluation take the metric alone and never test a metric's name.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from torch import Tensor, nn

from src_training.metrics.feature_maps import FeatureOptions, feature_metric
from src_training.metrics.features import VGG, DeepSim, DeepSimAE
from src_training.metrics.intensity import MSE, NCC, SupervisedNCC
from src_training.metrics.mind import MIND
from src_training.metrics.nmi import NMI
from src_training.metrics.semantic import segmentation_metric


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
    extractor_kind : str or None
        The kind of feature extractor it compares (``segmentation`` or
        ``autoencoder``); None for metrics without one. Such metrics also accept
        feature levels.
    feature_maps : bool
        Whether it compares feature stacks and takes :class:`FeatureOptions`.
    probabilities : bool
        Whether it compares the extractor's class probabilities (``deepsim-seg`` and its
        combinations): one extractor per image allowed, and of the feature options only
        the weight.
    """

    name: str
    description: str
    factory: Callable[..., nn.Module]
    needs_labels: bool = False
    needs_extractor: bool = False
    needs_weights: bool = False
    default_lambda: float = 1.0
    extractor_kind: str | None = None
    feature_maps: bool = False
    probabilities: bool = False


def _extractor_metric(
    name: str,
    factory: Callable[..., nn.Module],
    description: str,
    kind: str = "segmentation",
    **flags: bool,
) -> MetricSpec:
    """Return the entry of a metric that compares a feature extractor's maps (λ 1)."""
    return MetricSpec(
        name=name,
        description=description,
        factory=factory,
        needs_extractor=True,
        extractor_kind=kind,
        **flags,
    )


METRICS: dict[str, MetricSpec] = {
    spec.name: spec
    for spec in (
        MetricSpec(
            name="mse",
            description="mean squared intensity difference",
            factory=MSE,
            default_lambda=0.02,
        ),
        MetricSpec(
            name="ncc",
            description="local squared normalised cross-correlation in a 9-voxel window",
            factory=NCC,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="ncc-sup",
            description="NCC plus the overlap of warped one-hot labels (needs label images)",
            factory=SupervisedNCC,
            needs_labels=True,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="nmi",
            description="normalised mutual information with Parzen-window histograms",
            factory=NMI,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="mind",
            description="MIND-SSC self-similarity context descriptors",
            factory=MIND,
            default_lambda=0.5,
        ),
        MetricSpec(
            name="vgg",
            description="cosine similarity of ImageNet VGG16 features (needs VGG16 weights)",
            factory=VGG,
            needs_weights=True,
            default_lambda=1.0,
        ),
        _extractor_metric(
            "deepsim",
            DeepSim,
            "cosine similarity of a segmentation network's features (DeepSim)",
        ),
        _extractor_metric(
            "deepsim-seg",
            segmentation_metric,
            "squared difference of a segmentation network's class probabilities "
            "(DeepSim on the output: modality-invariant where the network segments both)",
            probabilities=True,
        ),
        _extractor_metric(
            "deepsim-seg+ncc",
            partial(segmentation_metric, intensity="ncc"),
            "ncc plus the deepsim-seg class-probability term",
            probabilities=True,
        ),
        _extractor_metric(
            "deepsim-ae",
            DeepSimAE,
            "cosine similarity of an autoencoder's features (DeepSim-AE)",
            kind="autoencoder",
        ),
        _extractor_metric(
            "deepsim-maps",
            feature_metric,
            "distance of a segmentation network's normalised feature maps, "
            "extracted once per pyramid level",
            feature_maps=True,
        ),
        *(
            _extractor_metric(
                f"deepsim+{term}",
                partial(feature_metric, intensity=term),
                f"{term} plus the deepsim-maps feature term",
                feature_maps=True,
            )
            for term in ("mse", "ncc")
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


@dataclass(frozen=True)
class MetricInputs:
    """What a metric may need besides the images, as :data:`METRICS` declares.

    Attributes
    ----------
    extractor : nn.Module, optional
        A trained feature extractor (deepsim: segmentation, deepsim-ae: autoencoder).
    weights : str, optional
        A VGG16 state dict file (vgg).
    feature_levels : sequence of int, optional
        Encoder stages the feature metrics compare (1 = half resolution); all if None.
    feature_options : FeatureOptions, optional
        How the feature-map metrics compare (``deepsim-maps``, ``deepsim+mse``,
        ``deepsim+ncc``); their defaults if None.
    how_to_get_extractor : str
        The end of the message when the extractor is missing, in the words of the
        interface the user is in.
    moving_extractor : nn.Module, optional
        deepsim-seg only: a second extractor, for the moving image.
    """

    extractor: nn.Module | None = None
    weights: str | None = None
    feature_levels: Sequence[int] | None = None
    how_to_get_extractor: str = "train one with `deepsim train-features` and pass --features F.pt"
    feature_options: FeatureOptions | None = None
    moving_extractor: nn.Module | None = None


@dataclass(frozen=True)
class Similarity:
    """A built similarity metric with its registry entry: what trainers and optimisers take.

    Attributes
    ----------
    spec : MetricSpec
        The registry entry (name, needs).
    loss : nn.Module
        The loss, called as ``loss(warped, fixed, **extra)``.
    metadata : dict
        Facts a model file records about the metric besides its name.
    """

    spec: MetricSpec
    loss: nn.Module
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        """The registry name."""
        return self.spec.name

    @property
    def needs_labels(self) -> bool:
        """Whether the loss compares warped moving labels with fixed labels."""
        return self.spec.needs_labels

    def __call__(self, warped: Tensor, fixed: Tensor, **extra: Tensor | None) -> Tensor:
        """Return the loss of ``warped`` against ``fixed`` (labels as keywords)."""
        return self.loss(warped, fixed, **extra)


def build_metric(name: str, inputs: MetricInputs | None = None) -> Similarity:
    """Build a metric by name from what it needs.

    Parameters
    ----------
    name : str
        One of :func:`metric_names`.
    inputs : MetricInputs, optional
        The extractor, weights and feature levels; only what the metric needs is used,
        and inputs it cannot use are refused.

    Returns
    -------
    Similarity
        The metric with its registry entry.

    Raises
    ------
    ValueError
        If the metric is unknown, a needed input is missing, or an input does not apply.
    """
    spec = metric_spec(name)
    inputs = inputs or MetricInputs()
    options: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    if spec.extractor_kind is not None:
        if inputs.extractor is None:
            raise ValueError(
                f"the {name} metric needs a trained feature extractor: "
                f"{inputs.how_to_get_extractor}"
            )
        options["extractor"] = inputs.extractor
        if inputs.moving_extractor is not None:
            if not spec.probabilities:
                raise ValueError(
                    f"one extractor per image applies to deepsim-seg, not {name}; give {name} "
                    "one extractor"
                )
            options["moving_extractor"] = inputs.moving_extractor
        if inputs.feature_levels:
            options["levels"] = list(inputs.feature_levels)
    elif inputs.feature_levels:
        raise ValueError(
            f"--feature-levels applies to deepsim and deepsim-ae, not {name}; "
            "use it with --metric deepsim or remove it"
        )
    if spec.feature_maps and inputs.feature_options is not None:
        options["options"] = inputs.feature_options
        metadata["feature_options"] = inputs.feature_options.kwargs()
    elif spec.probabilities and inputs.feature_options is not None:
        options["weight"] = _weight_only(name, inputs.feature_options)
        metadata["feature_options"] = {"weight": options["weight"]}
    elif inputs.feature_options is not None:
        names = ", ".join(n for n, entry in METRICS.items() if entry.feature_maps)
        weighted = ", ".join(n for n, entry in METRICS.items() if entry.probabilities)
        raise ValueError(
            f"the feature-map options (--feature-weight, --pca, --feature-distance, "
            f"--feature-stages, --warp-then-extract) apply to {names} (--feature-weight "
            f"also to {weighted}), not {name}; choose one of those metrics or remove them"
        )
    if spec.needs_weights:
        options["weights"] = inputs.weights
    loss = get_metric(name, **options)
    if "levels" in options:
        metadata["feature_levels"] = loss.levels
    return Similarity(spec, loss, metadata)


def _weight_only(name: str, given: FeatureOptions) -> float | None:
    """Return the weight of feature options that set nothing else; refuse the others."""
    if given != FeatureOptions(weight=given.weight):
        raise ValueError(
            f"{name} compares class probabilities, so of the feature-map options it takes "
            "--feature-weight alone; give no --pca, --feature-distance, --feature-stages "
            "or --warp-then-extract"
        )
    return given.weight
