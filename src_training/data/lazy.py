"""Stacks read one frame at a time: Zarr and OME-Zarr stores, large TIFFs, any indexable array.

A :class:`FrameSource` wraps anything with a ``shape`` whose ``[t]`` gives one frame
(a NumPy array, a dask array such as a napari layer's data, a Zarr array) and hands out
normalised ``(C, *spatial)`` frames, each read and normalised on its own as
:func:`src_training.data.datasets.load_dataset` does for a whole stack, so a stack never
has to fit in memory. :func:`open_stack` opens a store or TIFF file as one:

* an OME-Zarr image (NGFF 0.4 ``multiscales``, or 0.5 under ``ome``): its axes must be
  a time axis or a ``z`` axis of 2D sections first, then an optional channel axis, then
  the spatial axes; the voxel size comes from the level's ``scale``;
* a plain Zarr array: ``(T, *spatial)``, or ``(T, C, *spatial)`` when ``ndim`` says so;
* a TIFF file, through ``tifffile``'s Zarr interface (pages read when indexed).

Requires the ``bigdata`` extra (``zarr``) for stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src_training.data.normalise import normalise_intensity
from src_training.data.reading import Spacing, to_grayscale

ZARR_MARKERS = (".zgroup", ".zarray", "zarr.json")
TIFF_SUFFIXES = (".tif", ".tiff")


@dataclass
class FrameSource:
    """Frames of a stack, read and normalised one at a time.

    Attributes
    ----------
    array : object
        Anything with ``shape`` whose ``array[t]`` is frame ``t`` (NumPy, dask, Zarr).
    ndim : int
        Spatial dimensions of a frame (2 or 3).
    name : str
        How messages name the stack.
    spacing : tuple of float or None
        Voxel size per spatial axis, where the source records it.
    colour : bool
        Frames end in an RGB(A) axis, read as their luminance.
    """

    array: Any
    ndim: int
    name: str = "the stack"
    spacing: Spacing | None = None
    colour: bool = False

    def __post_init__(self) -> None:
        """Check that the array holds frames of ``ndim`` spatial axes (and channels)."""
        rank = len(self.array.shape) - int(self.colour)
        if self.ndim not in (2, 3) or rank not in (self.ndim + 1, self.ndim + 2):
            raise ValueError(
                f"{self.name} has shape {tuple(self.array.shape)}, not a stack of {self.ndim}D "
                f"frames (T, *spatial) or (T, C, *spatial); pass a stack of {self.ndim}D frames"
            )

    @property
    def shape(self) -> tuple[int, ...]:
        """``(T, C, *spatial)`` of the normalised frames."""
        shape = tuple(int(n) for n in self.array.shape[: len(self.array.shape) - self.colour])
        return shape if len(shape) == self.ndim + 2 else (shape[0], 1, *shape[1:])

    def __len__(self) -> int:
        """Return the number of frames."""
        return self.shape[0]

    def __getitem__(self, t: int) -> np.ndarray:
        """Frame ``t``, float32 ``(C, *spatial)``, each channel normalised on its own."""
        raw = np.asarray(self.array[int(t)])
        if self.colour:
            raw = to_grayscale(raw)
        raw = raw.reshape(self.shape[1:])
        return np.stack([normalise_intensity(channel) for channel in raw])


def is_zarr(path: str | Path) -> bool:
    """Tell whether ``path`` is a Zarr store (a folder with Zarr metadata or named ``.zarr``)."""
    path = Path(path)
    return path.suffix == ".zarr" or any((path / marker).is_file() for marker in ZARR_MARKERS)


def is_lazy_stack(path: str | Path) -> bool:
    """Tell whether :func:`open_stack` reads ``path`` frame by frame (a store or a TIFF)."""
    return is_zarr(path) or Path(path).suffix.lower() in TIFF_SUFFIXES


def open_stack(path: str | Path, ndim: int | None = None) -> FrameSource:
    """Open a Zarr/OME-Zarr store or a TIFF file as a stack read frame by frame.

    Parameters
    ----------
    path : str or Path
        A ``.zarr`` store (an OME-Zarr image group, a group with one array, an array)
        or a ``.tif``/``.tiff`` file.
    ndim : {None, 2, 3}
        Spatial dimensions of a frame; None: from the axes, else 2 for a 3D array and
        3 for a 4D one.

    Returns
    -------
    FrameSource
        The frames (level 0 of a multiscale image, its full resolution).

    Raises
    ------
    ValueError
        If the store has no image array, its axes are not a stack's, or chunks are missing.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file or store: {path}; check the path")
    if is_zarr(path):
        return _open_zarr(path, ndim)
    return _open_tiff(path, ndim)


