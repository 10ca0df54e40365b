"""A series' results as an OME-Zarr store, written frame by frame and resumable.

Layout of ``OUT.zarr`` (Zarr format 2, OME-NGFF 0.4 ``multiscales`` on each image group,
so napari-ome-zarr and ome-zarr-py open it lazily, also while it is being written):

* ``0``: the warped frames ``(T, C, *spatial)``, float32 (axes ``t``, ``c``, then
  ``z``, ``y``, ``x``; ``scale`` the input's voxel size);
* ``fields/0``: each frame's displacement onto the reference ``(T, ndim, *spatial)``
  in voxels, the convention of :mod:`src_training.spatial.fieldio`, whose ``meta``
  record (axes, provenance) and grid (spacing, origin, direction) the ``fields`` group
  carries in its ``deepsim-field`` attribute;
* ``jacobians/0``: ``(T, *spatial)`` Jacobian determinants;
* ``metrics``: ``(T, 2)`` folding % and std of log|J| per frame (NaN until written);
* ``done``: ``(T,)``, 1 once every array of frame ``t`` is written: a frame cut off
  half-way keeps 0 and is registered again by a resumed run;
* with ``--reference previous`` also ``steps`` and ``steps_done``: each frame's field
  onto its predecessor, composed into ``fields`` afterwards.

Every array has one chunk per frame (spatial chunks of at most 1024 voxels a side).
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from src_training.spatial.fieldio import field_metadata

METRICS = ("folding_percent", "sdlogj")
_SPATIAL_CHUNK = 1024


@dataclass(frozen=True)
class SeriesLayout:
    """What a store holds: checked again when a run resumes.

    Attributes
    ----------
    frames, channels : int
        Frames of the stack and channels of a frame.
    spatial : tuple of int
        Spatial shape of a frame.
    reference : str
        A frame index or ``previous``.
    source : str
        The input stack.
    method : str
        The model that registers it.
    """

    frames: int
    channels: int
    spatial: tuple[int, ...]
    reference: str
    source: str
    method: str

    @property
    def ndim(self) -> int:
        """Spatial dimensions of a frame."""
        return len(self.spatial)


class SeriesStore:
    """The arrays of a series' OME-Zarr store (see the module), opened for writing.

    Parameters
    ----------
    root : zarr.Group
        The store's root group.
    path : Path
        Where it is.
    """

    def __init__(self, root: Any, path: Path) -> None:
        self.root = root
        self.path = path

    def pending(self) -> list[int]:
        """Frames whose results are not all written yet."""
        return [int(t) for t in np.flatnonzero(self.root["done"][:] == 0)]

    def pending_steps(self) -> list[int]:
        """Frames ``t >= 1`` whose field onto frame ``t - 1`` is not written yet."""
        done = self.root["steps_done"][:]
        return [int(t) for t in np.flatnonzero(done == 0) if t > 0]

    def write_frame(
        self,
        t: int,
        warped: np.ndarray,
        field: np.ndarray,
        jacobian: np.ndarray,
        metrics: dict[str, float],
    ) -> None:
        """Write frame ``t``'s results and metrics (:data:`METRICS`), then mark it done."""
        self.root["0"][t] = warped
        self.root["fields/0"][t] = field
        self.root["jacobians/0"][t] = jacobian
        self.root["metrics"][t] = [metrics[name] for name in METRICS]
        self.root["done"][t] = 1

    def write_step(self, t: int, step: np.ndarray) -> None:
        """Write frame ``t``'s field onto frame ``t - 1`` and mark it done."""
        self.root["steps"][t] = step
        self.root["steps_done"][t] = 1

    def field(self, t: int) -> np.ndarray:
        """Frame ``t``'s written field onto the reference."""
        return np.asarray(self.root["fields/0"][t])

    def step(self, t: int) -> np.ndarray:
        """Frame ``t``'s written field onto frame ``t - 1``."""
        return np.asarray(self.root["steps"][t])

    def metrics(self) -> np.ndarray:
        """``(T, 2)`` per-frame folding % and std log|J| (NaN where not written)."""
        return np.asarray(self.root["metrics"][:])


