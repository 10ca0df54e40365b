"""Metrics on the features of a frozen network: DeepSim, DeepSim-AE and VGG."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.metrics._common import _at_least_float32, _check_pair
from src_training.metrics.vgg16 import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    VGG16Features,
    load_vgg16_weights,
)
from src_training.spatial.transforms import spatial_ndim


def feature_cosine_loss(
    warped_features: Sequence[Tensor], fixed_features: Sequence[Tensor], eps: float = 1e-6
) -> Tensor:
    """``1 -`` the mean over layers of the mean over positions of the feature cosine.

    ``cos_p = <a_p, b_p> / (max(|a_p|, eps) * max(|b_p|, eps))`` along the channel axis,
    so a zero feature vector gives a cosine of 0 instead of NaN. Features computed in
    half precision (under autocast) are compared in float32.

    Parameters
    ----------
    warped_features, fixed_features : sequence of Tensor
        Matching lists of ``(B, C_l, *spatial_l)`` feature maps.
    eps : float
        Lower bound of the feature norms.

    Returns
    -------
    Tensor
        Scalar loss in ``[0, 2]``.
    """
    if len(warped_features) != len(fixed_features) or not warped_features:
        raise ValueError("need the same, non-zero number of feature maps for both images")
    layers = []
    for a, b in zip(warped_features, fixed_features, strict=True):
        with torch.autocast(a.device.type, enabled=False):  # channel sums in float32
            a, b = _at_least_float32(a), _at_least_float32(b)
            norm_a = torch.linalg.vector_norm(a, dim=1).clamp(min=eps)
            norm_b = torch.linalg.vector_norm(b, dim=1).clamp(min=eps)
            layers.append(((a * b).sum(dim=1) / (norm_a * norm_b)).mean())
    return 1.0 - torch.stack(layers).mean()


class _FrozenNetworkMetric(nn.Module):
    """Base of metrics that hold a network: frozen, and in eval mode whatever happens."""

    network: nn.Module
    _frozen: tuple[str, ...] = ()

    def _freeze(self, network: nn.Module, name: str = "network") -> None:
        setattr(self, name, network.requires_grad_(False).eval())
        self._frozen = (*self._frozen, name)

    def train(self, mode: bool = True) -> _FrozenNetworkMetric:
        """Set the training flag of this module but keep its networks in eval mode.

        Parameters
        ----------
        mode : bool
            The training flag.

        Returns
        -------
        _FrozenNetworkMetric
            This module.
        """
        super().train(mode)
        for name in self._frozen:
            getattr(self, name).eval()
        return self


class DeepSim(_FrozenNetworkMetric):
    """DeepSim loss on the encoder features of a network trained on segmentation.

    ``1 - mean_l mean_p cos(F_p^l(warped), F_p^l(fixed))``; see :func:`feature_cosine_loss`.
    The fixed image's features are computed without gradients.

    Parameters
    ----------
    extractor : nn.Module
        A module with a method ``features(x) -> list[Tensor]`` returning the encoder
        stages' feature maps. If it has a ``kind`` attribute it must be
        ``"segmentation"`` (``"autoencoder"`` for ``deepsim-ae``).
    eps : float
        Lower bound of the feature norms.
    levels : sequence of int, optional
        Encoder stages compared, counted from 1 (the stage at 1/2 resolution); all
        stages when omitted (the paper's choice).
    """

    metric_name: ClassVar[str] = "deepsim"
    required_kind: ClassVar[str] = "segmentation"

    def __init__(
        self,
        extractor: nn.Module | None = None,
        eps: float = 1e-6,
        levels: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        if extractor is None:
            raise ValueError(
                f"the {self.metric_name} metric needs a trained {self.required_kind} feature "
                "extractor: train one with `deepsim train-features` and pass --features F.pt"
            )
        if not callable(getattr(extractor, "features", None)):
            raise ValueError(
                f"the {self.metric_name} extractor must have a features(x) method returning "
                f"a list of feature maps; got a {type(extractor).__name__}"
            )
        kind = getattr(extractor, "kind", None)
        if kind is not None and kind != self.required_kind:
            raise ValueError(
                f"the {self.metric_name} metric needs a {self.required_kind} feature extractor, "
                f"got one of kind {kind!r}"
            )
        self._freeze(extractor)
        self.eps = eps
        self.levels = _check_levels(levels, extractor)

    def _select(self, features: list[Tensor]) -> list[Tensor]:
        if self.levels is None:
            return features
        if max(self.levels) > len(features):
            raise ValueError(
                f"feature level {max(self.levels)} asked for, but the extractor has "
                f"{len(features)} encoder stages; choose levels from 1 to {len(features)}"
            )
        return [features[level - 1] for level in self.levels]

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the DeepSim loss.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape, prepared as the extractor expects.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        _check_pair(warped, fixed)
        with torch.no_grad():
            fixed_features = self._select(self.network.features(fixed))
        warped_features = self._select(self.network.features(warped))
        return feature_cosine_loss(warped_features, fixed_features, self.eps)


def _check_levels(levels: Sequence[int] | None, extractor: nn.Module) -> list[int] | None:
    """Validate DeepSim's encoder levels (1-based) against the extractor's stage count."""
    if levels is None:
        return None
    chosen = [int(level) for level in levels]
    if not chosen or min(chosen) < 1 or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"feature levels must be distinct stage numbers from 1 up, got {list(levels)}; "
            "e.g. --feature-levels 1,2"
        )
    config = getattr(extractor, "config", None)
    stages = len(config()["channels"]) if callable(config) else None
    if stages is not None and max(chosen) > stages:
        raise ValueError(
            f"feature level {max(chosen)} asked for, but the extractor has {stages} encoder "
            f"stages; choose levels from 1 to {stages}"
        )
    return sorted(chosen)


class DeepSimAE(DeepSim):
    """DeepSim loss on the encoder features of an autoencoder (same computation as DeepSim)."""

    metric_name: ClassVar[str] = "deepsim-ae"
    required_kind: ClassVar[str] = "autoencoder"


_VGG_MIN_SIZE = 4  # relu3_3 comes after two 2x2 poolings


class VGG(_FrozenNetworkMetric):
    """Cosine feature loss on ImageNet VGG16 relu1_2, relu2_2 and relu3_3 activations.

    Single-channel images in ``[0, 1]`` are repeated to RGB (three-channel images are
    used as they are) and normalised with the ImageNet mean and standard deviation.
    The network is 2D: a 3D volume ``(B, C, D, H, W)`` is compared slice by slice along
    its first spatial axis ``D``, the slices batched as ``B * D`` images. Its two
    poolings before relu3_3 need 4 pixels along H and W: smaller images are padded
    with their edge values.

    Parameters
    ----------
    weights : str or Path, optional
        Local torchvision VGG16 state dict, see
        :func:`src_training.metrics.vgg16.load_vgg16_weights`.
    network : VGG16Features, optional
        An already built network, used instead of ``weights``.
    eps : float
        Lower bound of the feature norms.
    """

    def __init__(
        self,
        weights: str | Path | None = None,
        network: VGG16Features | None = None,
        eps: float = 1e-6,
    ) -> None:
        super().__init__()
        if network is None:
            if weights is None:
                raise ValueError(
                    "the vgg metric needs ImageNet VGG16 weights: save torchvision's "
                    "VGG16_Weights.IMAGENET1K_V1 state dict on a machine with torchvision "
                    "(`torch.save(torchvision.models.vgg16(weights='IMAGENET1K_V1')"
                    ".state_dict(), 'vgg16.pth')`) and pass --vgg-weights vgg16.pth"
                )
            network = load_vgg16_weights(weights)
        self._freeze(network)
        self.eps = eps
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def _prepare(self, x: Tensor) -> Tensor:
        """Turn ``(B, C, *spatial)`` into ImageNet-normalised ``(B', 3, H, W)`` slices."""
        if x.shape[1] not in (1, 3):
            raise ValueError(f"the vgg metric needs 1 or 3 channels, got {x.shape[1]}")
        if spatial_ndim(x) == 3:
            x = x.movedim(2, 1).flatten(0, 1)
        x = x.expand(-1, 3, -1, -1)
        short = [max(0, _VGG_MIN_SIZE - n) for n in x.shape[2:]]
        if any(short):
            x = F.pad(x, (0, short[1], 0, short[0]), mode="replicate")
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return ``1 -`` the mean cosine of the VGG16 features.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape with ``C`` 1 or 3.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        _check_pair(warped, fixed)
        with torch.no_grad():
            fixed_features = self.network(self._prepare(fixed))
        return feature_cosine_loss(self.network(self._prepare(warped)), fixed_features, self.eps)
