"""The registration job of the Register widget: plain arrays in, plain arrays out.

A pair or the frames of a stack are registered with a model, by optimisation
(:mod:`napari_deepsim._jobs.optimise`), or with a model whose prediction is then refined.
It runs in a napari thread worker, so it never touches Qt or layers, and it draws
every overlay the layers show (the grid image, fold points, vectors); it yields a
:class:`~napari_deepsim._jobs.progress.Step` per stage, per frame of a stack and, while
optimising, per iteration (a few per second at most). Torch and the core are imported inside the
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_deepsim._jobs.job import CHECKER_TILES, Job, Result
from napari_deepsim._jobs.optimise import describe_optimisation, optimisation
from napari_deepsim._jobs.progress import Step, Tracker, watched
from napari_deepsim._jobs.stack import register_stack_job

if TYPE_CHECKING:
    from src_training.engine.public import ModelFile

STAGES = 7  # progress units of a registration besides its frames and optimisation iterations


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
    from src_training.engine.public import resolve_device
    from src_training.engine.registration import load_registration_model

    start = time.perf_counter()
    model = None if job.model is None else load_registration_model(job.model)
    device = resolve_device(job.device)
    frames = len(job.moving) if job.stack and job.optimise is None else 0
    tracker = Tracker(STAGES + frames)
    yield tracker.stage("model loaded" if model is not None else "starting")
    register = register_stack_job if job.stack else _register_pair
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
        optimised = optimisation(job.optimise, ndim, model)
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
        as_given=None if job.moving_as_given is None else job.moving_as_given[None],
    )
    pair = yield from tracker.follow(registration)
    result = _pair_result(model, pair, str(device))
    if job.checkerboard:
        yield tracker.stage("drawing the checkerboard")
        result.checkerboard = overlays.checkerboard(
            pair.fixed_normalised[0], pair.warped_normalised[0], CHECKER_TILES
        )
    return result


def _pair_result(model: ModelFile | None, pair: Any, device: str) -> Result:
    """Turn the engine's registration of a pair into the job's result."""
    from napari_deepsim._jobs import overlays

    return Result(
        model=model,
        field=pair.field,
        warped=pair.warped[0],
        jacobian=pair.jacobian,
        folds=overlays.folds(pair.jacobian),
        folding_percent=pair.folding_percent,
        sdlogj=pair.sdlogj,
        device=device,
        seconds=0.0,
        predict_seconds=pair.seconds,
        warped_labels=pair.warped_labels[0] if pair.warped_labels else None,
        dice=pair.dice[0] if pair.dice else None,
        extras=pair.extras,
        optimisation=pair.optimisation,
        warnings=pair.warnings,
    )


def summary(result: Result, wall: float | None = None) -> str:
    """Dice before and after (when both label maps were given), regularity and time.

    ``wall`` is the time the user waited (from the button to the layers shown); the
    registration's own time is shown beside it.
    """
    lines = []
    if result.optimisation is not None:
        lines.append(describe_optimisation(result.optimisation, result.model is not None))
    if len(result.frame_pairs) < result.planned_pairs:
        lines.append(stopped_frames(result.frame_pairs, result.planned_pairs))
    if result.dice is not None:
        lines.append(f"Dice {result.dice[0]:.3f} -> {result.dice[1]:.3f}")
    lines.append(f"{result.folding_percent:.2f} % folding, sdlogj {result.sdlogj:.3f}")
    computed = f"{result.seconds:.2f} s on {result.device}"
    lines.append(computed if wall is None else f"{wall:.2f} s wall time (registration {computed})")
    return "\n".join(lines)


def stopped_frames(pairs: list[tuple[int, int]], planned: int) -> str:
    """Say which frame pairs a stopped stack optimisation registered, and what it left.

    Parameters
    ----------
    pairs : list of (int, int)
        The ``(moving, fixed)`` frame pairs optimised, in order.
    planned : int
        The frame pairs a whole run optimises.

    Returns
    -------
    str
        Such as ``frame pairs 1→0, 2→1 of 7 optimised; the other frames are as they
        were`` (frames counted from 0, as napari's slider).
    """
    if not pairs:
        return f"no frame pair of {planned} optimised; every frame is as it was"
    done = ", ".join(f"{moving}→{fixed}" for moving, fixed in pairs)
    word = "pair" if len(pairs) == 1 else "pairs"
    return f"frame {word} {done} of {planned} optimised; the other frames are as they were"


def stack_vectors(t: int, vectors: np.ndarray) -> np.ndarray:
    """Give 2D Vectors data a time coordinate (position ``t``, projection 0)."""
    time_axis = np.zeros((*vectors.shape[:2], 1), vectors.dtype)
    time_axis[:, 0] = t
    return np.concatenate([time_axis, vectors], axis=2)
