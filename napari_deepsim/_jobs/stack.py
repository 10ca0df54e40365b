"""The frames of a stack registered by a job: to one reference frame, frame by frame.

Fixed and moving are one 2D+t layer: every frame is registered (with a model, by
optimisation, or both) as the engine's :func:`~src_training.engine.arrays.register_frames`
does, and the labels, the layers carried along and the checkerboard follow the fields.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_deepsim._jobs.job import CHECKER_TILES, Job, Result
from napari_deepsim._jobs.optimise import optimisation
from napari_deepsim._jobs.progress import Step, Tracker

if TYPE_CHECKING:
    from src_training.engine.public import ModelFile


def register_stack_job(
    model: ModelFile | None,
    job: Job,
    device: Any,
    tracker: Tracker,
    stop: Callable[[], bool] | None,
) -> Generator[Step, None, Result]:
    """Register the job's stack, yielding progress; return the fields and warped frames."""
    from napari_deepsim._jobs import overlays
    from src_training.engine.arrays import register_frames

    frames = job.moving
    _check_stack(model, frames, job.moving_name)
    optimised = None
    if job.optimise is not None:
        optimised = optimisation(job.optimise, frames.ndim - 1, model)
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
        frame_pairs=series.optimised_pairs,
        planned_pairs=series.planned_pairs,
    )
    if job.moving_labels is not None:
        result.warped_labels = series.warped_labels
    yield from _warp_along(result, job, series.reference, tracker)
    return result


def _check_stack(model: ModelFile | None, frames: np.ndarray, name: str) -> None:
    """Refuse a stack that the chosen model, or an optimisation, cannot register."""
    if model is not None and frames.ndim != model.ndim + 1:
        raise ValueError(
            f"fixed and moving are the same layer {name!r}, which registers the frames "
            f"of a 2D+t stack with a 2D model; this model is {model.ndim}D and the layer "
            f"{frames.ndim}D, so choose two different layers"
        )
    if model is None and frames.ndim != 3:
        raise ValueError(
            f"fixed and moving are the same layer {name!r}, which optimises the "
            f"frames of a 2D+t stack, but the layer is {frames.ndim}D; choose two different "
            "layers"
        )
    if frames.shape[0] < 2:
        raise ValueError(f"the stack {name!r} has one frame; it needs at least 2")


def _warp_along(
    result: Result, job: Job, reference: int, tracker: Tracker
) -> Generator[Step, None, None]:
    """Warp what a stack's fields carry along: labels, layers and the checkerboard."""
    from napari_deepsim._jobs import overlays
    from src_training.engine.arrays import normalised_frames, warp_with_field

    fields = result.field
    if job.moving_labels is not None and result.warped_labels is None:
        result.warped_labels = warp_with_field(job.moving_labels, fields, labels=True, stack=True)
    if job.extras:
        yield tracker.stage("warping the layers carried along")
    result.extras = [warp_with_field(d, fields, labels=lab, stack=True) for d, lab in job.extras]
    if job.checkerboard:
        yield tracker.stage("drawing the checkerboard")
        normalised = normalised_frames(job.moving)
        warped = warp_with_field(normalised[:, 0], fields, stack=True)
        fixed = normalised[reference, 0]
        result.checkerboard = np.stack(
            [overlays.checkerboard(fixed, w, CHECKER_TILES) for w in warped]
        )
