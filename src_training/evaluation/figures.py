"""Paper-style figures of an evaluation and of training curves, as PNG files.

matplotlib is imported only here and only when a figure is asked for; figures are drawn
on :class:`matplotlib.figure.Figure` objects rendered by the Agg backend, never through
pyplot, so nothing opens a window and a running napari (Qt) session is not touched.

3D data is shown by its middle slice along the first spatial axis, with the in-plane
components of the field (channels 1 and 2).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from src_training.spatial.grid import grid_lines
from src_training.spatial.transforms import jacobian_determinant

MISSING_MATPLOTLIB = "figures need matplotlib, which is not installed; pip install matplotlib"
PANEL_INCHES = 2.6
FOLD_COLOUR = "limegreen"
MAX_COLUMNS = 8  # panels per row; more methods wrap onto further rows
MAX_BOXES_ACROSS = 12  # a box plot of more models draws one horizontal box per row


def require_matplotlib() -> None:
    """Refuse early, in one sentence, when matplotlib is missing.

    Raises
    ------
    ValueError
        If matplotlib cannot be imported.
    """
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise ValueError(MISSING_MATPLOTLIB) from None


def new_figure(width: float, height: float) -> Any:
    """Return a matplotlib figure of ``width`` x ``height`` inches (no pyplot state)."""
    require_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def save_figure(figure: Any, path: str | Path) -> Path:
    """Write a figure as PNG and return its path."""
    figure.savefig(path, format="png")
    return Path(path)


# --- box plot of per-pair Dice (the paper's Figure 2) -------------------------------------


@dataclass(frozen=True)
class Box:
    """One box of :func:`dice_boxplot`: a model's per-pair Dice and the text above it."""

    name: str
    values: list[float]
    label: str


def dice_boxes(
    pair_rows: Sequence[dict[str, Any]],
    reference: str | None = None,
    statistics: dict[str, dict[str, Any]] | None = None,
) -> list[Box]:
    """Gather one box per model, in the order the models appear in ``pair_rows``.

    Parameters
    ----------
    pair_rows : sequence of dict
        Rows with ``model`` and ``dice`` (the rows of ``pairs.csv``; failed pairs, without
        ``dice``, are left out).
    reference : str, optional
        The reference model: its box is labelled ``ref``.
    statistics : dict, optional
        :func:`src_training.evaluation.stats.against_reference` output; each other box is labelled
        with its stars (``n.s.`` when not significant) and Cohen's d.

    Returns
    -------
    list of Box
        One per model.
    """
    names = list(dict.fromkeys(str(row["model"]) for row in pair_rows))
    boxes = []
    for name in names:
        values = [float(row["dice"]) for row in pair_rows if row["model"] == name and "dice" in row]
        label = ""
        if name == reference:
            label = "ref"
        elif statistics is not None and name in statistics:
            stat = statistics[name]
            label = f"{stat['stars'] or 'n.s.'}\nd={float(stat['cohens_d']):.2f}"
        boxes.append(Box(name, values, label))
    return boxes


