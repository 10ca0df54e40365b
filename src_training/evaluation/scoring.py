"""Scoring registration methods on pairs: Dice, HD95, field regularity, time."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage
from torch import Tensor

from src_training.metrics.dice import dice_per_class
from src_training.runtime.precision import autocast
from src_training.spatial.transforms import folding_fraction, sd_log_jacobian, warp_labels


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


@dataclass(frozen=True)
class Registered:
    """What a registration method returns for one pair.

    Attributes
    ----------
    disp : Tensor
        ``(1, ndim, *spatial)`` displacement in voxels (the convention of
        :mod:`src_training.spatial.transforms`).
    seconds : float
        Wall time of the registration itself.
    warped_labels : numpy.ndarray or None
        ``(*spatial)`` moving labels warped by the method itself (e.g. elastix's own
        resampler); None to warp them with ``disp``.
    """

    disp: Tensor
    seconds: float
    warped_labels: np.ndarray | None = None


Method = Callable[[np.ndarray, np.ndarray, np.ndarray], Registered]
"""Registers ``(moving image, fixed image, moving labels)``; images are ``(C, *spatial)``."""


def identity_method(moving: np.ndarray, fixed: np.ndarray, moving_labels: np.ndarray) -> Registered:
    """Register nothing (the identity baseline): a zero displacement in no time.

    Parameters
    ----------
    moving, fixed : numpy.ndarray
        ``(C, *spatial)`` images.
    moving_labels : numpy.ndarray
        ``(*spatial)`` labels (unused).

    Returns
    -------
    Registered
        A zero field.
    """
    return Registered(torch.zeros(1, moving.ndim - 1, *moving.shape[1:]), 0.0)


def network_method(
    network: torch.nn.Module, device: torch.device | str = "cpu", precision: str = "fp32"
) -> Method:
    """Wrap a registration network as a :data:`Method` timed over its forward pass.

    Parameters
    ----------
    network : nn.Module
        Maps ``(moving, fixed)`` batches to displacement fields.
    device : torch.device or str
        Where to run it.
    precision : str
        ``fp32``, ``bf16`` or ``fp16`` (autocast), as resolved by
        :func:`~src_training.runtime.precision.resolve_precision`.

    Returns
    -------
    Method
        The network as a registration method.
    """

    def register(moving: np.ndarray, fixed: np.ndarray, moving_labels: np.ndarray) -> Registered:
        start = time.perf_counter()
        with torch.inference_mode():
            m = torch.from_numpy(moving[None]).to(device)
            f = torch.from_numpy(fixed[None]).to(device)
            with autocast(device, precision):
                disp = network.to(device).eval()(m, f)
            disp = disp.float().cpu()
        return Registered(disp, time.perf_counter() - start)

    return register


@dataclass
class Scored:
    """Per-pair scores of one method, and the field of one pair kept for figures."""

    rows: list[dict[str, float]]
    kept: Registered | None = None


def score_pairs(
    images: np.ndarray,
    labels: np.ndarray,
    pairs: list[tuple[int, int]],
    method: Method,
    class_values: list[int],
    *,
    hd95: bool = False,
    keep: tuple[int, int] | None = None,
    landmarks: Sequence[int] = (),
    spacing: Sequence[float] | None = None,
) -> Scored:
    """Register each pair with ``method`` and score it.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, *spatial)`` normalised images.
    labels : numpy.ndarray
        ``(N, *spatial)`` class ids.
    pairs : list of tuple of int
        ``(moving, fixed)`` indices.
    method : Method
        The registration method, e.g. :func:`network_method` or :func:`identity_method`.
    class_values : list of int
        Original label value of each class id (names the per-class columns).
    hd95 : bool
        Also compute :func:`hd95_per_class` (column ``hd95``, mean over classes).
    keep : tuple of int, optional
        A pair whose :class:`Registered` result to return, for figures.
    landmarks : sequence of int
        Class ids scored by :func:`landmark_errors` too (columns ``tre_<value>`` and
        ``tre``, their mean over the landmarks in both maps, NaN if none).
    spacing : sequence of float, optional
        Voxel size for the landmark errors; None gives them in voxels.

    Returns
    -------
    Scored
        Per pair: ``moving``, ``fixed``, ``dice`` (mean over classes present in either
        map, background included), ``dice_<value>`` per class, ``hd95`` if asked,
        the landmark errors if asked, ``folding_percent``, ``sdlogj``, ``seconds``; and
        the kept result.
    """
    scored = Scored([])
    for moving, fixed in pairs:
        result = method(images[moving], images[fixed], labels[moving])
        warped = result.warped_labels
        if warped is None:
            moved = warp_labels(torch.from_numpy(labels[moving : moving + 1, None]), result.disp)
            warped = moved[0, 0].numpy()
        scores = dice_per_class(warped, labels[fixed])
        row: dict[str, float] = {
            "moving": moving,
            "fixed": fixed,
            "dice": float(np.mean(list(scores.values()))),
            **{f"dice_{class_values[k]}": v for k, v in scores.items()},
        }
        if hd95:
            distances = hd95_per_class(warped, labels[fixed])
            row["hd95"] = float(np.mean(list(distances.values()))) if distances else float("nan")
        if landmarks:
            errors = landmark_errors(result.disp, labels[moving], labels[fixed], landmarks, spacing)
            row.update({f"tre_{class_values[k]}": v for k, v in errors.items()})
            row["tre"] = float(np.mean(list(errors.values()))) if errors else float("nan")
        row.update(**field_regularity(result.disp), seconds=result.seconds)
        scored.rows.append(row)
        if (moving, fixed) == keep:
            scored.kept = result
    return scored


def landmark_errors(
    disp: Tensor,
    moving_labels: np.ndarray,
    fixed_labels: np.ndarray,
    landmarks: Sequence[int],
    spacing: Sequence[float] | None = None,
) -> dict[int, float]:
    """Target registration error of landmarks marked by label classes.

    A landmark's fixed centroid ``c_f`` is mapped through the field (linearly
    interpolated there), ``c_f + u(c_f)``, and compared with its moving centroid
    ``c_m``: the error is ``|(c_f + u(c_f) - c_m) * spacing|``. With a zero field it is
    the distance between the two centroids. Landmarks absent from either map are
    skipped.

    Parameters
    ----------
    disp : Tensor
        ``(1, ndim, *spatial)`` displacement in voxels, pulling moving onto fixed.
    moving_labels, fixed_labels : numpy.ndarray
        Class-id maps on the fixed grid (the moving one before warping).
    landmarks : sequence of int
        The class ids that are landmarks.
    spacing : sequence of float, optional
        Voxel size per axis; None for errors in voxels.

    Returns
    -------
    dict
        ``{class id: error}`` for the landmarks present in both maps.
    """
    field = disp[0].detach().float().cpu().numpy()
    size = np.ones(field.shape[0]) if spacing is None else np.asarray(spacing, np.float64)
    errors = {}
    for k in landmarks:
        fixed_mask, moving_mask = fixed_labels == k, moving_labels == k
        if not (fixed_mask.any() and moving_mask.any()):
            continue
        centre = np.array(ndimage.center_of_mass(fixed_mask))
        moved = centre + [
            ndimage.map_coordinates(axis, centre[:, None], order=1, mode="nearest")[0]
            for axis in field
        ]
        offset = moved - np.array(ndimage.center_of_mass(moving_mask))
        errors[int(k)] = float(np.linalg.norm(offset * size))
    return errors


def evaluate_pairs(
    images: np.ndarray,
    labels: np.ndarray,
    pairs: list[tuple[int, int]],
    network: torch.nn.Module | None,
    class_values: list[int],
    device: torch.device | str = "cpu",
) -> list[dict[str, float]]:
    """Register each pair with a network and score it; ``network=None`` is the identity.

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
        The rows of :func:`score_pairs`.
    """
    method = identity_method if network is None else network_method(network, device)
    return score_pairs(images, labels, pairs, method, class_values).rows


def add_noise(images: np.ndarray, sigma: float, seed: int = 0) -> np.ndarray:
    """Add Gaussian noise of std ``sigma`` to normalised images, reproducibly.

    Parameters
    ----------
    images : numpy.ndarray
        ``(N, C, *spatial)`` images normalised to about ``[0, 1]``.
    sigma : float
        Standard deviation of the noise (0 returns the images unchanged).
    seed : int
        Seed of the noise: the same seed gives the same noisy images.

    Returns
    -------
    numpy.ndarray
        A noisy float32 copy (not clipped).
    """
    if sigma == 0:
        return images
    noise = np.random.default_rng(seed).normal(0.0, sigma, images.shape)
    return (images + noise).astype(np.float32)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (the image border counts)."""
    return mask & ~ndimage.binary_erosion(mask, border_value=0)


