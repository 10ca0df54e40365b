"""Turn registration results into layer data: vectors, checkerboards and folds.

Every function here is pure NumPy and never touches Qt or napari (the grid is
:mod:`napari_deepsim._jobs.grid_raster`), so it runs in a worker thread and in plain unit tests.

Displacements follow the convention of :mod:`src_training.spatial.transforms`: a field ``u`` of
shape ``(ndim, *spatial)`` in voxels pulls back, ``warped(x) = moving(x + u(x))``. The
overlays therefore draw, for each point ``p`` of the FIXED grid, the point ``p + u(p)``
of the moving image that it shows.
"""

from __future__ import annotations

import numpy as np


def _check_field(disp: np.ndarray, ndims: tuple[int, ...]) -> None:
    if disp.ndim - 1 not in ndims or disp.shape[0] != disp.ndim - 1:
        dims = " or ".join(f"{n}D" for n in ndims)
        raise ValueError(
            f"expected a {dims} displacement field of shape (ndim, *spatial), got {disp.shape}"
        )


def _check_spacing(spacing: int, name: str = "spacing") -> None:
    if int(spacing) < 1:
        raise ValueError(f"the grid {name} must be a positive number of pixels, got {spacing}")


def checkerboard(fixed: np.ndarray, warped: np.ndarray, tiles: int) -> np.ndarray:
    """Interleave two images of one shape in a checkerboard of ``tiles`` tiles per axis.

    Parameters
    ----------
    fixed, warped : numpy.ndarray
        2D or 3D images of the same shape.
    tiles : int
        Number of tiles along every axis.

    Returns
    -------
    numpy.ndarray
        ``fixed`` on tiles whose indices sum to an even number, ``warped`` on the others.
    """
    if fixed.shape != warped.shape:
        raise ValueError(f"the images differ in shape: {fixed.shape} vs {warped.shape}")
    if fixed.ndim not in (2, 3):
        raise ValueError(f"a checkerboard needs 2D or 3D images, got shape {fixed.shape}")
    _check_spacing(tiles, "tile count")
    parity = np.zeros(fixed.shape, np.int64)
    for axis, size in enumerate(fixed.shape):
        index = np.arange(size) * tiles // size
        parity += index.reshape([-1 if a == axis else 1 for a in range(fixed.ndim)])
    return np.where(parity % 2 == 0, fixed, warped)


def subsampled_vectors(disp: np.ndarray, step: int) -> np.ndarray:
    """Sample a 2D or 3D displacement every ``step`` voxels as napari Vectors data.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(ndim, *spatial)`` displacement in voxels, ``ndim`` 2 or 3.
    step : int
        Distance between arrows in voxels.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, ndim)`` float32: ``[:, 0]`` the fixed-grid position ``p`` and ``[:, 1]``
        the projection ``u(p)`` towards the moving-image point it samples.
    """
    _check_field(disp, (2, 3))
    _check_spacing(step, "vector step")
    axes = np.meshgrid(*[np.arange(0, n, step) for n in disp.shape[1:]], indexing="ij")
    position = np.stack([a.ravel() for a in axes], axis=-1)
    projection = disp[(slice(None), *[a.ravel() for a in axes])].T
    return np.stack([position, projection], axis=1).astype(np.float32)


def fold_points(jacobian: np.ndarray, limit: int = 20000) -> np.ndarray:
    """Return the voxels where the Jacobian determinant is ``<= 0``, as napari Points.

    Parameters
    ----------
    jacobian : numpy.ndarray
        Jacobian determinant of a volume.
    limit : int
        At most this many points: every k-th fold when there are more.

    Returns
    -------
    numpy.ndarray
        ``(N, jacobian.ndim)`` float32 voxel coordinates.
    """
    where = np.argwhere(np.asarray(jacobian) <= 0)
    every = max(1, -(-len(where) // max(1, limit)))
    return where[::every].astype(np.float32)


def folds(jacobian: np.ndarray) -> np.ndarray:
    """Mark folded voxels, where the Jacobian determinant is ``<= 0``.

    Parameters
    ----------
    jacobian : numpy.ndarray
        Jacobian determinant of any shape.

    Returns
    -------
    numpy.ndarray
        uint8 array: 1 at folds, 0 elsewhere.
    """
    return (np.asarray(jacobian) <= 0).astype(np.uint8)