def dice_boxplot(path: str | Path, boxes: Sequence[Box], title: str = "") -> Path:
    """Draw per-pair Dice as one box per model with its label above the box.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    boxes : sequence of Box
        From :func:`dice_boxes`.
    title : str
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    top = max(max(box.values) for box in boxes)
    bottom = min(min(box.values) for box in boxes)
    pad = max(top - bottom, 0.01) * 0.04
    if len(boxes) > MAX_BOXES_ACROSS:
        return _dice_rows(path, boxes, title, (bottom, top, pad))
    figure = new_figure(max(4.0, 0.9 * len(boxes) + 1.5), 4.0)
    ax = figure.add_subplot()
    positions = list(range(1, len(boxes) + 1))
    ax.boxplot([box.values for box in boxes], positions=positions, widths=0.6)
    ax.set_xticks(positions, [box.name for box in boxes], rotation=30, ha="right")
    for x, box in zip(positions, boxes, strict=True):
        ax.text(x, max(box.values) + pad, box.label, ha="center", va="bottom", fontsize=8)
    ax.set_ylim(bottom - 2 * pad, top + 9 * pad)
    ax.set_ylabel("Dice per test pair")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(figure, path)


def _dice_rows(
    path: str | Path, boxes: Sequence[Box], title: str, scale: tuple[float, float, float]
) -> Path:
    """:func:`dice_boxplot` for many models: one horizontal box per row, first on top."""
    import matplotlib

    bottom, top, pad = scale
    figure = new_figure(7.5, 0.3 * len(boxes) + 1.3)
    ax = figure.add_subplot()
    positions = list(range(len(boxes), 0, -1))
    major, minor = (int(part) for part in matplotlib.__version__.split(".")[:2])
    across = {"orientation": "horizontal"} if (major, minor) >= (3, 10) else {"vert": False}
    ax.boxplot([box.values for box in boxes], positions=positions, widths=0.6, **across)
    ax.set_yticks(positions, [box.name for box in boxes], fontsize=8)
    for y, box in zip(positions, boxes, strict=True):
        text = box.label.replace("\n", " ")
        ax.text(max(box.values) + pad, y, text, ha="left", va="center", fontsize=7)
    ax.set_xlim(bottom - 2 * pad, top + 12 * pad)
    ax.set_xlabel("Dice per test pair")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return save_figure(figure, path)


# --- qualitative figure with warped grid lines (the paper's Figure 3) ---------------------


def view_2d(image: np.ndarray) -> np.ndarray:
    """Show a ``(C, *spatial)`` image in 2D: channel 0, its middle slice if 3D.

    Parameters
    ----------
    image : numpy.ndarray
        ``(C, H, W)`` or ``(C, D, H, W)``.

    Returns
    -------
    numpy.ndarray
        ``(H, W)``.
    """
    plane = image[0]
    return plane[plane.shape[0] // 2] if plane.ndim == 3 else plane


def field_2d(disp: Tensor) -> np.ndarray:
    """Cut the in-plane field of the view of :func:`view_2d` out of a displacement.

    Parameters
    ----------
    disp : Tensor
        ``(1, ndim, *spatial)`` displacement in voxels.

    Returns
    -------
    numpy.ndarray
        ``(2, H, W)``: row and column components.
    """
    field = disp[0].detach().cpu().numpy()
    return field[1:, field.shape[1] // 2] if field.shape[0] == 3 else field


def parse_zoom(text: str, shape: Sequence[int]) -> tuple[int, int, int, int]:
    """Read ``--zoom R0,C0,R1,C1``: rows ``R0:R1`` and columns ``C0:C1`` of the 2D view.

    Parameters
    ----------
    text : str
        Four integers separated by commas.
    shape : sequence of int
        ``(H, W)`` of the 2D view the rectangle must lie in.

    Returns
    -------
    tuple of int
        ``(R0, C0, R1, C1)``.

    Raises
    ------
    ValueError
        If ``text`` is not four integers of a non-empty rectangle inside the view.
    """
    height, width = shape
    try:
        r0, c0, r1, c1 = (int(part) for part in text.split(","))
    except ValueError:
        r0 = c0 = r1 = c1 = -1
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        raise ValueError(
            f"--zoom must be R0,C0,R1,C1 with 0 <= R0 < R1 <= {height} and "
            f"0 <= C0 < C1 <= {width} (rows, then columns, of the {height}x{width} view); "
            f"got {text!r}"
        )
    return r0, c0, r1, c1


@dataclass(frozen=True)
class Panel:
    """One warped image of :func:`qualitative_figure` with the field that made it."""

    name: str
    warped: np.ndarray
    field: np.ndarray


def qualitative_figure(
    path: str | Path,
    fixed: np.ndarray,
    moving: np.ndarray,
    panels: Sequence[Panel],
    *,
    spacing: int = 16,
    zoom: tuple[int, int, int, int] | None = None,
    title: str = "",
) -> Path:
    """Draw fixed, moving and each model's warped image with its warped grid lines.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    fixed, moving : numpy.ndarray
        ``(H, W)`` views of the pair.
    panels : sequence of Panel
        ``(H, W)`` warped views and ``(2, H, W)`` fields (see :func:`field_2d`).
    spacing : int
        Grid line distance in pixels (:func:`~src_training.spatial.grid.grid_lines`).
    zoom : tuple of int, optional
        ``(R0, C0, R1, C1)``: drawn as a rectangle on every panel, and shown enlarged in
        a second row.
    title : str
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.patches import Rectangle

    shown = [("fixed", fixed, None), ("moving", moving, None)]
    shown += [(panel.name, panel.warped, panel.field) for panel in panels]
    columns, bands = _wrap(len(shown))
    rows = 1 if zoom is None else 2
    figure = new_figure(PANEL_INCHES * columns, PANEL_INCHES * rows * bands + 0.4)
    axes = figure.subplots(rows * bands, columns, squeeze=False)
    for index in range(len(shown), columns * bands):
        band, column = divmod(index, columns)
        for row in range(rows):
            axes[band * rows + row, column].set_axis_off()
    low, high = np.percentile(fixed, [1, 99])
    for index, (name, image, field) in enumerate(shown):
        band, column = divmod(index, columns)
        for row in range(rows):
            ax = axes[band * rows + row, column]
            ax.imshow(image, cmap="gray", vmin=low, vmax=high, interpolation="nearest")
            if field is not None:
                for line in grid_lines(field, spacing):
                    ax.plot(line[:, 1], line[:, 0], color="#ffb000", linewidth=0.5)
            ax.set_xlim(-0.5, image.shape[1] - 0.5)
            ax.set_ylim(image.shape[0] - 0.5, -0.5)
            if zoom is not None:
                r0, c0, r1, c1 = zoom
                if row == 0:
                    ax.add_patch(
                        Rectangle(
                            (c0 - 0.5, r0 - 0.5), c1 - c0, r1 - r0, fill=False, color="#00c0ff"
                        )
                    )
                else:
                    ax.set_xlim(c0 - 0.5, c1 - 0.5)
                    ax.set_ylim(r1 - 0.5, r0 - 0.5)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[band * rows, column].set_title(name, fontsize=9)
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


