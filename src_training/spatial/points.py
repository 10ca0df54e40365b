"""Moving points with a displacement field: landmarks of the moving image onto the fixed.

An image is warped by pulling back, ``warped(q) = moving(q + u(q))`` (see
:mod:`src_training.spatial.transforms`), so a landmark at position ``p`` of the moving
image appears at the fixed position ``q`` that solves ``q + u(q) = p``: the field has
to be inverted at ``p``. :func:`invert_points` does that by the fixed-point iteration
``q <- p - u(q)``, interpolating ``u`` linearly (outside the grid ``u`` takes the edge
value, as in warping). The iteration converges where ``u`` changes by less than one
voxel per voxel (a contraction), which holds for the smooth fields registration
produces away from folds; its error shrinks by that factor at every step.
"""

from __future__ import annotations

import numpy as np
import torch

from src_training.spatial.transforms import sample


def sample_field(disp: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Interpolate a displacement field linearly at points (edge values outside).

    Parameters
    ----------
    disp : numpy.ndarray
        ``(ndim, *spatial)`` displacement in voxels.
    points : numpy.ndarray
        ``(N, ndim)`` positions in voxels, in array axis order.

    Returns
    -------
    numpy.ndarray
        ``(N, ndim)`` float64 displacement at each point.
    """
    field = torch.as_tensor(np.asarray(disp, np.float64))[None]
    positions = torch.as_tensor(np.asarray(points, np.float64).reshape(-1, field.shape[1]))
    return _sample(field, positions).numpy()


def _sample(field: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Sample a ``(1, ndim, *spatial)`` field at ``(N, ndim)`` voxel positions."""
    ndim = field.shape[1]
    at = positions.T.reshape(1, ndim, -1, *[1] * (ndim - 1))  # (1, ndim, N, 1...)
    return sample(field, at).reshape(ndim, -1).T


def invert_points(
    disp: np.ndarray, points: np.ndarray, iterations: int = 100, tolerance: float = 1e-4
) -> tuple[np.ndarray, np.ndarray]:
    """Move points of the moving image to the fixed grid: solve ``q + u(q) = p``.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(ndim, *spatial)`` displacement in voxels of the fixed grid.
    points : numpy.ndarray
        ``(N, ndim)`` positions ``p`` in the moving image, in voxels.
    iterations : int
        Most fixed-point steps ``q <- p - u(q)``.
    tolerance : float
        Stop when every point's residual ``|q + u(q) - p|`` is below this (voxels).

    Returns
    -------
    fixed : numpy.ndarray
        ``(N, ndim)`` float64 positions ``q`` on the fixed grid.
    residual : numpy.ndarray
        ``(N,)`` remaining ``|q + u(q) - p|`` in voxels (large where ``u`` folds).
    """
    ndim = disp.shape[0]
    field = torch.as_tensor(np.asarray(disp, np.float64))[None]
    target = torch.as_tensor(np.asarray(points, np.float64).reshape(-1, ndim))
    fixed = target - _sample(field, target)
    residual = torch.zeros(len(target), dtype=torch.float64)
    for _ in range(max(1, iterations)):
        moved = _sample(field, fixed)
        residual = (fixed + moved - target).norm(dim=1)
        if len(residual) == 0 or residual.max() < tolerance:
            break
        fixed = target - moved
    return fixed.numpy(), residual.numpy()


def check_points(points: np.ndarray, ndim: int, stack: bool = False) -> np.ndarray:
    """Refuse points with too few coordinates for a field.

    Parameters
    ----------
    points : numpy.ndarray
        ``(N, D)`` coordinates.
    ndim : int
        Spatial dimensions of the field.
    stack : bool
        The field holds one field per frame (the points need a frame column).

    Returns
    -------
    numpy.ndarray
        The points as a float64 ``(N, D)`` array.
    """
    points = np.array(points, np.float64, ndmin=2)
    if points.ndim != 2 or points.shape[1] < ndim + int(stack):
        need = f"a frame and {ndim} coordinates" if stack else f"{ndim} coordinates"
        raise ValueError(
            f"points of {points.shape[-1]} coordinates cannot be moved by a {ndim}D field"
            f"{' stack' if stack else ''}; give points with {need}"
        )
    return points


def move_points(
    disp: np.ndarray, points: np.ndarray, stack: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Move points given in voxels of the field's grid, with extra leading coordinates.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(ndim, *spatial)`` field, or ``(T, ndim, *spatial)`` with ``stack``.
    points : numpy.ndarray
        ``(N, D)`` with ``D >= ndim`` (``D > ndim`` for a stack): the last ``ndim``
        columns are moved; leading ones (a time, a track) are kept. With ``stack`` the
        column before the spatial ones is the frame, rounded to choose its field.
    stack : bool
        ``disp`` holds one field per frame.

    Returns
    -------
    moved : numpy.ndarray
        ``(N, D)`` float64 points, the spatial columns on the fixed grid.
    residual : numpy.ndarray
        ``(N,)`` residual of the inversion in voxels.
    """
    ndim = disp.shape[int(stack)]
    points = check_points(points, ndim, stack)
    moved = points.copy()
    residual = np.zeros(len(points))
    if not stack:
        moved[:, -ndim:], residual = invert_points(disp, points[:, -ndim:])
        return moved, residual
    frames = np.clip(np.rint(points[:, -ndim - 1]), 0, len(disp) - 1).astype(int)
    for frame in np.unique(frames):
        chosen = frames == frame
        moved[chosen, -ndim:], residual[chosen] = invert_points(disp[frame], points[chosen, -ndim:])
    return moved, residual