def hausdorff95(a: np.ndarray, b: np.ndarray) -> float:
    """95th percentile of the symmetric surface distances of two non-empty masks.

    The distances of every surface voxel of ``a`` to the surface of ``b`` and of every
    surface voxel of ``b`` to the surface of ``a`` are pooled, and their 95th percentile
    (linear interpolation) is returned, in voxels. A surface voxel is a mask voxel with a
    face neighbour outside the mask or outside the image.

    Parameters
    ----------
    a, b : numpy.ndarray
        Boolean masks of one shape, each with at least one voxel set.

    Returns
    -------
    float
        HD95 in voxels; 0 for identical masks.
    """
    surface_a, surface_b = _surface(a), _surface(b)
    # distances to surface voxels are exact inside any box holding both surfaces
    hits = np.nonzero(surface_a | surface_b)
    box = tuple(slice(int(h.min()), int(h.max()) + 1) for h in hits)
    surface_a, surface_b = surface_a[box], surface_b[box]
    a_to_b = ndimage.distance_transform_edt(~surface_b)[surface_a]
    b_to_a = ndimage.distance_transform_edt(~surface_a)[surface_b]
    return float(np.percentile(np.concatenate([a_to_b, b_to_a]), 95))


def hd95_per_class(pred: np.ndarray, target: np.ndarray) -> dict[int, float]:
    """:func:`hausdorff95` of every label value present in both maps, background included.

    A class present in only one of the maps has no finite distance and is skipped (its
    absence is already scored by Dice); with no class in both maps the result is empty.

    Parameters
    ----------
    pred, target : numpy.ndarray
        Integer label maps of one shape.

    Returns
    -------
    dict
        ``{class id: HD95 in voxels}`` in increasing class order.
    """
    pred, target = np.asarray(pred), np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"label maps differ in shape: {pred.shape} vs {target.shape}")
    both = np.intersect1d(np.unique(pred), np.unique(target))
    return {int(v): hausdorff95(pred == v, target == v) for v in both}


