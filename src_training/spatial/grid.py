"""The deformed grid: lines of the fixed grid drawn where they sample the moving image."""

from __future__ import annotations

import numpy as np


def grid_lines(disp: np.ndarray, spacing: int) -> list[np.ndarray]:
    """Trace the deformed fixed grid as polylines.

    Every ``spacing``-th row (from row 0) and every ``spacing``-th column (from column
    0) of the fixed grid becomes one polyline, sampled at every pixel along the line
    and moved to where it samples the moving image: ``p + u(p)``.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(2, H, W)`` displacement in pixels; channel 0 moves rows, channel 1 columns.
    spacing : int
        Distance between grid lines in pixels (at least 1).

    Returns
    -------
    list of numpy.ndarray
        The row lines (``W`` points each) followed by the column lines (``H`` points
        each); each is an ``(N, 2)`` float32 array of ``(row, col)`` coordinates.
    """
    if disp.ndim != 3 or disp.shape[0] != 2:
        raise ValueError(f"expected a (2, H, W) displacement field, got shape {disp.shape}")
    if int(spacing) < 1:
        raise ValueError(f"the grid spacing must be a positive number of pixels, got {spacing}")
    height, width = disp.shape[1:]
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    points = np.stack([rows + disp[0], cols + disp[1]], axis=-1)  # (H, W, 2)
    row_lines = [points[r] for r in range(0, height, spacing)]
    col_lines = [points[:, c] for c in range(0, width, spacing)]
    return [np.ascontiguousarray(line, dtype=np.float32) for line in row_lines + col_lines]
