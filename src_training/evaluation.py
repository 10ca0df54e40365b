"""Registration quality: Dice overlap and transformation regularity."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from src_training.spatial import folding_fraction, sd_log_jacobian


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


def field_regularity(disp: Tensor) -> dict[str, float]:
    """Folding percentage and std of log-Jacobian of one displacement ``(1, ndim, *spatial)``.

    Parameters
    ----------
    disp : Tensor
        Displacement in voxels.

    Returns
    -------
    dict
        ``folding_percent`` (share of voxels with ``det J <= 0``, in %) and ``sdlogj``.
    """
    return {
        "folding_percent": 100.0 * float(folding_fraction(disp).mean()),
        "sdlogj": float(sd_log_jacobian(disp).mean()),
    }
