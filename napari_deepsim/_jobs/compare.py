"""The job of the Compare metrics widget: several methods on one pair, free of Qt.

A method is a model, an optimisation of the field with a metric, or a model whose
prediction an optimisation refines. :func:`run` registers the pair with each in turn
(the Register widget's job, one method at a time) in a napari thread worker;
:func:`zoom` cuts one method's warped image and deformed grid out of a rectangle for
the side-by-side view. Nothing here touches Qt or layers.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from napari_deepsim._jobs.job import Job, Result
from napari_deepsim._jobs.optimise import OptimiseSpec
from napari_deepsim._jobs.progress import Step
from napari_deepsim._jobs.register import run as register
from src_training.engine.public import grid_lines

if TYPE_CHECKING:
    from src_training.engine.public import ModelFile

# Grid colours: Shapes edge colours for 2D and single-hue napari colormaps for 3D.
PALETTE = ("yellow", "cyan", "magenta", "green", "red", "blue")
ZOOM_LINES = 10  # about this many grid lines across the shorter side of a zoom
UNITS = 100  # progress units per method


@dataclass
class Entry:
    """One method of a comparison: its name in the table and layers, and what it runs.

    ``source`` is the model (a file or one in memory; None to optimise from the
    identity) and ``optimise`` the optimisation (None for the model alone).
    """

    name: str
    source: str | ModelFile | None
    optimise: OptimiseSpec | None = None


@dataclass
class Outcome:
    """What one model gave: a result, or the one-sentence reason it could not run."""

    name: str
    color: str
    result: Result | None = None
    error: str | None = None


@dataclass
class CompareJob:
    """A pair as plain arrays and the models to run on it."""

    pair: Job
    entries: list[Entry] = field(default_factory=list)

    @property
    def stages(self) -> int:
        """Progress units of :func:`run`: :data:`UNITS` per method."""
        return UNITS * len(self.entries)


def color(index: int) -> str:
    """Return the grid colour of the ``index``-th model (the palette repeats)."""
    return PALETTE[index % len(PALETTE)]


def run(job: CompareJob) -> Generator[Step, None, list[Outcome]]:
    """Register the pair with every method, yielding progress steps.

    A method that cannot register this pair (wrong dimensionality, not a registration
    model, unreadable file, a metric that cannot run) gets an outcome with an error and
    the others still run.

    Parameters
    ----------
    job : CompareJob
        The pair and the methods.

    Yields
    ------
    Step
        Progress in :data:`UNITS` per method.

    Returns
    -------
    list of Outcome
        One per method, in the order of ``job.entries``.
    """
    outcomes = []
    for index, entry in enumerate(job.entries):
        outcome = Outcome(entry.name, color(index))
        pair = replace(job.pair, model=entry.source, optimise=entry.optimise, preview=False)
        try:
            outcome.result = yield from _scaled(register(pair), index, job.stages, entry.name)
        except (ValueError, OSError) as err:
            outcome.error = str(err).rstrip(".")
        outcomes.append(outcome)
        yield Step((index + 1) * UNITS, job.stages, f"{entry.name} done")
    return outcomes


def _scaled(
    steps: Generator[Step, None, Result], index: int, total: int, name: str
) -> Generator[Step, None, Result]:
    """Pass one method's steps on as the ``index``-th share of the whole comparison."""
    while True:
        try:
            step = next(steps)
        except StopIteration as end:
            return end.value
        done = index * UNITS + UNITS * step.done // max(1, step.total)
        yield Step(min(done, total), total, f"{name}: {step.text}", step.losses)


def table(outcomes: list[Outcome], dice_before: float | None) -> list[list[str]]:
    """Rows of the comparison table: identity, then one per method.

    Parameters
    ----------
    outcomes : list of Outcome
        What :func:`run` returned.
    dice_before : float or None
        Mean Dice of the unregistered pair, when both label maps were given.

    Returns
    -------
    list of list of str
        ``[method, Dice, % folding, sd log J, s/pair]`` cells.
    """

    def dice(value: float | None) -> str:
        return "–" if value is None else f"{value:.3f}"

    rows = [["identity", dice(dice_before), "0.00", "0.000", "–"]]
    for outcome in outcomes:
        result = outcome.result
        if result is None:
            rows.append([outcome.name, f"failed: {outcome.error}", "", "", ""])
            continue
        rows.append(
            [
                outcome.name,
                dice(None if result.dice is None else result.dice[1]),
                f"{result.folding_percent:.2f}",
                f"{result.sdlogj:.3f}",
                f"{result.predict_seconds:.3f}",
            ]
        )
    return rows


@dataclass
class Zoom:
    """An image patch and the deformed grid lines over it, in patch pixel coordinates."""

    image: np.ndarray
    lines: list[np.ndarray]


def zoom_box(corners: np.ndarray, shape: tuple[int, ...]) -> tuple[int | None, slice, slice]:
    """Turn a rectangle's vertices (data coordinates) into a slice and a 2D window.

    Parameters
    ----------
    corners : numpy.ndarray
        ``(4, ndim)`` vertices of a Shapes rectangle; for 3D data the first coordinate
        is the slice it was drawn on.
    shape : tuple of int
        Spatial shape of the fixed image.

    Returns
    -------
    plane : int or None
        The index along the first axis for 3D images, None for 2D.
    rows, cols : slice
        The window, clipped to the image.
    """
    corners = np.asarray(corners, dtype=float)
    plane = None
    if len(shape) == 3:
        plane = int(np.clip(round(float(corners[0, 0])), 0, shape[0] - 1))
    low = np.floor(corners[:, -2:].min(axis=0)).astype(int)
    high = np.ceil(corners[:, -2:].max(axis=0)).astype(int) + 1
    low = np.clip(low, 0, shape[-2:])
    high = np.clip(high, 0, shape[-2:])
    if np.any(high - low < 2):
        raise ValueError(
            "the zoom rectangle lies outside the image or is thinner than 2 pixels; draw it "
            "over the fixed image"
        )
    return plane, slice(int(low[0]), int(high[0])), slice(int(low[1]), int(high[1]))


def zoom(
    image: np.ndarray,
    disp: np.ndarray | None,
    plane: int | None,
    rows: slice,
    cols: slice,
) -> Zoom:
    """Cut an image and its deformed grid out of a window.

    The grid has about :data:`ZOOM_LINES` lines across the window's shorter side; each
    line of the fixed grid is drawn where it samples the moving image (``p + u(p)``,
    as in :func:`src_training.spatial.grid.grid_lines`), in the window's coordinates.
    3D images show the in-plane part of the field on the slice ``plane``.

    Parameters
    ----------
    image : numpy.ndarray
        2D or 3D image on the fixed grid.
    disp : numpy.ndarray or None
        ``(ndim, *spatial)`` displacement, or None for no grid (fixed and moving).
    plane : int or None
        Slice of a 3D image.
    rows, cols : slice
        The window.

    Returns
    -------
    Zoom
        The patch and its grid lines.
    """
    if plane is not None:
        image = image[plane]
        disp = None if disp is None else disp[1:, plane]
    patch = np.asarray(image[rows, cols], dtype=np.float32)
    if disp is None:
        return Zoom(patch, [])
    spacing = max(2, round(min(patch.shape) / ZOOM_LINES))
    return Zoom(patch, grid_lines(np.ascontiguousarray(disp[:, rows, cols]), spacing))
