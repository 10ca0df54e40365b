"""Turn registration results into layer data: grids, vectors, checkerboards and folds.

Every function here is pure NumPy (plus the core's warp for raster grids) and never
touches Qt or napari, so it runs in a worker thread and in plain unit tests.

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


def grid_mask(shape: tuple[int, ...], spacing: int) -> np.ndarray:
    """Rasterise a straight grid: 1 on every line through grid nodes, 0 elsewhere.

    A voxel lies on a grid line when all but at most one of its coordinates are
    multiples of ``spacing``: in 2D the rows and columns every ``spacing`` pixels, in
    3D the lines parallel to each axis through the nodes of the ``spacing`` lattice.

    Parameters
    ----------
    shape : tuple of int
        Spatial shape ``(H, W)`` or ``(D, H, W)``.
    spacing : int
        Distance between grid lines in voxels.

    Returns
    -------
    numpy.ndarray
        float32 array of ``shape``.
    """
    _check_spacing(spacing)
    on_node = np.zeros(shape, np.int32)
    for axis, size in enumerate(shape):
        index = np.arange(size) % spacing == 0
        on_node += index.reshape([-1 if a == axis else 1 for a in range(len(shape))])
    return (on_node >= len(shape) - 1).astype(np.float32)


def raster_grid(disp: np.ndarray, spacing: int) -> np.ndarray:
    """Warp a rasterised grid with a displacement, for 3D fields and image stacks.

    The grid of :func:`grid_mask` is warped with the same field, with linear
    interpolation, as the moving image, so each bright line shows where that fixed-grid
    line samples the moving image.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(ndim, *spatial)`` displacement in voxels, ``ndim`` 2 or 3.
    spacing : int
        Distance between grid lines in voxels.

    Returns
    -------
    numpy.ndarray
        float32 image of shape ``spatial`` with values in ``[0, 1]``.
    """
    import torch

    from src_training.registration.inference import warp_array

    _check_field(disp, (2, 3))
    grid = grid_mask(tuple(disp.shape[1:]), spacing)
    field = torch.as_tensor(np.asarray(disp, dtype=np.float32))[None]
    return warp_array(grid[None], field)[0].astype(np.float32)


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
    """Sample a 2D displacement every ``step`` pixels as napari Vectors data.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(2, H, W)`` displacement in pixels.
    step : int
        Distance between arrows in pixels.

    Returns
    -------
    numpy.ndarray
        ``(N, 2, 2)`` float32: ``[:, 0]`` the fixed-grid position ``p`` and ``[:, 1]``
        the projection ``u(p)`` towards the moving-image point it samples.
    """
    _check_field(disp, (2,))
    _check_spacing(step, "vector step")
    rows, cols = np.mgrid[0 : disp.shape[1] : step, 0 : disp.shape[2] : step]
    position = np.stack([rows.ravel(), cols.ravel()], axis=-1)
    projection = disp[:, rows.ravel(), cols.ravel()].T
    return np.stack([position, projection], axis=1).astype(np.float32)


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
