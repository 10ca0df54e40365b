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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.spatial import one_hot, spatial_ndim
from src_training.vgg import IMAGENET_MEAN, IMAGENET_STD, VGG16Features, load_vgg16_weights


def _check_pair(warped: Tensor, fixed: Tensor) -> int:
    """Check that two images have the same shape and return their spatial ndim."""
    ndim = spatial_ndim(warped)
    if warped.shape != fixed.shape:
        raise ValueError(
            f"warped and fixed images must have the same shape, got {tuple(warped.shape)} "
            f"and {tuple(fixed.shape)}"
        )
    return ndim


def _box_sum(x: Tensor, radius: int) -> Tensor:
    """Sum of every channel over a cubic window of side ``2 * radius + 1``, zero padded.

    The filter is separable: one 1D convolution with a kernel of ones per spatial
    axis, grouped so that all channels are filtered in the same pass.
    """
    ndim = spatial_ndim(x)
    conv = F.conv2d if ndim == 2 else F.conv3d
    channels = x.shape[1]
    for axis in range(ndim):
        kernel_shape = [1] * ndim
        kernel_shape[axis] = 2 * radius + 1
        padding = [0] * ndim
        padding[axis] = radius
        weight = x.new_ones(channels, 1, *kernel_shape)
        x = conv(x, weight, padding=tuple(padding), groups=channels)
    return x


def _window_count(shape: Sequence[int], radius: int, like: Tensor) -> Tensor:
    """Count the in-image voxels of the window around every voxel, as ``(1, 1, *shape)``."""
    count = like.new_ones((1, 1) + (1,) * len(shape))
    for axis, n in enumerate(shape):
        index = torch.arange(n, device=like.device)
        per_axis = (index + radius).clamp(max=n - 1) - (index - radius).clamp(min=0) + 1
        view = [1] * (2 + len(shape))
        view[2 + axis] = n
        count = count * per_axis.to(like.dtype).view(view)
    return count


def _box_mean(x: Tensor, radius: int) -> Tensor:
    """Mean of every channel over the part of a cubic window that lies inside the image."""
    return _box_sum(x, radius) / _window_count(x.shape[2:], radius, x)


def _standardise(x: Tensor) -> Tensor:
    """Centre each image and channel on its mean and divide by its standard deviation.

    The standard deviation is detached (its derivative is infinite on a constant image,
    which becomes all zeros); the mean is not, as zero padding makes a loss depend on it.
    """
    dims = tuple(range(2, x.dim()))
    std = x.std(dim=dims, keepdim=True, correction=0).detach()
    return (x - x.mean(dim=dims, keepdim=True)) / std.clamp(min=torch.finfo(x.dtype).eps)


