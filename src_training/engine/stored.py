"""Register a stack of any length into an OME-Zarr store, frame by frame, resumably.

The counterpart of :func:`src_training.engine.series.register_stack` for stacks that do
not fit in memory: frames are read one at a time from anything indexable (a NumPy,
dask or Zarr array, such as a napari layer's data, or a store or TIFF opened with
:func:`src_training.data.lazy.open_stack`), and each frame's warped image, field,
Jacobian and metrics are written to the store as soon as they are known (see
:mod:`src_training.data.seriesstore`). The pairs go through the network in this
process, or on a Dask cluster (:mod:`src_training.engine.cluster`).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src_training.data.lazy import FrameSource
from src_training.data.profile import data_warnings
from src_training.data.seriesstore import SeriesLayout, SeriesStore, open_series_store
from src_training.engine.cluster import PairBatch, Runner, cluster_runner, connect, local_runner
from src_training.engine.registration import Progress
from src_training.engine.series import series_reference
from src_training.evaluation.scoring import field_regularity
from src_training.networks.modelio import ModelFile
from src_training.registration.inference import (
    check_model_fits,
    check_registration_memory,
    jacobian_array,
)
from src_training.runtime.precision import resolve_precision
from src_training.spatial.fieldio import provenance
from src_training.spatial.transforms import compose, warp


@dataclass
class StoredSeries:
    """What a run wrote to a series store.

    Attributes
    ----------
    path : Path
        The store.
    frames : int
        Frames of the stack.
    reference : int
        The frame every frame is aligned to (0 for ``previous``).
    skipped : int
        Frames an earlier run had finished (``resume``).
    written : int
        Frames this run wrote (each once).
    pairs : int
        Frame pairs this run put through the network.
    folding_percent, sdlogj : float
        Mean over every frame of the store but the reference.
    seconds : float
        Time of this run.
    warnings : list of str
        One line when the frames are unlike the model's training data.
    """

    path: Path
    frames: int
    reference: int
    skipped: int
    written: int
    pairs: int
    folding_percent: float
    sdlogj: float
    seconds: float
    warnings: list[str] = field(default_factory=list)


def register_stack_to_store(
    model: ModelFile,
    frames: Any,
    reference: int | str,
    out: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    cluster: str | Any | None = None,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    precision: str = "auto",
    grid: dict[str, Any] | None = None,
    method: str = "the model",
    what: str = "the stack",
) -> Generator[Progress, None, StoredSeries]:
    """Register every frame of a stack to one reference, writing an OME-Zarr store as it goes.

    Parameters
    ----------
    model : ModelFile
        A registration model.
    frames : FrameSource or array-like
        The stack: a :class:`~src_training.data.lazy.FrameSource`, or anything with
        ``shape`` ``(T, *spatial)`` or ``(T, C, *spatial)`` whose ``frames[t]`` reads one
        frame (NumPy, dask, Zarr); each frame is normalised on its own as it is read.
    reference : int or "previous"
        A frame index, or ``previous``: consecutive pairs registered (in parallel on a
        cluster), then composed so that every frame is aligned to frame 0.
    out : str or Path
        The store, ``OUT.zarr``.
    resume : bool
        Keep the frames an earlier run of the same series into ``out`` finished.
    overwrite : bool
        Replace an existing store.
    cluster : str or distributed.Client, optional
        ``local``, ``local:N``, ``tcp://ADDRESS`` or a client; None runs here.
    device : torch.device or str
        Where the network runs in this process.
    batch_size : int
        Frames per forward pass (and per cluster task).
    precision : str
        Of the network, as for :func:`~src_training.engine.registration.register_pair`.
    grid : dict, optional
        ``spacing``, ``origin``, ``axes`` and ``direction`` of the fields (default: the
        source's spacing, or unit voxels).
    method : str
        What registers, for the provenance.
    what : str
        How messages and the provenance name the stack.

    Yields
    ------
    Progress
        After each batch of frames written (``frame 16/100``).

    Returns
    -------
    StoredSeries
        What the store holds and what this run did.
    """
    source = frames if isinstance(frames, FrameSource) else FrameSource(frames, model.ndim, what)
    n, channels, *spatial = source.shape
    check_model_fits(model, np.zeros((channels, *spatial), np.float32), f"the frames of {what}")
    ref = series_reference(n, reference)
    check_registration_memory(model.network, spatial, n, device, batch_size)
    layout = SeriesLayout(n, channels, tuple(spatial), str(reference), what, method)
    made = provenance(method, what, what, reference=str(reference))
    grid = grid or field_grid(source.spacing or (1.0,) * source.ndim)
    store = open_series_store(out, layout, grid, made, resume=resume, overwrite=overwrite)
    start = time.perf_counter()
    pending = store.pending()
    warnings = data_warnings(model.metadata, [(source[ref], f"frame {ref} of {what}")])
    client = connect(cluster) if isinstance(cluster, str) else cluster
    try:
        runner = (
            local_runner(model, device, resolve_precision(precision, device))
            if client is None
            else cluster_runner(client, model, resolve_precision(precision, "cpu"))
        )
        steps = _previous if reference == "previous" else _direct
        counts = yield from steps(store, source, ref, pending, runner, batch_size)
    finally:
        if isinstance(cluster, str) and client is not None:
            client.close()
            if client.cluster is not None:
                client.cluster.close()
    metrics = np.delete(store.metrics(), ref, axis=0)
    return StoredSeries(
        store.path,
        n,
        ref,
        skipped=n - len(pending),
        written=counts[0],
        pairs=counts[1],
        folding_percent=float(np.nanmean(metrics[:, 0])),
        sdlogj=float(np.nanmean(metrics[:, 1])),
        seconds=time.perf_counter() - start,
        warnings=warnings,
    )


def finished_frames(path: str | Path) -> list[int]:
    """Return the frames whose results a series store holds (its ``done`` marks).

    Parameters
    ----------
    path : str or Path
        A store written by :func:`register_stack_to_store`.

    Returns
    -------
    list of int
        The finished frames, in order.
    """
    import zarr

    done = np.asarray(zarr.open_group(str(path), mode="r")["done"][:])
    return [int(t) for t in np.flatnonzero(done == 1)]


def field_grid(spacing: tuple[float, ...]) -> dict[str, Any]:
    """Return the grid of a store's fields: this voxel size, no origin, array-axis order.

    Parameters
    ----------
    spacing : tuple of float
        Voxel size per spatial axis.

    Returns
    -------
    dict
        ``spacing``, ``origin``, ``axes`` and ``direction``, as ``grid`` of
        :func:`register_stack_to_store` takes them.
    """
    ndim = len(spacing)
    return {
        "spacing": tuple(spacing),
        "origin": (0.0,) * ndim,
        "axes": "zyx"[3 - ndim :],
        "direction": np.eye(ndim).tolist(),
    }


def _direct(
    store: SeriesStore,
    source: FrameSource,
    ref: int,
    pending: list[int],
    runner: Runner,
    batch_size: int,
) -> Generator[Progress, None, tuple[int, int]]:
    """Every pending frame onto the reference frame, written as its batch finishes."""
    target = source[ref][None]
    written = 0
    if ref in pending:
        _write(store, ref, target[0], np.zeros((source.ndim, *target.shape[2:]), np.float32))
        written = 1
    moving = [t for t in pending if t != ref]

    def batches() -> Iterator[PairBatch]:
        for k in range(0, len(moving), batch_size):
            chunk = moving[k : k + batch_size]
            yield PairBatch(chunk, np.stack([source[t] for t in chunk]), target)

    for batch, fields in runner(batches()):
        for t, image, disp in zip(batch.moving, batch.moving_frames, fields, strict=True):
            _write(store, t, image, disp)
        written += len(batch.moving)
        yield Progress(len(source) - len(pending) + written, len(source), f"frame {t}")
    return written, len(moving)


def _previous(
    store: SeriesStore,
    source: FrameSource,
    ref: int,
    pending: list[int],
    runner: Runner,
    batch_size: int,
) -> Generator[Progress, None, tuple[int, int]]:
    """Consecutive pairs through the runner, then their fields composed in frame order."""
    todo = set(pending)
    steps = [t for t in store.pending_steps() if t in todo]

    def batches() -> Iterator[PairBatch]:
        for k in range(0, len(steps), batch_size):
            chunk = steps[k : k + batch_size]
            read = {t: source[t] for t in sorted({*chunk, *(t - 1 for t in chunk)})}
            moving = np.stack([read[t] for t in chunk])
            yield PairBatch(chunk, moving, np.stack([read[t - 1] for t in chunk]))

    for done, (batch, fields) in enumerate(runner(batches()), start=1):
        for t, disp in zip(batch.moving, fields, strict=True):
            store.write_step(t, disp)
        yield Progress(done, -(-len(steps) // batch_size), f"pairs up to frame {batch.moving[-1]}")
    written, before = 0, None
    for t in range(len(source)):
        if t not in todo:
            before = None
            continue
        if t == 0:
            disp = np.zeros((source.ndim, *source.shape[2:]), np.float32)
        else:
            before = store.field(t - 1) if before is None else before
            step = torch.as_tensor(store.step(t))[None]
            disp = compose(step, torch.as_tensor(before)[None])[0].numpy()
        _write(store, t, source[t], disp)
        before, written = disp, written + 1
        yield Progress(len(source) - len(pending) + written, len(source), f"frame {t}")
    return written, len(steps)


def _write(store: SeriesStore, t: int, image: np.ndarray, disp: np.ndarray) -> None:
    """Warp frame ``t`` with its field and write it with the field, Jacobian and metrics."""
    field_t = torch.as_tensor(disp)[None]
    warped = warp(torch.as_tensor(image)[None], field_t)[0].numpy()
    store.write_frame(t, warped, disp, jacobian_array(field_t), field_regularity(field_t))
