"""The main job's one-page figure: each method's result on a pair, and Dice against noise.

Drawn with the Agg backend on a :class:`matplotlib.figure.Figure` (no pyplot), like the
figures of :mod:`src_training.evaluation.figures`, whose helpers it uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from src_training.evaluation.figures import (
    FOLD_COLOUR,
    PANEL_INCHES,
    field_2d,
    new_figure,
    save_figure,
    view_2d,
)
from src_training.spatial.grid import grid_lines
from src_training.spatial.transforms import jacobian_determinant

COLUMNS = 5
GRID_COLOUR = "#ffb000"


@dataclass(frozen=True)
class MethodPanel:
    """One method's result on the shown pair.

    Attributes
    ----------
    name : str
        The method, as in the table.
    warped : numpy.ndarray
        ``(C, *spatial)`` warped moving image.
    disp : Tensor
        ``(1, ndim, *spatial)`` displacement.
    dice : float
        Its Dice on this pair.
    """

    name: str
    warped: np.ndarray
    disp: Tensor
    dice: float


def overview_figure(
    path: str | Path,
    fixed: np.ndarray,
    moving: np.ndarray,
    panels: Sequence[MethodPanel],
    curves: dict[str, list[tuple[float, float]]],
    *,
    title: str = "",
    spacing: int = 8,
) -> Path:
    """Draw the pair, every method's warped image with its grid and Jacobian, and Dice vs noise.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    fixed, moving : numpy.ndarray
        ``(C, *spatial)`` images of the pair shown.
    panels : sequence of MethodPanel
        One per method, in table order.
    curves : dict
        ``{method: [(noise sigma, mean Dice), ...]}`` for the last panel.
    title : str
        Figure title.
    spacing : int
        Grid line distance in pixels.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    images = [("fixed", view_2d(fixed), None, ""), ("moving", view_2d(moving), None, "")]
    images += [(p.name, view_2d(p.warped), field_2d(p.disp), f"Dice {p.dice:.3f}") for p in panels]
    image_rows = -(-len(images) // COLUMNS)
    jacobian_rows = -(-(len(panels) + 2) // COLUMNS)  # the curve takes two cells
    rows = image_rows + jacobian_rows
    figure = new_figure(PANEL_INCHES * COLUMNS, PANEL_INCHES * rows + 0.5)
    grid = figure.add_gridspec(rows, COLUMNS)
    low, high = np.percentile(images[0][1], [1, 99])
    for index, (name, image, field, note) in enumerate(images):
        ax = figure.add_subplot(grid[divmod(index, COLUMNS)])
        ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
        if field is not None:
            for line in grid_lines(field, spacing):
                ax.plot(line[:, 1], line[:, 0], color=GRID_COLOUR, linewidth=0.5)
        _frame(ax, image.shape, f"{name}\n{note}" if note else name)
    norm = TwoSlopeNorm(vcenter=1.0, vmin=0.0, vmax=2.0)
    shown = None
    for index, panel in enumerate(panels):
        det = jacobian_determinant(panel.disp.detach().cpu().to(torch.float64))[0].numpy()
        det = det[det.shape[0] // 2] if det.ndim == 3 else det
        row, column = divmod(index, COLUMNS)
        ax = figure.add_subplot(grid[image_rows + row, column])
        shown = ax.imshow(np.clip(det, 0, 2), cmap="RdBu_r", norm=norm, interpolation="nearest")
        folds = np.ma.masked_where(det > 0, np.ones_like(det))
        ax.imshow(folds, cmap=ListedColormap([FOLD_COLOUR]), interpolation="nearest")
        _frame(ax, det.shape, f"det J: {panel.name}\nfolds {100 * float((det <= 0).mean()):.2f} %")
    if shown is not None:
        figure.colorbar(shown, ax=figure.axes[len(images) :], shrink=0.6, label="det J")
    row, column = divmod(len(panels), COLUMNS)
    column = min(column, COLUMNS - 2)
    _noise_plot(figure.add_subplot(grid[image_rows + row, column : column + 2]), curves)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def _frame(ax, shape: tuple[int, ...], title: str) -> None:
    ax.set_xlim(-0.5, shape[1] - 0.5)
    ax.set_ylim(shape[0] - 0.5, -0.5)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title, fontsize=8)


def _noise_plot(ax, curves: dict[str, list[tuple[float, float]]]) -> None:
    """Mean Dice of each method against the noise added, one line each."""
    for name, points in curves.items():
        sigmas, dice = zip(*points, strict=True)
        style = "-" if "deepsim" in name else "--"
        ax.plot(sigmas, dice, style, marker="o", markersize=3, linewidth=1.2, label=name)
    ax.set_xlabel("noise σ added (normalised intensity)", fontsize=8)
    ax.set_ylabel("mean Dice, held-out pairs", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower left", ncols=2)