def local_ncc(warped: Tensor, fixed: Tensor, window: int = 9, eps: float = 1e-5) -> Tensor:
    """Local squared normalised cross-correlation map.

    Both images are first centred on their global mean and divided by their global
    standard deviation (detached; NCC does not depend on it up to ``eps``), per image and
    channel. Then, with local means ``<.>`` over the cubic window of
    side ``window`` around every voxel (zero padded at the border and always divided by
    the full window size, as in VoxelMorph; after standardisation zero is the image mean),

    ``cc = (<IJ> - <I><J>)^2 / (max(<I^2> - <I>^2, 0) * max(<J^2> - <J>^2, 0) + eps)``.

    The five local moments ``I, J, I^2, J^2, IJ`` are stacked as channels and
    box-filtered in one separable pass. The standardisation makes ``eps`` relative to the
    data's scale, so ``cc`` is invariant to ``a * I + b`` (``a > 0``) of either image, and
    it is 0 (not NaN) where either image is locally flat.

    Parameters
    ----------
    warped, fixed : Tensor
        ``(B, C, *spatial)`` images of equal shape.
    window : int
        Odd side length of the cubic window.
    eps : float
        Stabiliser of the denominator, in units of the squared global variances.

    Returns
    -------
    Tensor
        ``(B, C, *spatial)`` values in ``[0, 1]``.
    """
    ndim = _check_pair(warped, fixed)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the NCC window must be a positive odd integer, got {window}")
    i, j = _standardise(warped), _standardise(fixed)
    channels = i.shape[1]
    moments = torch.stack([i, j, i * i, j * j, i * j], dim=2).flatten(1, 2)
    means = _box_sum(moments, window // 2) / window**ndim
    mu_i, mu_j, ii, jj, ij = means.unflatten(1, (channels, 5)).unbind(dim=2)
    cov = ij - mu_i * mu_j
    var_i = (ii - mu_i * mu_i).clamp(min=0.0)
    var_j = (jj - mu_j * mu_j).clamp(min=0.0)
    return cov * cov / (var_i * var_j + eps)


class MSE(nn.Module):
    """Mean squared intensity difference."""

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the mean squared difference.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        _check_pair(warped, fixed)
        return F.mse_loss(warped, fixed)


class NCC(nn.Module):
    """Local squared NCC loss ``1 - mean(cc)``; see :func:`local_ncc` for ``cc``.

    Parameters
    ----------
    window : int
        Odd side length of the cubic window (9 in the reference).
    eps : float
        Stabiliser of the denominator, relative to the squared global variances.
    """

    def __init__(self, window: int = 9, eps: float = 1e-5) -> None:
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"the NCC window must be a positive odd integer, got {window}")
        self.window = window
        self.eps = eps

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return ``1 - mean(cc)`` over batch, channels and positions.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape.

        Returns
        -------
        Tensor
            Scalar loss in ``[0, 1]``.
        """
        return 1.0 - local_ncc(warped, fixed, self.window, self.eps).mean()


_LABEL_LOSSES = ("mse", "dice")


class SupervisedNCC(nn.Module):
    """NCC plus a label overlap term: ``NCC + label_weight * label_loss``.

    The label term compares the moving labels, one-hot encoded and warped linearly
    (:func:`src_training.spatial.warp_onehot`), with the fixed labels.

    Parameters
    ----------
    window : int
        NCC window.
    label_loss : {"mse", "dice"}
        ``"mse"``: mean squared difference of the one-hot maps (the reference);
        ``"dice"``: soft Dice loss, ``1 -`` the mean over classes present in either
        map of ``2 |A B| / (|A| + |B|)``.
    label_weight : float
        Weight of the label term.
    """

    def __init__(self, window: int = 9, label_loss: str = "mse", label_weight: float = 1.0) -> None:
        super().__init__()
        if label_loss not in _LABEL_LOSSES:
            raise ValueError(f"label_loss must be one of {list(_LABEL_LOSSES)}, got {label_loss!r}")
        self.ncc = NCC(window)
        self.label_loss = label_loss
        self.label_weight = label_weight

    def forward(
        self,
        warped: Tensor,
        fixed: Tensor,
        warped_labels: Tensor | None = None,
        fixed_labels: Tensor | None = None,
    ) -> Tensor:
        """Return the NCC loss plus the weighted label loss.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape.
        warped_labels : Tensor
            ``(B, K, *spatial)`` soft one-hot moving labels warped linearly.
        fixed_labels : Tensor
            ``(B, K, *spatial)`` one-hot float labels, or ``(B, 1, *spatial)`` class ids.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        if warped_labels is None or fixed_labels is None:
            raise ValueError(
                "the ncc-sup metric needs warped_labels (warped one-hot moving labels) and "
                "fixed_labels; train with a data set that has label images"
            )
        target = _as_one_hot(fixed_labels, warped_labels)
        if self.label_loss == "mse":
            label_term = F.mse_loss(warped_labels, target)
        else:
            label_term = soft_dice_loss(warped_labels, target)
        return self.ncc(warped, fixed) + self.label_weight * label_term