def _wrap(count: int) -> tuple[int, int]:
    """Columns and rows of panels for ``count`` panels, at most :data:`MAX_COLUMNS` wide."""
    bands = -(-count // MAX_COLUMNS)
    return -(-count // bands), bands


# --- Jacobian determinant per model -------------------------------------------------------


def jacobian_figure(path: str | Path, fields: dict[str, Tensor], title: str = "") -> Path:
    """Each model's Jacobian determinant on a diverging colormap centred at 1, folds marked.

    For 3D fields the full 3D determinant is computed and its middle slice shown. Voxels
    with ``det J <= 0`` (folds) are painted in a solid colour; the shared colour scale
    spans at least ``[0, 2]``.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    fields : dict
        ``{model name: (1, ndim, *spatial) displacement}``.
    title : str
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    from matplotlib.colors import ListedColormap, TwoSlopeNorm

    dets = {}
    for name, disp in fields.items():
        det = jacobian_determinant(disp.detach().cpu().to(torch.float64))[0].numpy()
        dets[name] = det[det.shape[0] // 2] if det.ndim == 3 else det
    low = min(0.0, *(float(d.min()) for d in dets.values()))
    high = max(2.0, *(float(d.max()) for d in dets.values()))
    norm = TwoSlopeNorm(vcenter=1.0, vmin=low, vmax=high)
    columns, bands = _wrap(len(dets))
    figure = new_figure(PANEL_INCHES * columns + 0.8, (PANEL_INCHES + 0.3) * bands + 0.2)
    axes = list(figure.subplots(bands, columns, squeeze=False).flat)
    for ax in axes[len(dets) :]:
        ax.set_axis_off()
    image = None
    for ax, (name, det) in zip(axes, dets.items(), strict=False):
        image = ax.imshow(det, cmap="RdBu_r", norm=norm, interpolation="nearest")
        folds = np.ma.masked_where(det > 0, np.ones_like(det))
        ax.imshow(folds, cmap=ListedColormap([FOLD_COLOUR]), interpolation="nearest")
        ax.set_title(f"{name}\nfolds {100 * float((det <= 0).mean()):.2f} %", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(image, ax=axes, shrink=0.8, label="det J (folds, det J ≤ 0, in green)")
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)


# --- convergence: validation Dice of training runs ----------------------------------------
