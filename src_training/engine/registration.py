"""Register a pair or a series with a trained model: arrays in, a result object out.

Both functions are generators: they yield a :class:`Progress` after each stage (and,
for a series, after each batch of frames) and return the result, so a terminal, a
napari worker or a script can show progress and stop between stages. Drain one with
:func:`run_to_end` when progress does not matter.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from src_training.data.normalise import normalise_intensity, resample
from src_training.evaluation.scoring import field_regularity
from src_training.metrics.dice import mean_dice
from src_training.networks.modelio import ModelFile, load_model, require_kind
from src_training.registration.inference import (
    check_model_fits,
    check_registration_memory,
    check_series,
    jacobian_array,
    predict,
    register_series,
    warp_array,
    warp_label_array,
)

T = TypeVar("T")


@dataclass(frozen=True)
class Progress:
    """One stage of a registration finished.

    Attributes
    ----------
    done, total : int
        Units of work finished and in all (stages, or frames of a series).
    what : str
        What was just done.
    """

    done: int
    total: int
    what: str


@dataclass
class PairRegistration:
    """A moving image registered onto a fixed image.

    Attributes
    ----------
    field : numpy.ndarray
        ``(ndim, *spatial)`` displacement in voxels on the fixed grid.
    warped : numpy.ndarray
        ``(C, *spatial)`` moving image (its original intensities) warped onto the fixed.
    warped_normalised : numpy.ndarray
        ``(C, *spatial)`` the normalised moving image warped (what the model compared).
    fixed_normalised : numpy.ndarray
        ``(C, *spatial)`` the normalised fixed image.
    jacobian : numpy.ndarray
        ``(*spatial)`` Jacobian determinant of the transformation.
    folding_percent, sdlogj : float
        Share of voxels with ``det J <= 0`` (%) and the std of ``log det J``.
    seconds : float
        Time of the network's prediction (the fastest of ``timing_runs``).
    warped_labels : list of numpy.ndarray
        Each moving label map warped (nearest neighbour).
    dice : list of (float, float)
        Per label map, mean Dice against the fixed labels before and after (empty
        without fixed labels).
    extras : list of numpy.ndarray
        Each extra array warped like the image (or like labels).
    resampled : bool
        The moving image had another shape and was resampled onto the fixed grid.
    """

    field: np.ndarray
    warped: np.ndarray
    warped_normalised: np.ndarray
    fixed_normalised: np.ndarray
    jacobian: np.ndarray
    folding_percent: float
    sdlogj: float
    seconds: float
    warped_labels: list[np.ndarray] = field(default_factory=list)
    dice: list[tuple[float, float]] = field(default_factory=list)
    extras: list[np.ndarray] = field(default_factory=list)
    resampled: bool = False


@dataclass
class SeriesRegistration:
    """Every frame of a stack registered to one reference frame.

    Attributes
    ----------
    fields : numpy.ndarray
        ``(T, ndim, *spatial)``; zero for the reference frame.
    warped : numpy.ndarray
        ``(T, C, *spatial)`` warped frames.
    jacobians : numpy.ndarray
        ``(T, *spatial)``.
    reference : int
        The frame every frame is aligned to (0 for ``previous``).
    folding_percent, sdlogj : float
        Over every frame but the reference (whose field is zero by construction).
    seconds : float
        Time of the registration itself.
    warped_labels : numpy.ndarray or None
        ``(T, *spatial)`` label stack warped frame by frame.
    dice : (float, float) or None
        Mean Dice of every other frame's labels against the reference frame's, before
        and after.
    """

    fields: np.ndarray
    warped: np.ndarray
    jacobians: np.ndarray
    reference: int
    folding_percent: float
    sdlogj: float
    seconds: float
    warped_labels: np.ndarray | None = None
    dice: tuple[float, float] | None = None


def run_to_end(job: Generator[Progress, None, T]) -> T:
    """Drain a registration generator and return its result.

    Parameters
    ----------
    job : generator
        From :func:`register_pair` or :func:`register_series`.

    Returns
    -------
    object
        What the generator returns.
    """
    while True:
        try:
            next(job)
        except StopIteration as done:
            return done.value


def load_registration_model(source: str | Path | ModelFile) -> ModelFile:
    """Return a registration model from a file (checked to be one) or as given.

    Parameters
    ----------
    source : str, Path or ModelFile
        A model file or an already loaded model.

    Returns
    -------
    ModelFile
        The model.
    """
    if isinstance(source, ModelFile):
        return source
    model = load_model(source)
    require_kind(model, "registration", source)
    return model


def _on_grid(data: np.ndarray, shape: tuple[int, ...], labels: bool, what: str) -> np.ndarray:
    """Bring an array of the moving grid (or already the fixed grid) onto the fixed grid."""
    if data.shape == shape:
        return data
    if data.ndim != len(shape):
        raise ValueError(f"{what} has shape {data.shape}; it must match the moving image")
    return resample(data, shape, order=0 if labels else 1)


def check_pair(
    model: ModelFile, fixed: np.ndarray, moving: np.ndarray, names: tuple[str, str]
) -> None:
    """Refuse a pair the model cannot register, before any work is done.

    Parameters
    ----------
    model : ModelFile
        A registration model.
    fixed, moving : numpy.ndarray
        ``(C, *spatial)`` images.
    names : (str, str)
        How messages name the fixed and the moving image.
    """
    if fixed.ndim != moving.ndim:
        raise ValueError(
            f"{names[0]} is {fixed.ndim - 1}D but {names[1]} is {moving.ndim - 1}D; "
            "register two images of the same kind"
        )
    check_model_fits(model, fixed, names[0])
    check_model_fits(model, moving, names[1])


def register_pair(
    model: ModelFile,
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    moving_labels: Sequence[np.ndarray] = (),
    fixed_labels: np.ndarray | None = None,
    extras: Sequence[tuple[np.ndarray, bool]] = (),
    names: tuple[str, str] = ("the fixed image", "the moving image"),
    timing_runs: int = 1,
    precision: str = "auto",
) -> Generator[Progress, None, PairRegistration]:
    """Register ``moving`` onto ``fixed`` with a registration model.

    Parameters
    ----------
    model : ModelFile
        A registration model.
    fixed, moving : numpy.ndarray
        ``(C, *spatial)`` images with their original intensities; each is normalised
        as the model was trained. A moving image of another shape is resampled onto
        the fixed grid (corner onto corner).
    device : torch.device or str
        Where the network runs.
    moving_labels : sequence of numpy.ndarray
        Integer label maps of the moving image (its grid or the fixed grid).
    fixed_labels : numpy.ndarray, optional
        Labels of the fixed image: Dice before and after for each moving label map.
    extras : sequence of (numpy.ndarray, bool)
        More arrays of the moving image to warp, each with whether it holds labels.
    names : (str, str)
        How messages name the fixed and the moving image.
    timing_runs : int
        With more than 1, an untimed warm-up pass, then the fastest of this many.
    precision : str
        Of the network: ``auto`` (bf16 on GPUs that support it), ``fp32``, ``bf16``, ``fp16``.

    Yields
    ------
    Progress
        After the prediction and after the warping.

    Returns
    -------
    PairRegistration
        The field, the warped data and the statistics.
    """
    check_pair(model, fixed, moving, names)
    shape = tuple(fixed.shape[1:])
    raw = np.asarray(moving, np.float32)
    fixed_n = normalise_intensity(fixed)
    moving_n = normalise_intensity(raw)
    resampled = tuple(moving.shape[1:]) != shape
    if resampled:
        raw = np.stack([resample(c, shape, order=1) for c in raw])
        moving_n = np.stack([resample(c, shape, order=1) for c in moving_n])
    labels = [_on_grid(lab, shape, True, "a moving label map") for lab in moving_labels]
    if fixed_labels is not None and fixed_labels.shape != shape:
        raise ValueError(
            f"the fixed labels have shape {fixed_labels.shape} but {names[0]} {shape}; "
            "pass the fixed image's labels"
        )
    check_registration_memory(model.network, shape, 1, device)
    pair = (model.network, moving_n[None], fixed_n[None], device)
    if timing_runs > 1:
        predict(*pair, precision=precision)
    seconds = float("inf")
    for _ in range(max(1, timing_runs)):
        start = time.perf_counter()
        disp = predict(*pair, precision=precision)
        seconds = min(seconds, time.perf_counter() - start)
    yield Progress(1, 2, "field predicted")
    result = PairRegistration(
        field=disp[0].numpy(),
        warped=warp_array(raw, disp),
        warped_normalised=warp_array(moving_n, disp),
        fixed_normalised=fixed_n,
        jacobian=jacobian_array(disp),
        seconds=seconds,
        resampled=resampled,
        **field_regularity(disp),
    )
    for lab in labels:
        warped = warp_label_array(lab, disp)
        result.warped_labels.append(warped)
        if fixed_labels is not None:
            result.dice.append((mean_dice(lab, fixed_labels), mean_dice(warped, fixed_labels)))
    for data, is_labels in extras:
        data = _on_grid(data, shape, is_labels, "an extra layer")
        result.extras.append(
            warp_label_array(data, disp)
            if is_labels
            else warp_array(np.asarray(data, np.float32)[None], disp)[0]
        )
    yield Progress(2, 2, "data warped")
    return result


def series_reference(frames: int, reference: int | str) -> int:
    """Return the frame every frame ends up aligned to (0 for ``previous``)."""
    check_series(frames, reference)
    return 0 if reference == "previous" else int(reference) % frames


def register_stack(
    model: ModelFile,
    frames: np.ndarray,
    reference: int | str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    raw_frames: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    what: str = "the stack",
    precision: str = "auto",
) -> Generator[Progress, None, SeriesRegistration]:
    """Register every frame of a ``(T, C, *spatial)`` stack to one reference frame.

    Parameters
    ----------
    model : ModelFile
        A registration model.
    frames : numpy.ndarray
        Normalised frames.
    reference : int or "previous"
        As for :func:`src_training.registration.inference.register_series`.
    device : torch.device or str
        Where the network runs.
    batch_size : int
        Frames per forward pass.
    raw_frames : numpy.ndarray, optional
        Frames to warp instead of ``frames`` (e.g. the original intensities).
    labels : numpy.ndarray, optional
        ``(T, *spatial)`` label stack: warped, and scored against the reference frame.
    what : str
        How messages name the stack.
    precision : str
        Of the network, as for :func:`register_pair`.

    Yields
    ------
    Progress
        After the fields are predicted and after the labels are warped.

    Returns
    -------
    SeriesRegistration
        Fields, warped frames, Jacobians and statistics.
    """
    check_model_fits(model, frames[0], f"the frames of {what}")
    n = len(frames)
    ref = series_reference(n, reference)
    if labels is not None and labels.shape != (n, *frames.shape[2:]):
        raise ValueError(
            f"the label stack has shape {labels.shape} but {what} {(n, *frames.shape[2:])}; "
            "pass the labels of the same frames"
        )
    check_registration_memory(model.network, frames.shape[2:], n, device, batch_size)
    start = time.perf_counter()
    series = register_series(
        model.network, frames, reference, device, batch_size, raw_frames, precision
    )
    seconds = time.perf_counter() - start
    disp = series.displacements
    yield Progress(1, 2, "fields predicted")
    others = [t for t in range(n) if t != ref]
    result = SeriesRegistration(
        fields=disp.numpy(),
        warped=series.warped.numpy(),
        jacobians=np.stack([jacobian_array(d[None]) for d in disp]),
        reference=ref,
        seconds=seconds,
        **field_regularity(disp[others]),
    )
    if labels is not None:
        warped = np.stack([warp_label_array(lab, disp[t : t + 1]) for t, lab in enumerate(labels)])
        result.warped_labels = warped
        target = labels[ref]
        result.dice = (
            float(np.mean([mean_dice(labels[t], target) for t in others])),
            float(np.mean([mean_dice(warped[t], target) for t in others])),
        )
    yield Progress(2, 2, "labels warped")
    return result
