"""Dice overlap: the one hard Dice of label maps and the one soft Dice loss.

Both skip classes absent from both maps instead of counting them as zero overlap
(the reference code's defect) or as perfect overlap.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def dice_per_class(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> dict[int, float]:
    """Dice of every label value present in either map, background included.

    Classes absent from both maps are skipped rather than scored as 0 (the
    reference code's defect) or 1.

    Parameters
    ----------
    pred, target : Tensor or numpy.ndarray
        Integer label maps of one shape.

    Returns
    -------
    dict
        ``{class id: Dice}`` in increasing class order.
    """
    pred = torch.as_tensor(np.asarray(pred) if isinstance(pred, np.ndarray) else pred)
    target = torch.as_tensor(np.asarray(target) if isinstance(target, np.ndarray) else target)
    if pred.shape != target.shape:
        raise ValueError(
            f"label maps differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    scores = {}
    for value in torch.cat([pred.unique(), target.unique()]).unique().tolist():
        a, b = pred == value, target == value
        scores[int(value)] = float(2 * (a & b).sum() / (a.sum() + b.sum()))
    return scores


def mean_dice(pred: Tensor | np.ndarray, target: Tensor | np.ndarray) -> float:
    """Mean of :func:`dice_per_class` over the classes present in either map."""
    scores = dice_per_class(pred, target)
    return float(np.mean(list(scores.values())))


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


def batch_mean_dice(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """:func:`mean_dice` of every pair of label maps in a batch, computed on their device.

    Parameters
    ----------
    pred, target : Tensor
        ``(B, *spatial)`` integer class ids in ``0 .. num_classes - 1``.
    num_classes : int
        Number of class ids.

    Returns
    -------
    Tensor
        ``(B,)`` float64: the mean Dice over the classes present in either map of each
        pair, as :func:`mean_dice` scores it (without reading the maps to the host).
    """
    if pred.shape != target.shape:
        raise ValueError(
            f"label maps differ in shape: {tuple(pred.shape)} vs {tuple(target.shape)}"
        )
    batch = pred.shape[0]
    offset = torch.arange(batch, device=pred.device).view(-1, *[1] * (pred.dim() - 1))
    p = (pred.long() + offset * num_classes).flatten()
    t = (target.long() + offset * num_classes).flatten()
    size = batch * num_classes
    total = torch.bincount(p, minlength=size) + torch.bincount(t, minlength=size)
    both = torch.bincount(p[p == t], minlength=size)
    total, both = total.view(batch, -1).double(), both.view(batch, -1).double()
    present = total > 0
    dice = 2.0 * both / total.clamp(min=1)
    return (dice * present).sum(dim=1) / present.sum(dim=1).clamp(min=1)