def summarise(rows: list[dict[str, float]]) -> dict[str, float]:
    """Mean (and the standard deviation of Dice) over the pairs of one model.

    Parameters
    ----------
    rows : list of dict
        Output of :func:`score_pairs` or :func:`evaluate_pairs`.

    Returns
    -------
    dict
        ``n_pairs``, ``dice``, ``dice_sd``, the per-class ``dice_<value>`` means over the
        pairs where the class is present, ``hd95`` and the landmark errors ``tre`` and
        ``tre_<value>`` (if the rows have them: the mean over the pairs where they are
        defined, NaN if none), ``folding_percent``, ``sdlogj`` and ``seconds_per_pair``.
    """
    dice = np.array([r["dice"] for r in rows])
    per_class = sorted({k for r in rows for k in r if k.startswith("dice_")}, key=_class_key)
    summary = {
        "n_pairs": len(rows),
        "dice": float(dice.mean()),
        "dice_sd": float(dice.std(ddof=1)) if len(rows) > 1 else 0.0,
        **{k: float(np.mean([r[k] for r in rows if k in r])) for k in per_class},
    }
    distances = sorted({k for r in rows for k in r if k == "hd95" or k.startswith("tre")})
    for key in distances:
        defined = [r[key] for r in rows if key in r and np.isfinite(r[key])]
        summary[key] = float(np.mean(defined)) if defined else float("nan")
    return {
        **summary,
        "folding_percent": float(np.mean([r["folding_percent"] for r in rows])),
        "sdlogj": float(np.mean([r["sdlogj"] for r in rows])),
        "seconds_per_pair": float(np.mean([r["seconds"] for r in rows])),
    }


def _class_key(column: str) -> tuple[int, str]:
    value = column.removeprefix("dice_")
    return (int(value), "") if value.lstrip("-").isdigit() else (0, value)
