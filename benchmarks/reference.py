"""The hot paths as they were before their optimisation, kept to time "before" in every run.

Each function is a copy of the project's code at commit efd16db (before the
benchmarks), made self-contained, or undoes an optimisation on a network. The tests in
``tests/core/training/test_fast_paths.py`` check that the optimised code gives the same values and
gradients as these.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.metrics._common import _standardise


def box_sum_conv(x: Tensor, radius: int) -> Tensor:
    """Zero-padded window sum by one grouped 1D convolution per axis (autograd through conv)."""
    ndim = x.dim() - 2
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


def local_ncc_autograd(warped: Tensor, fixed: Tensor, window: int = 9, eps: float = 1e-5) -> Tensor:
    """Squared local NCC map with the convolution box filter and autograd's backward pass."""
    ndim = warped.dim() - 2
    i, j = _standardise(warped), _standardise(fixed)
    channels = i.shape[1]
    moments = torch.stack([i, j, i * i, j * j, i * j], dim=2).flatten(1, 2)
    means = box_sum_conv(moments, window // 2) / window**ndim
    mu_i, mu_j, ii, jj, ij = means.unflatten(1, (channels, 5)).unbind(dim=2)
    cov = ij - mu_i * mu_j
    var_i = (ii - mu_i * mu_i).clamp(min=0.0)
    var_j = (jj - mu_j * mu_j).clamp(min=0.0)
    return cov * cov / (var_i * var_j + eps)


def ncc_loss_autograd(warped: Tensor, fixed: Tensor, window: int = 9) -> Tensor:
    """``1 - mean(cc)`` with :func:`local_ncc_autograd`: the NCC loss before its optimisation."""
    return 1.0 - local_ncc_autograd(warped, fixed, window).mean()


def without_inplace_activations(network: nn.Module) -> nn.Module:
    """Make every LeakyReLU of ``network`` out of place again, as before (returns it)."""
    for module in network.modules():
        if isinstance(module, nn.LeakyReLU):
            module.inplace = False
    return network


@torch.inference_mode()
def predict_contiguous(
    network: nn.Module, moving: Tensor, fixed: Tensor, batch_size: int = 8
) -> Tensor:
    """``registration.predict`` on the CPU as before: images in the default (NCHW) layout."""
    network.eval()
    out = []
    for start in range(0, moving.shape[0], batch_size):
        m = moving[start : start + batch_size]
        f = fixed[start : start + batch_size] if fixed.shape[0] > 1 else fixed
        out.append(network(m, f.expand_as(m)))
    return torch.cat(out)
