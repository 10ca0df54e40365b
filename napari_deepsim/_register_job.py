"""The registration job of the Register widget: plain arrays in, plain arrays out.

It runs in a napari thread worker, so it never touches Qt or layers; torch and the
core are imported inside the functions, so importing this module stays cheap.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from src_training.networks.modelio import ModelFile

STAGES = 4  # yields of the job, for the progress bar
CHECKER_TILES = 8


@dataclass
class Job:
    """Everything the worker needs, as plain arrays and values (no layers)."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_name: str
    moving_name: str
    model: str | ModelFile
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


@dataclass
class Result:
    """What the worker computed; ``field`` is ``(ndim, *spatial)`` or ``(T, 2, H, W)``."""

    model: ModelFile
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
    grid: list[np.ndarray] | np.ndarray | None = None
    vectors: np.ndarray | None = None
    checkerboard: np.ndarray | None = None
    dice: tuple[float, float] | None = None
    warnings: list[str] = field(default_factory=list)  # the data is unlike the model's


def warp_data(data: np.ndarray, disp: Tensor, labels: bool, stack: bool) -> np.ndarray:
    """Warp data on the field's grid; with ``stack`` frame ``t`` uses field ``t``."""
    from src_training.registration.inference import warp_array, warp_label_array

    if stack:
        return np.stack(
            [warp_data(frame, disp[t : t + 1], labels, False) for t, frame in enumerate(data)]
        )
    if labels:
        return warp_label_array(data, disp)
    return warp_array(np.asarray(data, np.float32)[None], disp)[0]


def run(job: Job) -> Generator[str, None, Result]:
    """Register in a worker thread, yielding after each stage for the progress bar."""
    from src_training.engine.registration import load_registration_model
    from src_training.runtime.devices import resolve_device

    start = time.perf_counter()
    model = load_registration_model(job.model)
    device = resolve_device(job.device)
    yield "model loaded"
    if job.stack:
        result = yield from _register_stack(model, job, device)
    else:
        result = yield from _register_pair(model, job, device)
    result.seconds = time.perf_counter() - start
    return result


def _register_pair(model: ModelFile, job: Job, device: Any) -> Generator[str, None, Result]:
    from napari_deepsim import _overlays
    from src_training.engine.registration import register_pair
    from src_training.spatial.grid import grid_lines

    if job.fixed.ndim == model.ndim + 1:
        raise ValueError(
            f"the model registers {model.ndim}D images and {job.fixed_name!r} is "
            f"{job.fixed.ndim}D; to register the frames of a 2D+t stack, choose the same stack "
            "as fixed and moving layer"
        )
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
    )
    pair = yield from _finish(registration)
    result = Result(
        model=model,
        field=pair.field,
        warped=pair.warped[0],
        jacobian=pair.jacobian,
        folds=_overlays.folds(pair.jacobian),
        folding_percent=pair.folding_percent,
        sdlogj=pair.sdlogj,
        device=str(device),
        seconds=0.0,
        predict_seconds=pair.seconds,
        warped_labels=pair.warped_labels[0] if pair.warped_labels else None,
        dice=pair.dice[0] if pair.dice else None,
        extras=pair.extras,
        warnings=pair.warnings,
    )
    if job.grid:
        result.grid = (
            grid_lines(result.field, job.spacing)
            if model.ndim == 2
            else _overlays.raster_grid(result.field, job.spacing)
        )
    if job.vectors and model.ndim == 2:
        result.vectors = _overlays.subsampled_vectors(result.field, job.spacing)
    if job.checkerboard:
        result.checkerboard = _overlays.checkerboard(
            pair.fixed_normalised[0], pair.warped_normalised[0], CHECKER_TILES
        )
    yield "overlays drawn"
    return result


def _finish(job: Generator[Any, None, Any]) -> Generator[str, None, Any]:
    """Run the rest of an engine generator, passing its stages on; return its result."""
    while True:
        try:
            progress = next(job)
        except StopIteration as done:
            return done.value
        yield progress.what


def _register_stack(model: ModelFile, job: Job, device: Any) -> Generator[str, None, Result]:
    import torch

    from napari_deepsim import _overlays
    from src_training.data.normalise import normalise_intensity
    from src_training.engine.registration import register_stack
    from src_training.spatial.transforms import warp

    frames = job.moving
    if frames.ndim != model.ndim + 1:
        raise ValueError(
            f"fixed and moving are the same layer {job.moving_name!r}, which registers the frames "
            f"of a 2D+t stack with a 2D model; this model is {model.ndim}D and the layer "
            f"{frames.ndim}D, so choose two different layers"
        )
    if frames.shape[0] < 2:
        raise ValueError(f"the stack {job.moving_name!r} has one frame; it needs at least 2")
    normalised = np.stack([normalise_intensity(f) for f in frames])[:, None]
    raw = np.asarray(frames, np.float32)[:, None]
    series = yield from _finish(
        register_stack(
            model,
            normalised,
            job.reference,
            device=device,
            raw_frames=raw,
            labels=job.moving_labels if job.fixed_labels is not None else None,
            what=f"the layer {job.moving_name!r}",
        )
    )
    result = Result(
        model=model,
        field=series.fields,
        warped=series.warped[:, 0],
        jacobian=series.jacobians,
        folds=_overlays.folds(series.jacobians),
        folding_percent=series.folding_percent,
        sdlogj=series.sdlogj,
        device=str(device),
        seconds=0.0,
        dice=series.dice,
        warnings=series.warnings,
    )
    disp = torch.as_tensor(series.fields)
    if job.moving_labels is not None:
        result.warped_labels = (
            series.warped_labels
            if series.warped_labels is not None
            else warp_data(job.moving_labels, disp, True, True)
        )
    result.extras = [warp_data(d, disp, lab, True) for d, lab in job.extras]
    if job.grid:
        result.grid = np.stack([_overlays.raster_grid(d, job.spacing) for d in result.field])
    if job.vectors:
        result.vectors = np.concatenate(
            [
                stack_vectors(t, _overlays.subsampled_vectors(d, job.spacing))
                for t, d in enumerate(result.field)
            ]
        )
    if job.checkerboard:
        warped = warp(torch.as_tensor(normalised), disp).numpy()[:, 0]
        result.checkerboard = np.stack(
            [
                _overlays.checkerboard(normalised[series.reference, 0], w, CHECKER_TILES)
                for w in warped
            ]
        )
    yield "overlays drawn"
    return result


def summary(result: Result) -> str:
    """Dice before and after (when both label maps were given), regularity and time."""
    lines = []
    if result.dice is not None:
        lines.append(f"Dice {result.dice[0]:.3f} -> {result.dice[1]:.3f}")
    lines.append(f"{result.folding_percent:.2f} % folding, sdlogj {result.sdlogj:.3f}")
    lines.append(f"{result.seconds:.2f} s on {result.device}")
    return "\n".join(lines)


def stack_vectors(t: int, vectors: np.ndarray) -> np.ndarray:
    """Give 2D Vectors data a time coordinate (position ``t``, projection 0)."""
    time_axis = np.zeros((*vectors.shape[:2], 1), vectors.dtype)
    time_axis[:, 0] = t
    return np.concatenate([time_axis, vectors], axis=2)
