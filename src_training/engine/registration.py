"""Register a pair with a trained model: arrays in, a result object out.

:func:`register_pair` is a generator: it yields a :class:`Progress` after each stage
and returns the result, so a terminal, a napari worker or a script can show progress
and stop between stages. Drain it with :func:`run_to_end` when progress does not
matter. :mod:`src_training.engine.series` does the same for every frame of a stack.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from src_training.data.normalise import (
    check_not_constant,
    check_spatial_size,
    normalise_intensity,
    one_value_warning,
)
from src_training.data.placement import array_on_grid
from src_training.data.profile import data_warnings
from src_training.data.reading import Spacing
from src_training.engine.optimisation import Optimisation, OptimisationSummary, run_optimisation
from src_training.evaluation.scoring import field_regularity
from src_training.metrics.dice import mean_dice
from src_training.models import resolve
from src_training.networks.modelio import ModelFile, load_model, require_kind
from src_training.optimisation import OptimiseEvent
from src_training.registration.inference import (
    check_model_fits,
    check_registration_memory,
    jacobian_array,
    predict,
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
    optimisation : OptimisationSummary or None
        What the optimisation did, when the field was optimised.
    warnings : list of str
        One line per input unlike the model's training data
        (:func:`~src_training.data.profile.data_warnings`).
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
    optimisation: OptimisationSummary | None = None
    warnings: list[str] = field(default_factory=list)


def run_to_end(
    job: Generator[Progress, None, T], each: Callable[[Progress], None] | None = None
) -> T:
    """Drain a registration generator and return its result.

    Parameters
    ----------
    job : generator
        From :func:`register_pair` or :func:`register_series`.
    each : callable, optional
        Called with every event the generator yields (to show progress).

    Returns
    -------
    object
        What the generator returns.
    """
    while True:
        try:
            event = next(job)
        except StopIteration as done:
            return done.value
        if each is not None:
            each(event)


def load_registration_model(source: str | Path | ModelFile) -> ModelFile:
    """Return a registration model from a file or a built-in name (checked) or as given.

    Parameters
    ----------
    source : str, Path or ModelFile
        A model file, a built-in name (``deepsim models``) or an already loaded model.

    Returns
    -------
    ModelFile
        The model.
    """
    if isinstance(source, ModelFile):
        return source
    model = load_model(resolve(source, "registration"))
    require_kind(model, "registration", source)
    return model


def _on_grid(
    data: np.ndarray,
    shape: tuple[int, ...],
    labels: bool,
    what: str,
    spacings: tuple[Spacing | None, Spacing | None] = (None, None),
) -> np.ndarray:
    """Bring an array of the moving grid (or already the fixed grid) onto the fixed grid.

    With both voxel sizes known the array keeps its physical size, centres aligned;
    otherwise its corners land on the grid's corners.
    """
    if data.ndim != len(shape):
        raise ValueError(f"{what} has shape {data.shape}; it must match the moving image")
    fixed_spacing, moving_spacing = spacings
    return array_on_grid(data, shape, moving_spacing, fixed_spacing, 0 if labels else 1)


def check_pair(
    model: ModelFile | None, fixed: np.ndarray, moving: np.ndarray, names: tuple[str, str]
) -> None:
    """Refuse a pair the model cannot register, or a constant image, before any work.

    Parameters
    ----------
    model : ModelFile or None
        A registration model (None: only the images' sizes are checked).
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
    if model is None:
        check_spatial_size(fixed.shape[1:], names[0])
        check_spatial_size(moving.shape[1:], names[1])
    else:
        check_model_fits(model, fixed, names[0])
        check_model_fits(model, moving, names[1])
    for image, name in zip((fixed, moving), names, strict=True):
        check_not_constant(image, name)


def _pair_warnings(
    model: ModelFile | None, images: tuple[np.ndarray, np.ndarray], names: tuple[str, str]
) -> list[str]:
    """Images that are almost all one value, and (with a model) unlike its training data."""
    pairs = list(zip(images, names, strict=True))
    found = [one_value_warning(image, name) for image, name in pairs]
    warnings = [w for w in found if w is not None]
    return warnings + ([] if model is None else data_warnings(model.metadata, pairs))


def register_pair(
    model: ModelFile | None,
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    device: torch.device | str = "cpu",
    moving_labels: Sequence[np.ndarray] = (),
    fixed_labels: np.ndarray | None = None,
    extras: Sequence[tuple[np.ndarray, bool]] = (),
    names: tuple[str, str] = ("the fixed image", "the moving image"),
    timing_runs: int = 1,
    optimisation: Optimisation | None = None,
    stop: Callable[[], bool] | None = None,
    precision: str = "auto",
    spacings: tuple[Spacing | None, Spacing | None] = (None, None),
    as_given: np.ndarray | None = None,
) -> Generator[Progress | OptimiseEvent, None, PairRegistration]:
    """Register ``moving`` onto ``fixed``: with a model, by optimisation, or both.

    Parameters
    ----------
    model : ModelFile or None
        A registration model; None optimises from the identity.
    fixed, moving : numpy.ndarray
        ``(C, *spatial)`` images with their original intensities; each is normalised
        as the model was trained. A moving image of another grid is put on the fixed
        grid as ``spacings`` allow.
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
    optimisation : Optimisation, optional
        Optimise the field for this pair, starting from the model's prediction
        (refinement) or from the identity; the first moving label map and the fixed
        labels feed a metric that needs labels.
    stop : callable, optional
        Polled at every optimisation iteration; True keeps the best field so far.
    precision : str
        Of the network: ``auto`` (bf16 on GPUs that support it), ``fp32``, ``bf16``,
        ``fp16``. The optimisation itself always runs in float32.
    spacings : (tuple of float or None, tuple of float or None)
        Voxel sizes of the fixed and the moving image. With both, a moving image of
        another grid keeps its physical size, centres aligned; otherwise its corners
        land on the fixed grid's corners.
    as_given : numpy.ndarray, optional
        The moving image as the user gave it, when a front end placed it on the fixed
        grid (0 where it does not reach): the warnings about its intensities (one value,
        unlike the model's training data) are about this image, not the padding.

    Yields
    ------
    Progress or OptimiseEvent
        After the prediction, each optimisation iteration, and the warping.

    Returns
    -------
    PairRegistration
        The field, the warped data and the statistics.
    """
    if model is None and optimisation is None:
        raise ValueError("nothing registers the pair: choose a model, an optimisation, or both")
    check_pair(model, fixed, moving, names)
    shape = tuple(fixed.shape[1:])
    raw = np.asarray(moving, np.float32)
    fixed_n = normalise_intensity(fixed)
    moving_n = normalise_intensity(raw)
    place = partial(_on_grid, shape=shape, spacings=spacings)
    resampled = tuple(moving.shape[1:]) != shape or (
        None not in spacings and len(set(spacings)) > 1
    )
    raw = np.stack([place(c, labels=False, what=names[1]) for c in raw])
    moving_n = np.stack([place(c, labels=False, what=names[1]) for c in moving_n])
    labels = [place(lab, labels=True, what="a moving label map") for lab in moving_labels]
    if fixed_labels is not None and fixed_labels.shape != shape:
        raise ValueError(
            f"the fixed labels have shape {fixed_labels.shape} but {names[0]} {shape}; "
            "pass the fixed image's labels"
        )
    disp, seconds, summary = None, 0.0, None
    if model is not None:
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
    if optimisation is not None:
        optimised = yield from run_optimisation(
            optimisation,
            fixed_n,
            moving_n,
            init=disp,
            moving_labels=labels[0] if labels else None,
            fixed_labels=fixed_labels,
            stop=stop,
            device=device,
        )
        disp = optimised.displacement
        seconds += optimised.seconds
        summary = OptimisationSummary.of(optimisation.name, [optimised])
        yield Progress(1, 2, "field optimised")
    assert disp is not None
    result = PairRegistration(
        field=disp[0].numpy(),
        warped=warp_array(raw, disp),
        warped_normalised=warp_array(moving_n, disp),
        fixed_normalised=fixed_n,
        jacobian=jacobian_array(disp),
        seconds=seconds,
        resampled=resampled,
        optimisation=summary,
        warnings=_pair_warnings(model, (fixed, moving if as_given is None else as_given), names),
        **field_regularity(disp),
    )
    for lab in labels:
        warped = warp_label_array(lab, disp)
        result.warped_labels.append(warped)
        if fixed_labels is not None:
            result.dice.append((mean_dice(lab, fixed_labels), mean_dice(warped, fixed_labels)))
    for data, is_labels in extras:
        data = place(data, labels=is_labels, what="an extra layer")
        result.extras.append(
            warp_label_array(data, disp)
            if is_labels
            else warp_array(np.asarray(data, np.float32)[None], disp)[0]
        )
    yield Progress(2, 2, "data warped")
    return result
