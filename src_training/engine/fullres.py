"""A series registered at a coarse level of a multiscale stack, warped at full resolution.

A multiscale stack (an OME-Zarr pyramid, a napari multiscale layer) is registered at one
of its coarser levels into a series store (:func:`~src_training.engine.stored.
register_stack_to_store`); :func:`warp_store_at_full_resolution` then resamples each
written field onto the finest level's grid (the corner voxels of both grids coincide,
magnitudes scaled by the ratio of the grids: :func:`~src_training.spatial.transforms.
resize_field`) and warps the full-resolution frame, in its own intensities, into the
store's image group ``full`` (OME-NGFF, one chunk per frame), one frame at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src_training.data.seriesstore import image_group
from src_training.engine.registration import Progress
from src_training.spatial.transforms import resize_field, warp

FULL = "full"  # the store's group of the frames warped at full resolution


def warp_store_at_full_resolution(
    store: str | Path,
    frames: Any,
    *,
    spacing: tuple[float, ...] | None = None,
    stop: Callable[[], bool] | None = None,
) -> Generator[Progress, None, list[int]]:
    """Warp every frame the store holds a field of at the resolution of ``frames``.

    Parameters
    ----------
    store : str or Path
        A series store written by :func:`~src_training.engine.stored.register_stack_to_store`
        from a coarser level of ``frames``.
    frames : array-like
        The full-resolution stack ``(T, *spatial)`` (NumPy, dask, Zarr), read one frame at
        a time; its frames have the store's number and dimensionality.
    spacing : tuple of float, optional
        Voxel size of the full-resolution frames (default: one).
    stop : callable, optional
        Polled before each frame; True ends the run with the frames warped so far.

    Yields
    ------
    Progress
        After each frame written.

    Returns
    -------
    list of int
        The frames warped at full resolution by this call.
    """
    import zarr

    root = zarr.open_group(str(store), mode="r+")
    fields = root["fields/0"]
    n, ndim, *coarse = fields.shape
    shape = tuple(int(s) for s in frames.shape)
    if len(shape) != ndim + 1 or shape[0] != n:
        raise ValueError(
            f"the full-resolution stack has shape {shape} but the store holds {n} frames of "
            f"{ndim}D fields; pass the stack the store's level was taken from"
        )
    full = shape[1:]
    if any(f < c for f, c in zip(full, coarse, strict=True)):
        raise ValueError(
            f"the full-resolution frames {full} are smaller than the registered level "
            f"{tuple(coarse)}; pass the finest level"
        )
    target = _full_group(root, n, full, spacing or (1.0,) * ndim)
    done = np.flatnonzero(np.asarray(root["done"][:]) == 1)
    warped: list[int] = []
    for count, t in enumerate(done, start=1):
        if stop is not None and stop():
            break
        field = resize_field(torch.as_tensor(np.asarray(fields[t]))[None], full)
        image = torch.as_tensor(np.asarray(frames[int(t)], dtype=np.float32))[None, None]
        target[int(t)] = warp(image, field)[0].numpy()
        warped.append(int(t))
        yield Progress(count, len(done), f"frame {t} at full resolution")
    return warped


def _full_group(root: Any, n: int, full: tuple[int, ...], spacing: tuple[float, ...]) -> Any:
    """Return the store's ``full`` image ``(T, 1, *full)``, made once, reused while it fits."""
    if FULL in root and tuple(root[f"{FULL}/0"].shape) == (n, 1, *full):
        return root[f"{FULL}/0"]
    if FULL in root:
        del root[FULL]
    group = root.create_group(FULL)
    space = "zyx"[3 - len(full) :]
    return image_group(group, "full resolution", (n, 1, *full), "tc" + space, spacing)
