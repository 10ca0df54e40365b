"""Intensity metrics: mean squared error, local NCC and NCC with a label term."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.metrics._common import _box_sum, _check_pair, _standardise
from src_training.spatial import one_hot


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