def open_series_store(
    path: str | Path,
    layout: SeriesLayout,
    grid: dict[str, Any],
    made: dict[str, str],
    *,
    resume: bool = False,
    overwrite: bool = False,
) -> SeriesStore:
    """Create a series store, or open one to resume after checking it holds this series.

    Parameters
    ----------
    path : str or Path
        The store, ``OUT.zarr``.
    layout : SeriesLayout
        What the run registers.
    grid : dict
        ``spacing``, ``origin`` (tuples per spatial axis), ``axes`` (ITK names) and
        ``direction`` (a nested list) of the fields, as a field file keeps them.
    made : dict
        The provenance of the fields (:func:`src_training.spatial.fieldio.provenance`).
    resume : bool
        Keep the frames an earlier run of the same series finished.
    overwrite : bool
        Replace a store that holds results.

    Returns
    -------
    SeriesStore
        The store, its finished frames marked done.

    Raises
    ------
    ValueError
        If ``path`` holds something else, or results and neither flag allows it.
    """
    import zarr

    path = Path(path)
    if path.exists() and not (path / ".zgroup").is_file():
        raise ValueError(f"--out {path} exists and is not a series store; choose another --out")
    if path.exists() and resume and not overwrite:
        root = zarr.open_group(str(path), mode="r+")
        found = root.attrs.get("deepsim", {}).get("series")
        if found != _jsonable(layout):
            raise ValueError(
                f"--out {path} holds another series ({_describe(found)}); choose another --out, "
                "or pass --overwrite instead of --resume to start again"
            )
        return SeriesStore(root, path)
    if path.exists() and not overwrite:
        raise ValueError(
            f"--out {path} already holds a series; pass --resume to complete it, --overwrite "
            "to start again, or choose another --out"
        )
    if path.exists():
        shutil.rmtree(path)
    return SeriesStore(_create(path, layout, grid, made), path)


def image_group(
    group: Any, name: str, shape: tuple[int, ...], axes: str, spacing: tuple[float, ...]
) -> Any:
    """Create an OME-Zarr (NGFF 0.4) image in ``group``: its array ``0``, one chunk per frame.

    Parameters
    ----------
    group : zarr.Group
        Where the image goes (Zarr format 2).
    name : str
        The image's name in its metadata.
    shape : tuple of int
        Shape of the float32 array, frames first.
    axes : str
        One letter per axis: ``t`` (time), ``c`` (channel), else space (``z``, ``y``, ``x``).
    spacing : tuple of float
        Voxel size per spatial axis (the ``scale`` of the trailing axes).

    Returns
    -------
    zarr.Array
        The array, filled with zeros where nothing is written.
    """
    spatial = len(spacing)
    chunk = tuple(min(s, _SPATIAL_CHUNK) for s in shape[len(shape) - spatial :])
    chunks = (1, *shape[1 : len(shape) - spatial], *chunk)
    array = group.create_array("0", shape=shape, chunks=chunks, dtype="f4", fill_value=0.0)
    kinds = {"t": "time", "c": "channel"}
    scale = [1.0] * (len(shape) - spatial) + [float(s) for s in spacing]
    transform = {"type": "scale", "scale": scale}
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "name": name,
            "axes": [{"name": a, "type": kinds.get(a, "space")} for a in axes],
            "datasets": [{"path": "0", "coordinateTransformations": [transform]}],
        }
    ]
    return array


def _create(path: Path, layout: SeriesLayout, grid: dict[str, Any], made: dict[str, str]) -> Any:
    import zarr

    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    n, spatial, spacing = layout.frames, layout.spatial, tuple(grid["spacing"])
    chunk = tuple(min(s, _SPATIAL_CHUNK) for s in spatial)
    space = "zyx"[3 - layout.ndim :]
    image_group(root, "warped", (n, layout.channels, *spatial), "tc" + space, spacing)
    fields = root.create_group("fields")
    image_group(fields, "fields", (n, layout.ndim, *spatial), "tc" + space, spacing)
    fields.attrs["deepsim-field"] = field_metadata(grid["axes"], made, True) | {
        key: list(grid[key]) for key in ("spacing", "origin", "direction")
    }
    jacobians = root.create_group("jacobians")
    image_group(jacobians, "jacobians", (n, *spatial), "t" + space, spacing)
    shape = (n, len(METRICS))
    root.create_array("metrics", shape=shape, chunks=(1, shape[1]), dtype="f8", fill_value=np.nan)
    root.create_array("done", shape=(n,), chunks=(1,), dtype="u1", fill_value=0)
    if layout.reference == "previous":
        shape = (n, layout.ndim, *spatial)
        chunks = (1, layout.ndim, *chunk)
        root.create_array("steps", shape=shape, chunks=chunks, dtype="f4", fill_value=0.0)
        root.create_array("steps_done", shape=(n,), chunks=(1,), dtype="u1", fill_value=0)
    root.attrs["deepsim"] = {"series": _jsonable(layout), "metrics": list(METRICS)}
    return root


def _jsonable(layout: SeriesLayout) -> dict[str, Any]:
    """Return the layout as the store's attributes hold it (tuples become lists)."""
    return {key: list(v) if isinstance(v, tuple) else v for key, v in asdict(layout).items()}


def _describe(found: dict[str, Any] | None) -> str:
    if not found:
        return "no series record"
    shape = "x".join(str(s) for s in found["spatial"])
    return (
        f"{found['frames']} frames of {shape} from {found['source']}, "
        f"reference {found['reference']}"
    )
