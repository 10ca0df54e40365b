"""Registration quality: Dice overlap and transformation regularity."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch import Tensor

from src_training.spatial import folding_fraction, sd_log_jacobian, warp_labels


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


def evaluate_pairs(
    images: np.ndarray,
    labels: np.ndarray,
    pairs: list[tuple[int, int]],
    network: torch.nn.Module | None,
    class_values: list[int],
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Register each pair and score it; ``network=None`` is the identity baseline.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, *spatial)`` normalised images.
    labels : numpy.ndarray
        ``(N, *spatial)`` class ids.
    pairs : list of tuple of int
        ``(moving, fixed)`` indices.
    network : nn.Module or None
        A registration network.
    class_values : list of int
        Original label value of each class id (names the per-class columns).
    device : torch.device or str
        Where to run the network.

    Returns
    -------
    list of dict
        Per pair: ``moving``, ``fixed``, ``dice`` (mean over classes present in either
        map, background included), ``dice_<value>`` per class, ``folding_percent``,
        ``sdlogj``, ``seconds``.
    """
    rows = []
    for moving, fixed in pairs:
        start = time.perf_counter()
        if network is None:
            disp = torch.zeros(1, images.ndim - 2, *images.shape[2:])
        else:
            with torch.inference_mode():
                m = torch.from_numpy(images[moving : moving + 1]).to(device)
                f = torch.from_numpy(images[fixed : fixed + 1]).to(device)
                disp = network.to(device).eval()(m, f).cpu()
        seconds = time.perf_counter() - start
        warped = warp_labels(torch.from_numpy(labels[moving : moving + 1, None]), disp)
        scores = dice_per_class(warped[0, 0], labels[fixed])
        row: dict[str, float] = {
            "moving": moving,
            "fixed": fixed,
            "dice": float(np.mean(list(scores.values()))),
            **{f"dice_{class_values[k]}": v for k, v in scores.items()},
            **field_regularity(disp),
            "seconds": seconds,
        }
        rows.append(row)
    return rows


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean (and the standard deviation of Dice) over the pairs of one model.

    Parameters
    ----------
    rows : list of dict
        Output of :func:`evaluate_pairs`.

    Returns
    -------
    dict
        ``n_pairs``, ``dice``, ``dice_sd``, the per-class ``dice_<value>`` means over the
        pairs where the class is present, ``folding_percent``, ``sdlogj`` and
        ``seconds_per_pair``.
    """
    dice = np.array([r["dice"] for r in rows])
    per_class = sorted({k for r in rows for k in r if k.startswith("dice_")}, key=_class_key)
    return {
        "n_pairs": len(rows),
        "dice": float(dice.mean()),
        "dice_sd": float(dice.std(ddof=1)) if len(rows) > 1 else 0.0,
        **{k: float(np.mean([r[k] for r in rows if k in r])) for k in per_class},
        "folding_percent": float(np.mean([r["folding_percent"] for r in rows])),
        "sdlogj": float(np.mean([r["sdlogj"] for r in rows])),
        "seconds_per_pair": float(np.mean([r["seconds"] for r in rows])),
    }


def _class_key(column: str) -> tuple[int, str]:
    value = column.removeprefix("dice_")
    return (int(value), "") if value.lstrip("-").isdigit() else (0, value)
