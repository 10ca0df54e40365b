"""Image similarity metrics for registration, built by name from one registry.

Every metric is a loss (lower is better) and an :class:`torch.nn.Module` called as
``metric(warped, fixed, **extra)`` on ``(B, C, *spatial)`` tensors with
``spatial = (H, W)`` or ``(D, H, W)``. The dimensionality is read from the data; the
result is a scalar tensor, the mean over the batch. Metrics that hold a network keep
it frozen and in eval mode whatever ``train()`` is called with; gradients still flow
to ``warped``.

Use :func:`build_metric` (or :func:`get_metric` for the bare loss) to build a metric by
name and :data:`METRICS` to list them; :mod:`~src_training.metrics.regularisers` holds
the regularisers and :mod:`~src_training.metrics.dice` the one hard and one soft Dice.
"""

from src_training.metrics.features import VGG, DeepSim, DeepSimAE, feature_cosine_loss
from src_training.metrics.intensity import MSE, NCC, SupervisedNCC, local_ncc
from src_training.metrics.mind import MIND, mind_ssc
from src_training.metrics.nmi import NMI
from src_training.metrics.registry import (
    METRICS,
    MetricInputs,
    MetricSpec,
    Similarity,
    build_metric,
    get_metric,
    metric_names,
    metric_spec,
)

__all__ = [
    "METRICS",
    "MIND",
    "MSE",
    "NCC",
    "NMI",
    "VGG",
    "DeepSim",
    "DeepSimAE",
    "MetricInputs",
    "MetricSpec",
    "Similarity",
    "SupervisedNCC",
    "build_metric",
    "feature_cosine_loss",
    "get_metric",
    "local_ncc",
    "metric_names",
    "metric_spec",
    "mind_ssc",
]
