"""MIND-SSC: modality-independent self-similarity descriptors."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.metrics._common import _box_mean, _check_pair
from src_training.spatial.transforms import spatial_ndim


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