def _open_zarr(path: Path, ndim: int | None) -> FrameSource:
    import zarr

    try:
        node = zarr.open(str(path), mode="r")
    except Exception as err:
        raise ValueError(
            f"could not open the Zarr store {path} ({err}); check that it is a complete store"
        ) from None
    spacing, axes = None, None
    if isinstance(node, zarr.Group):
        node, spacing, axes = _image_of_group(node, path)
    missing = node.nchunks - node.nchunks_initialized
    if missing:
        raise ValueError(
            f"the Zarr store {path} is missing {missing} of its {node.nchunks} chunks; save "
            "the store again (with write_empty_chunks=True if blank chunks were skipped)"
        )
    if axes is None:
        return FrameSource(node, ndim or (2 if node.ndim == 3 else 3), str(path))
    return FrameSource(node, _ndim_of_axes(axes, ndim, path), str(path), spacing)


def _image_of_group(group: Any, path: Path) -> tuple[Any, Spacing | None, list[dict] | None]:
    """Find the level-0 array of an OME-Zarr image group (or a group's only array)."""
    attrs = dict(group.attrs)
    multiscales = attrs.get("multiscales") or attrs.get("ome", {}).get("multiscales")
    if not multiscales:
        arrays = [name for name, _ in group.arrays()]
        if len(arrays) == 1:
            return group[arrays[0]], None, None
        raise ValueError(
            f"the Zarr group {path} has no OME-Zarr multiscales metadata and "
            f"{len(arrays)} arrays; give the image array's path, e.g. {path}/0"
        )
    image = multiscales[0]
    level = image["datasets"][0]
    if level["path"] not in group:
        raise ValueError(
            f"the OME-Zarr image {path} lists the array {level['path']!r}, which is missing; "
            "save the store again"
        )
    array = group[level["path"]]
    axes = [a if isinstance(a, dict) else {"name": a} for a in image.get("axes", [])]
    if len(axes) != array.ndim:
        raise ValueError(
            f"the OME-Zarr image {path} names {len(axes)} axes for a {array.ndim}D array; "
            "fix its multiscales axes"
        )
    scale = next(
        (t["scale"] for t in level.get("coordinateTransformations", []) if t["type"] == "scale"),
        None,
    )
    spatial = [k for k, a in enumerate(axes) if _kind(a) == "space"]
    spacing = None if scale is None else tuple(float(scale[k]) for k in spatial)
    return array, spacing, axes


def _kind(axis: dict) -> str:
    """Return an axis's type, from its name where the metadata gives none."""
    name = axis.get("name", "")
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    return axis.get("type") or kinds.get(name, "")


def _ndim_of_axes(axes: list[dict], ndim: int | None, path: Path) -> int:
    """Spatial dimensions of a frame of an OME-Zarr image, checking the axes' order."""
    kinds = "".join({"time": "t", "channel": "c", "space": "s"}.get(_kind(a), "?") for a in axes)
    names = "".join(str(a.get("name", "?")) for a in axes)
    found = {"tss": 2, "tcss": 2, "tsss": 3, "tcsss": 3, "sss": 2}.get(kinds)
    if found is None or (ndim is not None and ndim != found):
        raise ValueError(
            f"the OME-Zarr image {path} has axes {names!r}; a series needs a time axis and "
            "2 or 3 spatial axes ('tyx', 'tczyx'), or the 'zyx' sections of a volume"
        )
    return found


def _open_tiff(path: Path, ndim: int | None) -> FrameSource:
    import tifffile
    import zarr

    try:
        with tifffile.TiffFile(path) as tif:
            axes = tif.series[0].axes
        array = zarr.open(tifffile.imread(path, aszarr=True), mode="r")
    except Exception as err:
        raise ValueError(
            f"could not read {path}: {err}; check that it is a complete TIFF file"
        ) from None
    colour = axes.endswith("S") and array.shape[-1] in (3, 4)
    rank = array.ndim - int(colour)
    return FrameSource(array, ndim or (2 if rank <= 3 else 3), str(path), colour=colour)
