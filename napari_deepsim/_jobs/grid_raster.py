"""The deformation grid as an image: warped grid lines drawn into pixels, slice by slice.

A napari Shapes layer of a few hundred long paths takes the GUI thread a second or more
to triangulate; an image of the same lines costs one texture. :func:`draw_lines` draws
polylines into an image with bilinear weights (anti-aliased, continuous at any
deformation); :func:`warped_grid` draws the fixed grid's lines where they sample the
moving image (``p + u(p)``, as :func:`src_training.spatial.grid.grid_lines` traces
them) for a 2D field, every frame of a stack and every slice of a volume. In a volume
each slice along the first axis gets its own 2D grid moved by the in-plane
displacement of that slice, so every slice shows continuous lines (the out-of-plane
component is what the Jacobian and the vectors show). Pure NumPy, no Qt.
"""

from __future__ import annotations

import numpy as np

STEP = 0.5  # pixels between the samples drawn along a polyline


def line_width(shape: tuple[int, ...]) -> int:
    """Return a line width in pixels that stays visible when the image is fit to a screen.

    Parameters
    ----------
    shape : tuple of int
        The image's spatial shape.

    Returns
    -------
    int
        1 up to about 1500 pixels per side, then one more per 1024 pixels.
    """
    return max(1, round(max(shape) / 1024))


def _densify(lines: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sample ``(L, N, 2)`` polylines at most :data:`STEP` pixels apart.

    Returns the ``(M, 2)`` points and each one's weight: the length of line it stands
    for, so that a pixel crossed by a line gets 1 however finely it was sampled.
    """
    if lines.shape[1] < 2:
        points = lines.reshape(-1, 2)
        return points, np.ones(len(points), np.float32)
    delta = np.diff(lines, axis=1)
    lengths = np.sqrt((delta**2).sum(axis=-1))
    parts = int(min(np.ceil(float(lengths.max(initial=0.0)) / STEP), 64)) or 1
    fractions = (np.arange(parts, dtype=np.float32) / parts)[None, None, :, None]
    samples = lines[:, :-1, None] + delta[:, :, None] * fractions
    weights = np.repeat(lengths[:, :, None] / parts, parts, axis=2)
    # the last point (not a sample yet) and half a pixel of line past each end
    ends = np.concatenate([lines[:, 0], lines[:, -1]])
    end_weights = np.repeat(np.array([0.5, 1.0], np.float32), len(lines))
    points = np.concatenate([samples.reshape(-1, 2), ends])
    return points, np.concatenate([weights.reshape(-1), end_weights]).astype(np.float32)


def draw_lines(lines: list[np.ndarray], shape: tuple[int, int], width: int = 1) -> np.ndarray:
    """Draw polylines into an image with bilinear weights.

    Parameters
    ----------
    lines : list of numpy.ndarray
        ``(N, 2)`` arrays of ``(row, col)`` points; lines of one length are drawn together.
    shape : tuple of int
        ``(H, W)`` of the image.
    width : int
        Line width in pixels (a maximum filter widens the 1-pixel line).

    Returns
    -------
    numpy.ndarray
        float32 image of ``shape`` with values in ``[0, 1]``: 1 on a line.
    """
    height, width_px = shape
    total = np.zeros(height * width_px, np.float32)
    for length in sorted({len(line) for line in lines}):
        same = np.stack([line for line in lines if len(line) == length]).astype(np.float32)
        points, lengths = _densify(same)
        base = np.floor(points)
        frac = points - base
        rows, cols = base[:, 0].astype(np.int64), base[:, 1].astype(np.int64)
        for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):
            weight = (frac[:, 0] if dr else 1 - frac[:, 0]) * (frac[:, 1] if dc else 1 - frac[:, 1])
            weight = weight * lengths
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < height) & (c >= 0) & (c < width_px)
            index = r[inside] * width_px + c[inside]
            total += np.bincount(index, weight[inside], total.size).astype(np.float32)
    image = np.minimum(total.reshape(shape), 1.0)  # 1 per pixel of line length
    if width > 1:
        from scipy.ndimage import maximum_filter

        image = maximum_filter(image, size=width)
    return image


def _lines(disp: np.ndarray, spacing: int) -> list[np.ndarray]:
    """Return the fixed grid's row and column lines moved to ``p + u(p)``."""
    height, width = disp.shape[1:]
    rows = np.arange(0, height, spacing)
    cols = np.arange(0, width, spacing)
    across = np.arange(width, dtype=np.float32)
    down = np.arange(height, dtype=np.float32)
    row_lines = np.stack([rows[:, None] + disp[0][rows], across[None] + disp[1][rows]], axis=-1)
    col_lines = np.stack(
        [down[None] + disp[0][:, cols].T, cols[:, None] + disp[1][:, cols].T], axis=-1
    )
    return [*row_lines, *col_lines]


def warped_grid(disp: np.ndarray, spacing: int, width: int | None = None) -> np.ndarray:
    """Draw the deformed fixed grid of a 2D field, a stack of them, or a 3D field.

    Parameters
    ----------
    disp : numpy.ndarray
        ``(2, H, W)``, ``(T, 2, H, W)`` (a stack's fields) or ``(3, D, H, W)``
        displacement in voxels; a volume's slices are the planes of its first axis.
    spacing : int
        Distance between grid lines in pixels (at least 1).
    width : int, optional
        Line width in pixels (default :func:`line_width`).

    Returns
    -------
    numpy.ndarray
        float32 image of the spatial shape (``(T, H, W)`` for a stack), values in
        ``[0, 1]``.
    """
    disp = np.asarray(disp, np.float32)
    shape = disp.shape
    if disp.ndim == 3 and shape[0] == 2:
        if int(spacing) < 1:
            raise ValueError(f"the grid spacing must be a positive number of pixels, got {spacing}")
        pixels = line_width(shape[1:]) if width is None else width
        return draw_lines(_lines(disp, spacing), (shape[1], shape[2]), pixels)
    if disp.ndim == 4 and shape[1] == 2:
        return np.stack([warped_grid(frame, spacing, width) for frame in disp])
    if disp.ndim == 4 and shape[0] == 3:
        return np.stack([warped_grid(disp[1:, z], spacing, width) for z in range(shape[1])])
    raise ValueError(
        f"expected a (2, H, W), (T, 2, H, W) or (3, D, H, W) displacement field, got shape {shape}"
    )
