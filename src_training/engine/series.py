"""Register every frame of a stack to one reference frame: the series counterpart of a pair."""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import torch

from src_training.engine.registration import Progress
from src_training.evaluation.scoring import field_regularity
from src_training.metrics.dice import mean_dice
from src_training.networks.modelio import ModelFile
from src_training.registration.inference import (
    check_model_fits,
    check_registration_memory,
    check_series,
    jacobian_array,
    register_series,
    warp_label_array,
)


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
    series = register_series(model.network, frames, reference, device, batch_size, raw_frames)
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
