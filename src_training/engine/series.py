"""Register every frame of a stack to one reference frame: the series counterpart of a pair."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from src_training.data.profile import data_warnings
from src_training.engine.optimisation import (
    Optimisation,
    OptimisationSummary,
    run_optimisation,
)
from src_training.engine.registration import Progress
from src_training.evaluation.scoring import field_regularity
from src_training.metrics.dice import mean_dice
from src_training.networks.modelio import ModelFile
from src_training.optimisation import OptimiseEvent
from src_training.registration.inference import (
    check_model_fits,
    check_registration_memory,
    check_series,
    jacobian_array,
    predict,
    series_chunks,
    series_fields,
    warp_label_array,
)
from src_training.spatial.transforms import warp


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
    optimisation : OptimisationSummary or None
        What the optimisation did, when the fields were optimised.
    warnings : list of str
        One line per input unlike the model's training data.
    optimised_pairs : list of (int, int)
        The ``(moving, fixed)`` frame pairs optimised, in order; when a stop ended the
        optimisation early the frames after them keep a zero field and are left as they
        were (statistics and Dice count only the frames registered).
    planned_pairs : int
        The frame pairs the optimisation would have run to the end (0 without one).
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
    optimisation: OptimisationSummary | None = None
    warnings: list[str] = field(default_factory=list)
    optimised_pairs: list[tuple[int, int]] = field(default_factory=list)
    planned_pairs: int = 0


def series_reference(frames: int, reference: int | str) -> int:
    """Return the frame every frame ends up aligned to (0 for ``previous``)."""
    check_series(frames, reference)
    return 0 if reference == "previous" else int(reference) % frames


def _optimised_fields(
    optimisation: Optimisation,
    model: ModelFile | None,
    frames: np.ndarray,
    reference: int | str,
    device: torch.device | str,
    stop: Callable[[], bool] | None,
    precision: str,
) -> Generator[
    Progress | OptimiseEvent,
    None,
    tuple[Tensor, OptimisationSummary, list[tuple[int, int]], int],
]:
    """Optimise every frame onto its target (the reference, or its predecessor).

    A stop ends the run after the pair it stopped (which keeps its best field); the
    frames never reached keep a zero field, and so does one whose chain of predecessors
    was not reached. Returns the fields, the summary, the pairs optimised and planned.
    """
    n = len(frames)
    if reference == "previous":
        pairs = [(t, t - 1) for t in range(1, n)]
    else:
        pairs = [(t, int(reference) % n) for t in range(n) if t != int(reference) % n]
    direct = torch.zeros(n, frames.ndim - 2, *frames.shape[2:])
    results = []
    for k, (moving, fixed) in enumerate(pairs, start=1):
        init = None
        if model is not None:
            pair = (frames[moving : moving + 1], frames[fixed : fixed + 1])
            init = predict(model.network, *pair, device, precision=precision)
        result = yield from run_optimisation(
            optimisation, frames[fixed], frames[moving], init=init, stop=stop, device=device
        )
        results.append(result)
        if result.stopped and result.iterations == 0:  # stopped before this pair began
            break
        direct[moving] = result.displacement[0]
        yield Progress(k, len(pairs), f"frame {moving} optimised")
        if result.stopped:
            break
    summary = OptimisationSummary.of(optimisation.name, results)
    done = pairs[: len(results) - int(results[-1].stopped and results[-1].iterations == 0)]
    steps = direct[1:] if reference == "previous" else direct  # frame 0 has no predecessor
    fields = series_fields(steps, reference)
    fields[[moving for moving, _ in pairs[len(done) :]]] = 0  # never reached: as they were
    return fields, summary, done, len(pairs)


def register_stack(
    model: ModelFile | None,
    frames: np.ndarray,
    reference: int | str,
    *,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    raw_frames: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    what: str = "the stack",
    optimisation: Optimisation | None = None,
    stop: Callable[[], bool] | None = None,
    precision: str = "auto",
) -> Generator[Progress | OptimiseEvent, None, SeriesRegistration]:
    """Register every frame of a ``(T, C, *spatial)`` stack to one reference frame.

    Parameters
    ----------
    model : ModelFile or None
        A registration model; None optimises every frame from the identity.
    frames : numpy.ndarray
        Normalised frames.
    reference : int or "previous"
        As for :func:`src_training.registration.inference.register_series`.
    device : torch.device or str
        Where the network runs.
    batch_size : int
        Frames per forward pass (and per progress event).
    raw_frames : numpy.ndarray, optional
        Frames to warp instead of ``frames`` (e.g. the original intensities).
    labels : numpy.ndarray, optional
        ``(T, *spatial)`` label stack: warped, and scored against the reference frame.
    what : str
        How messages name the stack.
    optimisation : Optimisation, optional
        Optimise each frame's field (from the model's prediction, or the identity).
    stop : callable, optional
        Polled at every optimisation iteration.
    precision : str
        Of the network, as for :func:`~src_training.engine.registration.register_pair`.

    Yields
    ------
    Progress or OptimiseEvent
        After each forward pass of ``batch_size`` frames (``frame 3/8``), or each frame
        optimised and each optimisation iteration, and after the labels are warped.

    Returns
    -------
    SeriesRegistration
        Fields, warped frames, Jacobians and statistics.
    """
    if model is None and optimisation is None:
        raise ValueError("nothing registers the stack: choose a model, an optimisation, or both")
    if model is not None:
        check_model_fits(model, frames[0], f"the frames of {what}")
    n = len(frames)
    ref = series_reference(n, reference)
    if labels is not None and labels.shape != (n, *frames.shape[2:]):
        raise ValueError(
            f"the label stack has shape {labels.shape} but {what} {(n, *frames.shape[2:])}; "
            "pass the labels of the same frames"
        )
    start = time.perf_counter()
    summary, optimised, planned = None, [], 0
    if optimisation is None:
        assert model is not None
        check_registration_memory(model.network, frames.shape[2:], n, device, batch_size)
        chunks = []
        first = int(reference == "previous")  # frame 0 is the first's reference
        for chunk in series_chunks(
            model.network, frames, reference, device, batch_size, precision=precision
        ):
            chunks.append(chunk)
            done = first + sum(len(c) for c in chunks)
            yield Progress(done, n, f"frame {done}/{n}")
        disp = series_fields(torch.cat(chunks), reference)
    else:
        disp, summary, optimised, planned = yield from _optimised_fields(
            optimisation, model, frames, reference, device, stop, precision
        )
    source = torch.as_tensor(raw_frames if raw_frames is not None else frames).float()
    warped_frames = warp(source, disp)
    seconds = time.perf_counter() - start
    others = [t for t in range(n) if t != ref]
    if len(optimised) < planned:  # stopped: frames not registered are shown as they were
        registered = {moving for moving, _ in optimised}
        unreached = [t for t in others if t not in registered]
        warped_frames[unreached] = source[unreached]
        others = [t for t in others if t in registered] or others
    result = SeriesRegistration(
        fields=disp.numpy(),
        warped=warped_frames.numpy(),
        jacobians=np.stack([jacobian_array(d[None]) for d in disp]),
        reference=ref,
        seconds=seconds,
        optimisation=summary,
        warnings=[] if model is None else data_warnings(model.metadata, [(frames, what)]),
        optimised_pairs=optimised,
        planned_pairs=planned,
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