def _as_one_hot(labels: Tensor, reference: Tensor) -> Tensor:
    """Return ``labels`` as a one-hot map shaped like the ``(B, K, *spatial)`` reference."""
    num_classes = reference.shape[1]
    ids = not labels.is_floating_point() or (labels.shape[1] == 1 and num_classes > 1)
    if ids:
        labels = one_hot(
            labels.round().long() if labels.is_floating_point() else labels, num_classes
        )
    if labels.shape != reference.shape:
        raise ValueError(
            f"fixed labels of shape {tuple(labels.shape)} do not match the warped labels' "
            f"{tuple(reference.shape)}; pass (B, K, *spatial) one-hot or (B, 1, *spatial) ids"
        )
    return labels.to(reference.dtype)


def soft_dice_loss(pred: Tensor, target: Tensor) -> Tensor:
    """Soft Dice loss: ``1 -`` the mean Dice over the classes present in either map.

    Parameters
    ----------
    pred, target : Tensor
        ``(B, K, *spatial)`` soft or one-hot class maps.

    Returns
    -------
    Tensor
        Scalar loss, the mean over the batch; classes absent from both maps are skipped
        instead of counting as zero overlap.
    """
    dims = tuple(range(2, pred.dim()))
    intersection = (pred * target).sum(dim=dims)
    total = pred.sum(dim=dims) + target.sum(dim=dims)
    present = total > 0
    dice = 2.0 * intersection / total.clamp(min=torch.finfo(total.dtype).tiny)
    per_sample = (dice * present).sum(dim=1) / present.sum(dim=1).clamp(min=1)
    return 1.0 - per_sample.mean()


