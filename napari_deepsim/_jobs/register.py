"""The registration job of the Register widget: plain arrays in, plain arrays out.

A pair or the frames of a stack are registered with a model, by optimisation
(:mod:`napari_deepsim._jobs.optimise`), or with a model whose prediction is then refined.
It runs in a napari thread worker, so it never touches Qt or layers, and it draws
every overlay the layers show (the grid image, fold points, vectors); it yields a
:class:`~napari_deepsim._jobs.optimise.Step` per stage, per frame of a stack and, while
optimising, per iteration (a few per second at most). Torch and the core are imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_deepsim._jobs.optimise import (
    OptimiseSpec,
    Step,
    Tracker,
    describe,
    optimisation,
    watched,
)

if TYPE_CHECKING:
    from src_training.engine.optimisation import OptimisationSummary
    from src_training.networks.modelio import ModelFile

STAGES = 7  # progress units of a registration besides its frames and optimisation iterations
CHECKER_TILES = 8


@dataclass
class Job:
    """Everything the worker needs, as plain arrays and values (no layers)."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_name: str
    moving_name: str
    model: str | ModelFile | None
    device: str
    spacing: int
    stack: bool
    reference: int | str
    moving_labels: np.ndarray | None = None
    fixed_labels: np.ndarray | None = None
    extras: list[tuple[np.ndarray, bool]] = field(default_factory=list)
    grid: bool = True
    vectors: bool = False
    checkerboard: bool = True
    timing_runs: int = 1  # > 1: one untimed warm-up pass, then the fastest of this many
    optimise: OptimiseSpec | None = None  # optimise the field (refining the model's, if any)
    preview: bool = True  # a pair's warped image after each pyramid level, while optimising
    frames_per_pass: int = 1  # a stack's frames per forward pass: progress (and Stop) per frame


@dataclass
class Result:
    """What the worker computed; ``field`` is ``(ndim, *spatial)`` or ``(T, 2, H, W)``."""

    model: ModelFile | None
    field: np.ndarray
    warped: np.ndarray
    jacobian: np.ndarray
    folds: np.ndarray
    folding_percent: float
    sdlogj: float
    seconds: float
    device: str
    predict_seconds: float = 0.0
    warped_labels: np.ndarray | None = None
    extras: list[np.ndarray] = field(default_factory=list)
    grid: np.ndarray | None = None  # the warped lines as an image of the spatial shape
    vectors: np.ndarray | None = None
    checkerboard: np.ndarray | None = None
    fold_points: np.ndarray | None = None  # a volume's folds as points, not a label map
    dice: tuple[float, float] | None = None
    optimisation: OptimisationSummary | None = None
    warnings: list[str] = field(default_factory=list)  # the data is unlike the model's


def run(job: Job, stop: Callable[[], bool] | None = None) -> Generator[Step, None, Result]:
    """Register in a worker thread, yielding progress steps.

    Parameters
    ----------
    job : Job
        The arrays and the settings.
    stop : callable, optional
        Polled at every optimisation iteration; True ends the optimisation with the best
        field so far, which is then shown like any result.

    Yields
    ------
    Step
        After each stage and, while optimising, every few iterations and each level.

    Returns
    -------
    Result
        The field, the warped data, overlays and statistics.
    """
    from src_training.engine.registration import load_registration_model
    from src_training.runtime.devices import resolve_device

    start = time.perf_counter()
    model = None if job.model is None else load_registration_model(job.model)
    device = resolve_device(job.device)
    frames = len(job.moving) if job.stack and job.optimise is None else 0
    tracker = Tracker(STAGES + frames)
    yield tracker.stage("model loaded" if model is not None else "starting")
    register = _register_stack if job.stack else _register_pair
    result = yield from register(model, job, device, tracker, stop)
    yield from _draw(result, job, tracker)
    result.seconds = time.perf_counter() - start
    yield tracker.finish("overlays drawn")
    return result


def _draw(result: Result, job: Job, tracker: Tracker) -> Generator[Step, None, None]:
    """Draw the overlays a result layer shows, one step each (so Stop acts between them).

    The grid is an image of the warped lines (a 2D grid per slice of a volume, per frame
    of a stack); a volume's folds are points; vectors are 2D or 3D.
    """
    from napari_deepsim._jobs import overlays
    from napari_deepsim._jobs.grid_raster import warped_grid

    field = result.field
    if job.grid:
        yield tracker.stage("drawing the grid")
        result.grid = warped_grid(field, job.spacing)
    if job.vectors:
        yield tracker.stage("sampling the vectors")
        result.vectors = (
            np.concatenate(
                [
                    stack_vectors(t, overlays.subsampled_vectors(d, job.spacing))
                    for t, d in enumerate(field)
                ]
            )
            if job.stack
            else overlays.subsampled_vectors(field, job.spacing)
        )
    if not job.stack and field.shape[0] == 3:
        result.fold_points = overlays.fold_points(result.jacobian)


