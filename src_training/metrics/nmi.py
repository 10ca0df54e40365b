"""Normalised mutual information with Parzen-window histograms."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from src_training.metrics._common import _at_least_float32, _check_pair


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
        with torch.autocast(warped.device.type, enabled=False):  # histograms in float32
            a = self._assign(self._samples(_at_least_float32(warped)))
            b = self._assign(self._samples(_at_least_float32(fixed)))
            joint = torch.bmm(a.transpose(1, 2), b) / a.shape[1]
        tiny = torch.finfo(joint.dtype).tiny

        def entropy(p: Tensor) -> Tensor:
            return -(p * p.clamp(min=tiny).log()).flatten(1).sum(dim=1)

        h_a, h_b = entropy(joint.sum(dim=2)), entropy(joint.sum(dim=1))
        h_ab = entropy(joint)
        nmi = (h_a + h_b) / h_ab.clamp(min=torch.finfo(joint.dtype).eps)
        return (2.0 - nmi).mean()