class NMI(nn.Module):
    """Normalised mutual information with Parzen-window (Gaussian) histograms.

    Each image and channel is mapped to ``[0, 1]`` by its own (detached) minimum and
    maximum, so that NMI depends only on the intensity order up to the binning. Every
    voxel is softly assigned to ``bins`` equally spaced centres on ``[0, 1]`` by a
    Gaussian kernel of width ``sigma`` bins (weights normalised to sum to one); the
    joint histogram is the batched product of the two assignment matrices.
    ``NMI = (H(A) + H(B)) / H(A, B)`` lies in ``[1, 2]``; the loss is ``2 - NMI``, in
    ``[0, 1]`` and smallest for identical images.

    Parameters
    ----------
    bins : int
        Number of histogram bins.
    sigma : float
        Kernel standard deviation in bin widths.
    max_samples : int
        Voxels per image used for the histograms; larger images are subsampled at
        fixed, evenly spread positions (a golden-ratio sequence, the same every call).
    """

    def __init__(self, bins: int = 32, sigma: float = 0.5, max_samples: int = 2**16) -> None:
        super().__init__()
        if bins < 2:
            raise ValueError(f"bins must be at least 2, got {bins}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, got {sigma}")
        if max_samples < 1:
            raise ValueError(f"max_samples must be positive, got {max_samples}")
        self.bins = bins
        self.sigma = sigma
        self.max_samples = max_samples

    def _samples(self, x: Tensor) -> Tensor:
        """Flatten to ``(B * C, N)`` and subsample to at most ``max_samples`` voxels."""
        flat = x.flatten(2).flatten(0, 1)
        n = flat.shape[1]
        if n <= self.max_samples:
            return flat
        golden = (math.sqrt(5.0) - 1.0) / 2.0
        steps = torch.arange(self.max_samples, dtype=torch.float64)
        index = ((steps * golden) % 1.0 * n).long().clamp(max=n - 1)
        return flat[:, index.to(flat.device)]

    def _assign(self, values: Tensor) -> Tensor:
        """Soft bin assignments ``(N', S, bins)`` of values normalised to ``[0, 1]``."""
        low = values.amin(dim=1, keepdim=True).detach()
        high = values.amax(dim=1, keepdim=True).detach()
        unit = (values - low) / (high - low).clamp(min=torch.finfo(values.dtype).eps)
        centres = torch.linspace(0.0, 1.0, self.bins, device=values.device, dtype=values.dtype)
        width = self.sigma / (self.bins - 1)
        weights = torch.exp(-0.5 * ((unit.unsqueeze(-1) - centres) / width) ** 2)
        return weights / weights.sum(dim=-1, keepdim=True)

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return ``2 - NMI``, averaged over batch and channels.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape.

        Returns
        -------
        Tensor
            Scalar loss in ``[0, 1]``.
        """
        _check_pair(warped, fixed)
        a = self._assign(self._samples(warped))
        b = self._assign(self._samples(fixed))
        joint = torch.bmm(a.transpose(1, 2), b) / a.shape[1]
        tiny = torch.finfo(joint.dtype).tiny

        def entropy(p: Tensor) -> Tensor:
            return -(p * p.clamp(min=tiny).log()).flatten(1).sum(dim=1)

        h_a, h_b = entropy(joint.sum(dim=2)), entropy(joint.sum(dim=1))
        h_ab = entropy(joint)
        nmi = (h_a + h_b) / h_ab.clamp(min=torch.finfo(joint.dtype).eps)
        return (2.0 - nmi).mean()


def _neighbour_pairs(ndim: int, dilation: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """Pairs of points of the ``2 * ndim`` neighbourhood that are ``sqrt(2) * dilation`` apart."""
    points = []
    for axis in range(ndim):
        for sign in (1, -1):
            offset = [0] * ndim
            offset[axis] = sign * dilation
            points.append(tuple(offset))
    return [
        (p, q)
        for k, p in enumerate(points)
        for q in points[k + 1 :]
        if any(a != -b for a, b in zip(p, q, strict=True))
    ]


def mind_ssc(image: Tensor, radius: int = 2, dilation: int = 2) -> Tensor:
    """MIND-SSC descriptor (self-similarity context, Heinrich et al. 2013).

    For each pair ``(p, q)`` of points of the six-neighbourhood (3D) at offsets
    ``dilation`` voxels along one axis that are ``sqrt(2) * dilation`` apart (the 12
    edges of the octahedron; in 2D the 4 pairs of the four-neighbourhood), the patch
    distance ``D_pq(x)`` is the mean of ``(I(x + p) - I(x + q))^2`` over the cubic
    patch of radius ``radius`` (truncated at the image border; shifted values outside
    the image take the nearest edge value). After subtracting the per-voxel minimum
    over pairs, the descriptor is ``exp(-D_pq(x) / V(x))`` with ``V`` the per-voxel mean
    of the distances, clamped to ``[1e-3, 1e3]`` times its image mean and to at least a
    tiny absolute floor, so flat images give finite descriptors.

    Parameters
    ----------
    image : Tensor
        ``(B, C, *spatial)`` image.
    radius : int
        Patch radius in voxels.
    dilation : int
        Distance of the neighbourhood points from the centre in voxels.

    Returns
    -------
    Tensor
        ``(B, C * P, *spatial)`` with ``P = 4`` (2D) or ``12`` (3D) channels per input
        channel, values in ``(0, 1]``.
    """
    ndim = spatial_ndim(image)
    shape = image.shape[2:]
    padded = F.pad(image, [dilation] * (2 * ndim), mode="replicate")

    def shifted(offset: tuple[int, ...]) -> Tensor:
        index = [slice(None), slice(None)]
        index += [slice(dilation + o, dilation + o + n) for o, n in zip(offset, shape, strict=True)]
        return padded[tuple(index)]

    diffs = [(shifted(p) - shifted(q)) ** 2 for p, q in _neighbour_pairs(ndim, dilation)]
    distance = _box_mean(torch.stack(diffs, dim=2).flatten(1, 2), radius)
    distance = distance.unflatten(1, (image.shape[1], len(diffs)))
    distance = distance - distance.amin(dim=2, keepdim=True)
    variance = distance.mean(dim=2, keepdim=True)
    image_mean = variance.flatten(1).mean(dim=1).view(-1, *([1] * (variance.dim() - 1)))
    floor = torch.finfo(image.dtype).eps
    variance = torch.minimum(torch.maximum(variance, image_mean * 1e-3), image_mean * 1e3)
    descriptor = torch.exp(-distance / variance.clamp(min=floor))
    return descriptor.flatten(1, 2)


class MIND(nn.Module):
    """MIND-SSC loss: mean squared difference of the descriptors (see :func:`mind_ssc`).

    Parameters
    ----------
    radius : int
        Patch radius in voxels.
    dilation : int
        Distance of the neighbourhood points from the centre in voxels.
    """

    def __init__(self, radius: int = 2, dilation: int = 2) -> None:
        super().__init__()
        if radius < 0 or dilation < 1:
            raise ValueError(f"need radius >= 0 and dilation >= 1, got {radius} and {dilation}")
        self.radius = radius
        self.dilation = dilation

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the mean squared difference of the MIND-SSC descriptors.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        _check_pair(warped, fixed)
        return F.mse_loss(
            mind_ssc(warped, self.radius, self.dilation),
            mind_ssc(fixed, self.radius, self.dilation),
        )


def feature_cosine_loss(
    warped_features: Sequence[Tensor], fixed_features: Sequence[Tensor], eps: float = 1e-6
) -> Tensor:
    """``1 -`` the mean over layers of the mean over positions of the feature cosine.

    ``cos_p = <a_p, b_p> / (max(|a_p|, eps) * max(|b_p|, eps))`` along the channel axis,
    so a zero feature vector gives a cosine of 0 instead of NaN.

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
        norm_a = torch.linalg.vector_norm(a, dim=1).clamp(min=eps)
        norm_b = torch.linalg.vector_norm(b, dim=1).clamp(min=eps)
        layers.append(((a * b).sum(dim=1) / (norm_a * norm_b)).mean())
    return 1.0 - torch.stack(layers).mean()