def _register_pair(
    model: ModelFile | None,
    job: Job,
    device: Any,
    tracker: Tracker,
    stop: Callable[[], bool] | None,
) -> Generator[Step, None, Result]:
    from napari_deepsim._jobs import overlays
    from src_training.engine.registration import register_pair

    if model is not None and job.fixed.ndim == model.ndim + 1:
        raise ValueError(
            f"the model registers {model.ndim}D images and {job.fixed_name!r} is "
            f"{job.fixed.ndim}D; to register the frames of a 2D+t stack, choose the same stack "
            "as fixed and moving layer"
        )
    ndim = job.fixed.ndim
    optimised = None
    if job.optimise is not None:
        optimised = optimisation(job.optimise, ndim)
        if job.preview:
            optimised, tracker.watch = watched(optimised)
        tracker.plan(optimised, job.fixed.shape, 1)
        yield tracker.step(f"optimising with {job.optimise.label}")
    registration = register_pair(
        model,
        job.fixed[None],
        job.moving[None],
        device=device,
        moving_labels=[] if job.moving_labels is None else [job.moving_labels],
        fixed_labels=job.fixed_labels if job.moving_labels is not None else None,
        extras=job.extras,
        names=(f"the fixed layer {job.fixed_name!r}", f"the moving layer {job.moving_name!r}"),
        timing_runs=job.timing_runs,
        optimisation=optimised,
        stop=stop,
    )
    pair = yield from tracker.follow(registration)
    result = Result(
        model=model,
        field=pair.field,
        warped=pair.warped[0],
        jacobian=pair.jacobian,
        folds=overlays.folds(pair.jacobian),
        folding_percent=pair.folding_percent,
        sdlogj=pair.sdlogj,
        device=str(device),
        seconds=0.0,
        predict_seconds=pair.seconds,
        warped_labels=pair.warped_labels[0] if pair.warped_labels else None,
        dice=pair.dice[0] if pair.dice else None,
        extras=pair.extras,
        optimisation=pair.optimisation,
        warnings=pair.warnings,
    )
    if job.checkerboard:
        yield tracker.stage("drawing the checkerboard")
        result.checkerboard = overlays.checkerboard(
            pair.fixed_normalised[0], pair.warped_normalised[0], CHECKER_TILES
        )
    return result


def _register_stack(
    model: ModelFile | None,
    job: Job,
    device: Any,
    tracker: Tracker,
    stop: Callable[[], bool] | None,
) -> Generator[Step, None, Result]:
    from napari_deepsim._jobs import overlays
    from src_training.engine.arrays import normalised_frames, register_frames, warp_with_field

    frames = job.moving
    if model is not None and frames.ndim != model.ndim + 1:
        raise ValueError(
            f"fixed and moving are the same layer {job.moving_name!r}, which registers the frames "
            f"of a 2D+t stack with a 2D model; this model is {model.ndim}D and the layer "
            f"{frames.ndim}D, so choose two different layers"
        )
    if model is None and frames.ndim != 3:
        raise ValueError(
            f"fixed and moving are the same layer {job.moving_name!r}, which optimises the "
            f"frames of a 2D+t stack, but the layer is {frames.ndim}D; choose two different "
            "layers"
        )
    if frames.shape[0] < 2:
        raise ValueError(f"the stack {job.moving_name!r} has one frame; it needs at least 2")
    optimised = None
    if job.optimise is not None:
        optimised = optimisation(job.optimise, frames.ndim - 1)
        tracker.plan(optimised, frames.shape[1:], len(frames) - 1)
        yield tracker.step(f"optimising every frame with {job.optimise.label}")
    series = yield from tracker.follow(
        register_frames(
            model,
            frames,
            job.reference,
            device=device,
            labels=job.moving_labels if job.fixed_labels is not None else None,
            what=f"the layer {job.moving_name!r}",
            batch_size=job.frames_per_pass,
            optimisation=optimised,
            stop=stop,
        )
    )
    result = Result(
        model=model,
        field=series.fields,
        warped=series.warped[:, 0],
        jacobian=series.jacobians,
        folds=overlays.folds(series.jacobians),
        folding_percent=series.folding_percent,
        sdlogj=series.sdlogj,
        device=str(device),
        seconds=0.0,
        dice=series.dice,
        optimisation=series.optimisation,
        warnings=series.warnings,
    )
    fields = series.fields
    if job.moving_labels is not None:
        result.warped_labels = (
            series.warped_labels
            if series.warped_labels is not None
            else warp_with_field(job.moving_labels, fields, labels=True, stack=True)
        )
    if job.extras:
        yield tracker.stage("warping the layers carried along")
    result.extras = [warp_with_field(d, fields, labels=lab, stack=True) for d, lab in job.extras]
    if job.checkerboard:
        yield tracker.stage("drawing the checkerboard")
        normalised = normalised_frames(frames)
        warped = warp_with_field(normalised[:, 0], fields, stack=True)
        result.checkerboard = np.stack(
            [
                overlays.checkerboard(normalised[series.reference, 0], w, CHECKER_TILES)
                for w in warped
            ]
        )
    return result


def summary(result: Result, wall: float | None = None) -> str:
    """Dice before and after (when both label maps were given), regularity and time.

    ``wall`` is the time the user waited (from the button to the layers shown); the
    registration's own time is shown beside it.
    """
    lines = []
    if result.optimisation is not None:
        lines.append(describe(result.optimisation, result.model is not None))
    if result.dice is not None:
        lines.append(f"Dice {result.dice[0]:.3f} -> {result.dice[1]:.3f}")
    lines.append(f"{result.folding_percent:.2f} % folding, sdlogj {result.sdlogj:.3f}")
    computed = f"{result.seconds:.2f} s on {result.device}"
    lines.append(computed if wall is None else f"{wall:.2f} s wall time (registration {computed})")
    return "\n".join(lines)


def stack_vectors(t: int, vectors: np.ndarray) -> np.ndarray:
    """Give 2D Vectors data a time coordinate (position ``t``, projection 0)."""
    time_axis = np.zeros((*vectors.shape[:2], 1), vectors.dtype)
    time_axis[:, 0] = t
    return np.concatenate([time_axis, vectors], axis=2)
