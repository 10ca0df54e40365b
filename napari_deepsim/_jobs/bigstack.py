"""The job of the Big stack widget: a stack of any size registered into an OME-Zarr store.

The frames are read one at a time from the layer's data (NumPy, dask or Zarr, or one
level of a multiscale layer) by the engine's
:func:`~src_training.engine.stored.register_stack_to_store`, in this process or on a Dask
cluster, and each frame's results are written to the store as they finish, so a stack
larger than memory registers and a stopped run keeps every finished frame (a later run
with "resume" completes the store). Registered at a coarser level of a multiscale layer,
the fields then warp the finest level (:mod:`src_training.engine.fullres`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from src_training.engine.public import ModelFile
    from src_training.engine.registration import Progress
    from src_training.engine.stored import StoredSeries


@dataclass
class StoreJob:
    """What the Big stack widget registers, and where the results go.

    Attributes
    ----------
    frames : array-like
        ``(T, *spatial)`` frames at the level registered, read one at a time.
    name : str
        The layer's name, for messages and the store's provenance.
    model : str or ModelFile
        A built-in model's name or a registration model.
    reference : int or "previous"
        The frame every frame is aligned to, or consecutive pairs composed.
    out : Path
        The store, ``OUT.zarr``.
    resume : bool
        Complete a store an earlier run of this stack left.
    cluster : str or None
        ``local``, ``local:N`` or ``tcp://ADDRESS``; None registers in this process.
    device : str
        Where the network runs in this process.
    batch_size : int
        Frames per forward pass (and per cluster task).
    spacing : tuple of float
        Voxel size of a registered frame.
    full : array-like, optional
        The finest level, warped with the fields when ``frames`` is a coarser one.
    full_spacing : tuple of float, optional
        Its voxel size.
    """

    frames: Any
    name: str
    model: str | ModelFile
    reference: int | str
    out: Path
    resume: bool
    cluster: str | None
    device: str
    batch_size: int
    spacing: tuple[float, ...]
    full: Any | None = None
    full_spacing: tuple[float, ...] | None = None


@dataclass
class StoreResult:
    """What the store holds after a run.

    Attributes
    ----------
    path : Path
        The store.
    frames : int
        Frames of the stack.
    done : list of int
        Frames whose results the store holds (every frame unless the run was stopped).
    full : list of int
        Frames warped at full resolution by this run.
    series : StoredSeries or None
        The engine's summary of a run that finished (None when stopped).
    seconds : float
        Time of the run.
    warnings : list of str
        Lines about data unlike the model's training data.
    """

    path: Path
    frames: int
    done: list[int]
    full: list[int] = field(default_factory=list)
    series: StoredSeries | None = None
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)


def run_store(
    job: StoreJob, stop: Callable[[], bool] | None = None
) -> Generator[Progress, None, StoreResult]:
    """Register the job's stack into its store in a worker, yielding progress.

    Parameters
    ----------
    job : StoreJob
        The stack and the settings.
    stop : callable, optional
        Polled after each batch of frames: True ends the run, keeping what is written.

    Yields
    ------
    Progress
        Frames written (and then frames warped at full resolution).

    Returns
    -------
    StoreResult
        What the store holds.
    """
    from src_training.engine.fullres import warp_store_at_full_resolution
    from src_training.engine.public import resolve_device
    from src_training.engine.registration import Progress, load_registration_model
    from src_training.engine.stored import field_grid, finished_frames, register_stack_to_store

    start = time.perf_counter()
    model = load_registration_model(job.model)
    yield Progress(0, len(job.frames), "model loaded; reading the first frames")
    events = register_stack_to_store(
        model,
        job.frames,
        job.reference,
        job.out,
        resume=job.resume,
        cluster=job.cluster,
        device=resolve_device(job.device),
        batch_size=job.batch_size,
        grid=field_grid(job.spacing),
        method=f"the model {job.model if isinstance(job.model, str) else 'chosen'}",
        what=f"the layer {job.name!r}",
    )
    series = yield from _until_stopped(events, stop)
    full: list[int] = []
    if job.full is not None and not (stop is not None and stop()):
        warping = warp_store_at_full_resolution(
            job.out, job.full, spacing=job.full_spacing, stop=stop
        )
        full = yield from warping
    return StoreResult(
        job.out,
        len(job.frames),
        finished_frames(job.out),
        full,
        series,
        time.perf_counter() - start,
        [] if series is None else series.warnings,
    )


def _until_stopped(
    events: Generator[Progress, None, StoredSeries], stop: Callable[[], bool] | None
) -> Generator[Progress, None, StoredSeries | None]:
    """Pass the engine's progress on; on Stop close it (a cluster it started closes too)."""
    while True:
        try:
            item = next(events)
        except StopIteration as end:
            return end.value
        yield item
        if stop is not None and stop():
            events.close()
            return None


def frame_ranges(frames: list[int]) -> str:
    """Say which frames a list holds as ranges: ``0-11, 15, 20-31``."""
    if not frames:
        return "none"
    runs: list[list[int]] = [[frames[0], frames[0]]]
    for t in frames[1:]:
        if t == runs[-1][1] + 1:
            runs[-1][1] = t
        else:
            runs.append([t, t])
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs)