class _FrozenNetworkMetric(nn.Module):
    """Base of metrics that hold a network: frozen, and in eval mode whatever happens."""

    network: nn.Module

    def _freeze(self, network: nn.Module) -> None:
        self.network = network.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> _FrozenNetworkMetric:
        """Set the training flag of this module but keep the network in eval mode.

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
        self.network.eval()
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
    """

    metric_name: ClassVar[str] = "deepsim"
    required_kind: ClassVar[str] = "segmentation"

    def __init__(self, extractor: nn.Module | None = None, eps: float = 1e-6) -> None:
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
            fixed_features = self.network.features(fixed)
        return feature_cosine_loss(self.network.features(warped), fixed_features, self.eps)


class DeepSimAE(DeepSim):
    """DeepSim loss on the encoder features of an autoencoder (same computation as DeepSim)."""

    metric_name: ClassVar[str] = "deepsim-ae"
    required_kind: ClassVar[str] = "autoencoder"


class VGG(_FrozenNetworkMetric):
    """Cosine feature loss on ImageNet VGG16 relu1_2, relu2_2 and relu3_3 activations.

    Single-channel images in ``[0, 1]`` are repeated to RGB (three-channel images are
    used as they are) and normalised with the ImageNet mean and standard deviation.
    The network is 2D: a 3D volume ``(B, C, D, H, W)`` is compared slice by slice along
    its first spatial axis ``D``, the slices batched as ``B * D`` images.

    Parameters
    ----------
    weights : str or Path, optional
        Local torchvision VGG16 state dict, see :func:`src_training.vgg.load_vgg16_weights`.
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
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; valid metrics: {', '.join(METRICS)}")
    factory = METRICS[name].factory
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
