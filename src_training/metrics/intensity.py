"""Intensity metrics: mean squared error, local NCC and NCC with a label term."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd.function import once_differentiable

from src_training.metrics._common import (
    _at_least_float32,
    _check_pair,
    _standardise,
    _window_sum,
)
from src_training.metrics.dice import soft_dice_loss
from src_training.spatial.transforms import one_hot


def local_ncc(warped: Tensor, fixed: Tensor, window: int = 9, eps: float = 1e-5) -> Tensor:
    """Local squared normalised cross-correlation map.

    Both images are first centred on their global mean and divided by their global
    standard deviation (detached; NCC does not depend on it up to ``eps``), per image and
    channel. Then, with local means ``<.>`` over the cubic window of
    side ``window`` around every voxel (zero padded at the border and always divided by
    the full window size, as in VoxelMorph; after standardisation zero is the image mean),

    ``cc = (<IJ> - <I><J>)^2 / (max(<I^2> - <I>^2, 0) * max(<J^2> - <J>^2, 0) + eps)``.

    The five local moments ``I, J, I^2, J^2, IJ`` are stacked as channels and
    box-filtered in one separable pass; the backward pass is written out by hand
    (:class:`_LocalNCC`), so autograd records one node instead of about thirty. The
    standardisation makes ``eps`` relative to the data's scale, so ``cc`` is invariant
    to ``a * I + b`` (``a > 0``) of either image, and it is 0 (not NaN) where either
    image is locally flat. Half-precision inputs are computed in float32.

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
    _check_pair(warped, fixed)
    if window < 1 or window % 2 == 0:
        raise ValueError(f"the NCC window must be a positive odd integer, got {window}")
    warped, fixed = _at_least_float32(warped), _at_least_float32(fixed)
    with torch.autocast(warped.device.type, enabled=False):  # the moments need float32
        return _LocalNCC.apply(_standardise(warped), _standardise(fixed), window // 2, eps)


class _LocalNCC(torch.autograd.Function):
    """The ``cc`` map of :func:`local_ncc` from standardised images, with its gradient.

    With ``c = <IJ> - <I><J>``, ``v_I = max(<I^2> - <I>^2, 0)``, ``D = v_I v_J + eps``
    and an incoming gradient ``G`` of ``cc = c^2 / D``: ``dcc/dc = 2c / D`` and
    ``dcc/dv_I = -c^2 v_J / D^2``. The moments' adjoints are
    ``g<I> = -g_c <J> - 2 <I> g_vI``, ``g<I^2> = g_vI`` and ``g<IJ> = g_c``; as the
    zero-padded window mean ``<.>`` is self-adjoint, ``dL/dI = <g<I>> + 2 I <g<I^2>>
    + J <g<IJ>>`` (and likewise for ``J``), three channels box-filtered per image.
    """

    @staticmethod
    def forward(ctx: Any, i: Tensor, j: Tensor, radius: int, eps: float) -> Tensor:
        channels = i.shape[1]
        count = (2 * radius + 1) ** (i.dim() - 2)
        moments = torch.stack([i, j, i * i, j * j, i * j], dim=2).flatten(1, 2)
        means = _window_sum(moments, radius).div_(count)
        mu_i, mu_j, ii, jj, ij = means.unflatten(1, (channels, 5)).unbind(dim=2)
        cov = ij - mu_i * mu_j
        var_i = ii - mu_i * mu_i  # before the clamp at 0, whose gradient mask needs the sign
        var_j = jj - mu_j * mu_j
        ctx.save_for_backward(i, j, mu_i, mu_j, cov, var_i, var_j)
        ctx.radius, ctx.count, ctx.eps = radius, count, eps
        return cov * cov / (var_i.clamp(min=0.0) * var_j.clamp(min=0.0) + eps)

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None, None, None]:
        i, j, mu_i, mu_j, cov, var_i, var_j = ctx.saved_tensors
        need_i, need_j = ctx.needs_input_grad[:2]
        clamped_i, clamped_j = var_i.clamp(min=0.0), var_j.clamp(min=0.0)
        den = (clamped_i * clamped_j).add_(ctx.eps)
        ratio = grad * cov / den  # G c / D
        g_cov = 2.0 * ratio
        g_den = ratio.mul_(cov).div_(den).neg_()  # -G c^2 / D^2
        adjoints = []
        if need_i:
            g_var_i = g_den * clamped_j * (var_i >= 0)
            adjoints += [-g_cov * mu_j - 2.0 * mu_i * g_var_i, g_var_i]
        if need_j:
            g_var_j = g_den * clamped_i * (var_j >= 0)
            adjoints += [-g_cov * mu_i - 2.0 * mu_j * g_var_j, g_var_j]
        adjoints.append(g_cov)
        parts = len(adjoints)
        filtered = _window_sum(torch.stack(adjoints, dim=2).flatten(1, 2), ctx.radius)
        filtered = filtered.div_(ctx.count).unflatten(1, (i.shape[1], parts)).unbind(dim=2)
        grad_i = grad_j = None
        if need_i:
            grad_i = filtered[0] + 2.0 * i * filtered[1] + j * filtered[-1]
        if need_j:
            first = 2 if need_i else 0
            grad_j = filtered[first] + 2.0 * j * filtered[first + 1] + i * filtered[-1]
        return grad_i, grad_j, None, None


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
    (:func:`src_training.spatial.transforms.warp_onehot`), with the fixed labels.

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
