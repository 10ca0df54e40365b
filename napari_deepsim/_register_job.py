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

    from src_training.modelio import ModelFile

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


def _load_registration_model(source: str | ModelFile) -> ModelFile:
    from src_training.modelio import load_model, require_kind

    if not isinstance(source, str):
        return source
    model = load_model(source)
    require_kind(model, "registration", source)
    return model


def warp_data(data: np.ndarray, disp: Tensor, labels: bool, stack: bool) -> np.ndarray:
    """Warp data on the field's grid; with ``stack`` frame ``t`` uses field ``t``."""
    from src_training.registration import warp_array, warp_label_array

    if stack:
        return np.stack(
            [warp_data(frame, disp[t : t + 1], labels, False) for t, frame in enumerate(data)]
        )
    if labels:
        return warp_label_array(data, disp)
    return warp_array(np.asarray(data, np.float32)[None], disp)[0]


def run(job: Job) -> Generator[str, None, Result]:
    """Register in a worker thread, yielding after each stage for the progress bar."""
    from src_training.devices import resolve_device

    start = time.perf_counter()
    model = _load_registration_model(job.model)
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
    from src_training.data import normalise_intensity
    from src_training.datasets import resample
    from src_training.evaluation import field_regularity, mean_dice
    from src_training.registration import (
        check_model_fits,
        jacobian_array,
        predict,
        warp_array,
    )

    if job.fixed.ndim == model.ndim + 1:
        raise ValueError(
            f"the model registers {model.ndim}D images and {job.fixed_name!r} is "
            f"{job.fixed.ndim}D; to register the frames of a 2D+t stack, choose the same stack "
            "as fixed and moving layer"
        )
    check_model_fits(model, job.fixed[None], f"the fixed layer {job.fixed_name!r}")
    check_model_fits(model, job.moving[None], f"the moving layer {job.moving_name!r}")
    shape = job.fixed.shape
    fixed = normalise_intensity(job.fixed)[None]
    moving = normalise_intensity(job.moving)
    raw = np.asarray(job.moving, np.float32)
    if job.moving.shape != shape:
        moving, raw = resample(moving, shape, order=1), resample(raw, shape, order=1)

    def on_grid(data: np.ndarray, labels: bool) -> np.ndarray:
        return data if data.shape == shape else resample(data, shape, order=0 if labels else 1)

    if job.timing_runs > 1:
        predict(model.network, moving[None, None], fixed[None], device)
    predict_seconds = float("inf")
    for _ in range(job.timing_runs):
        start = time.perf_counter()
        disp = predict(model.network, moving[None, None], fixed[None], device)
        predict_seconds = min(predict_seconds, time.perf_counter() - start)
    yield "field predicted"
    jacobian = jacobian_array(disp)
    result = Result(
        model=model,
        field=disp[0].numpy(),
        warped=warp_array(raw[None], disp)[0],
        jacobian=jacobian,
        folds=_overlays.folds(jacobian),
        device=str(device),
        seconds=0.0,
        predict_seconds=predict_seconds,
        **field_regularity(disp),
    )
    if job.moving_labels is not None:
        labels = on_grid(job.moving_labels, True)
        result.warped_labels = warp_data(labels, disp, True, False)
        if job.fixed_labels is not None:
            before = mean_dice(labels, job.fixed_labels)
            result.dice = (before, mean_dice(result.warped_labels, job.fixed_labels))
    result.extras = [warp_data(on_grid(d, lab), disp, lab, False) for d, lab in job.extras]
    yield "layers warped"
    if job.grid:
        result.grid = (
            _overlays.grid_lines(result.field, job.spacing)
            if model.ndim == 2
            else _overlays.raster_grid(result.field, job.spacing)
        )
    if job.vectors and model.ndim == 2:
        result.vectors = _overlays.subsampled_vectors(result.field, job.spacing)
    if job.checkerboard:
        warped = warp_array(moving[None], disp)[0]
        result.checkerboard = _overlays.checkerboard(fixed[0], warped, CHECKER_TILES)
    yield "overlays drawn"
    return result


def _register_stack(model: ModelFile, job: Job, device: Any) -> Generator[str, None, Result]:
    import torch

    from napari_deepsim import _overlays
    from src_training.data import normalise_intensity
    from src_training.evaluation import field_regularity, mean_dice
    from src_training.registration import check_model_fits, jacobian_array, register_series
    from src_training.spatial import warp

    frames = job.moving
    if frames.ndim != model.ndim + 1:
        raise ValueError(
            f"fixed and moving are the same layer {job.moving_name!r}, which registers the frames "
            f"of a 2D+t stack with a 2D model; this model is {model.ndim}D and the layer "
            f"{frames.ndim}D, so choose two different layers"
        )
    if frames.shape[0] < 2:
        raise ValueError(f"the stack {job.moving_name!r} has one frame; it needs at least 2")
    check_model_fits(model, frames[0][None], f"the frames of {job.moving_name!r}")
    normalised = np.stack([normalise_intensity(f) for f in frames])[:, None]
    raw = np.asarray(frames, np.float32)[:, None]
    series = register_series(model.network, normalised, job.reference, device, raw_frames=raw)
    disp = series.displacements
    yield "fields predicted"
    reference = 0 if job.reference == "previous" else int(job.reference) % len(frames)
    others = [t for t in range(len(frames)) if t != reference]
    jacobian = np.stack([jacobian_array(d[None]) for d in disp])
    result = Result(
        model=model,
        field=disp.numpy(),
        warped=series.warped.numpy()[:, 0],
        jacobian=jacobian,
        folds=_overlays.folds(jacobian),
        device=str(device),
        seconds=0.0,
        **field_regularity(disp[others]),
    )
    if job.moving_labels is not None:
        result.warped_labels = warp_data(job.moving_labels, disp, True, True)
        if job.fixed_labels is not None:
            target = job.fixed_labels[reference]
            result.dice = (
                float(np.mean([mean_dice(job.moving_labels[t], target) for t in others])),
                float(np.mean([mean_dice(result.warped_labels[t], target) for t in others])),
            )
    result.extras = [warp_data(d, disp, lab, True) for d, lab in job.extras]
    yield "layers warped"
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
            [_overlays.checkerboard(normalised[reference, 0], w, CHECKER_TILES) for w in warped]
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
