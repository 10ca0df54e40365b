"""Displacement-field files: the field with its grid and where it came from.

A field file is a NumPy ``.npz`` archive (read without unpickling) holding

* ``displacement``: float32 ``(ndim, *spatial)`` in voxels of the fixed grid, the
  convention of :mod:`src_training.spatial.transforms` (channel ``i`` moves along array
  axis ``i``; ``warped(x) = moving(x + u(x))``), or ``(T, ndim, *spatial)`` for the
  frames of a stack;
* ``spacing`` and ``origin``: float64, one per spatial array axis: the world position
  of voxel ``x`` is ``origin + spacing * x`` (napari's ``scale`` and ``translate``);
* ``direction``: the ``(ndim, ndim)`` direction cosines of ITK's physical space, in
  ITK's axis order (identity unless the fixed image's header said otherwise);
* ``meta``: a JSON string with the format version, ``axes`` (the array axes named
  as ITK's ``x``, ``y``, ``z``: ``"zyx"``/``"yx"`` for C-ordered arrays as TIFF and
  napari hold them, ``"xyz"`` for NIfTI volumes as nibabel reads them) and
  ``provenance`` (method, metric, inputs, version, date).

A bare ``.npy`` field of earlier versions still loads, with unit spacing and no
provenance.
"""

from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = "deepsim-displacement-field"
VERSION = 1


@dataclass
class FieldFile:
    """A displacement field and its grid: what a field file holds.

    Attributes
    ----------
    displacement : numpy.ndarray
        float32 ``(ndim, *spatial)``, or ``(T, ndim, *spatial)`` for the frames of a stack.
    spacing, origin : tuple of float
        Voxel size and world position of voxel 0, per spatial array axis.
    axes : str
        ITK's name of each array axis: ``"yx"``/``"zyx"`` (C order) or ``"xy"``/``"xyz"``.
    direction : numpy.ndarray
        ``(ndim, ndim)`` ITK direction cosines, in ITK's axis order.
    provenance : dict
        What made the field (see :func:`provenance`); empty for a bare ``.npy``.
    stack : bool
        The file holds one field per frame of a stack, ``(T, ndim, *spatial)``.
    """

    displacement: np.ndarray
    spacing: tuple[float, ...] = ()
    origin: tuple[float, ...] = ()
    axes: str = ""
    direction: np.ndarray = field(default_factory=lambda: np.eye(0))
    provenance: dict[str, Any] = field(default_factory=dict)
    stack: bool = False

    def __post_init__(self) -> None:
        """Check the field's shape and fill in the unit grid where none was given."""
        self.displacement = np.asarray(self.displacement, dtype=np.float32)
        shape, dtype = self.displacement.shape, self.displacement.dtype
        if not (is_field_stack if self.stack else is_displacement)(shape, dtype):
            raise ValueError(
                f"a displacement field must have shape (2, H, W), (3, D, H, W) or, for a "
                f"stack, (T, ndim, *spatial); got {shape}"
            )
        n = self.ndim
        self.spacing = tuple(float(s) for s in (self.spacing or (1.0,) * n))
        self.origin = tuple(float(o) for o in (self.origin or (0.0,) * n))
        self.axes = self.axes or "zyx"[3 - n :]
        if self.direction.size == 0:
            self.direction = np.eye(n)
        self.direction = np.asarray(self.direction, dtype=np.float64)
        if not (len(self.spacing) == len(self.origin) == len(self.axes) == n):
            raise ValueError(f"a {n}D field needs {n} spacings, origins and axis names")
        if sorted(self.axes) != sorted("xyz"[:n]) or self.direction.shape != (n, n):
            raise ValueError(f"axes {self.axes!r} or the direction do not fit a {n}D field")
        if min(self.spacing) <= 0:
            raise ValueError(f"the spacing must be positive, got {self.spacing}")

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return int(self.displacement.shape[int(self.stack)])

    @property
    def grid(self) -> tuple[int, ...]:
        """The spatial shape of the fixed grid."""
        return tuple(self.displacement.shape[-self.ndim :])


def is_displacement(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Tell whether an array of ``shape`` and ``dtype`` can be one displacement field.

    Parameters
    ----------
    shape : tuple of int
        Array shape; ``(2, H, W)`` or ``(3, D, H, W)`` qualify.
    dtype : numpy.dtype
        Must be a floating-point type.

    Returns
    -------
    bool
        True for a floating-point ``(ndim, *spatial)`` array with ``ndim`` 2 or 3.
    """
    return (
        bool(np.issubdtype(dtype, np.floating))
        and len(shape) in (3, 4)
        and shape[0] == len(shape) - 1
        and min(shape[1:]) >= 2
    )


def is_field_stack(shape: tuple[int, ...], dtype: np.dtype) -> bool:
    """Tell whether an array holds one field per frame, ``(T, 2, H, W)`` or ``(T, 3, D, H, W)``.

    Parameters
    ----------
    shape : tuple of int
        Array shape.
    dtype : numpy.dtype
        Must be a floating-point type.

    Returns
    -------
    bool
        True for a floating-point ``(T, ndim, *spatial)`` array, ``ndim`` 2 or 3.
    """
    return bool(np.issubdtype(dtype, np.floating)) and len(shape) - 2 == shape[1] in (2, 3)


def provenance(method: str, fixed: str = "", moving: str = "", **more: str) -> dict[str, str]:
    """Describe what made a field, with the package version and the time.

    Parameters
    ----------
    method : str
        The model (a built-in name or file) or the optimisation (its metric).
    fixed, moving : str
        Names of the fixed and moving inputs (files or layers).
    **more : str
        Anything else worth keeping, e.g. ``metric``.

    Returns
    -------
    dict of str
        ``method``, ``fixed``, ``moving``, ``version``, ``date`` (UTC, ISO 8601) and ``more``.
    """
    from src_training import __version__

    now = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    return {"method": method, "fixed": fixed, "moving": moving, **more} | {
        "version": __version__,
        "date": now,
    }


def field_metadata(axes: str, made: dict[str, Any], stack: bool) -> dict[str, Any]:
    """Return the ``meta`` record a field file keeps beside its arrays (and a store its fields).

    Parameters
    ----------
    axes : str
        ITK's name of each array axis (see :class:`FieldFile`).
    made : dict
        The provenance (see :func:`provenance`).
    stack : bool
        One field per frame of a stack.

    Returns
    -------
    dict
        ``format``, ``version``, ``axes``, ``stack`` and ``provenance``, JSON-serialisable.
    """
    return {"format": FORMAT, "version": VERSION, "axes": axes, "stack": stack, "provenance": made}


def save_field(path: str | Path, field_file: FieldFile) -> Path:
    """Write a field file (``.npz``; the suffix is added when missing).

    Parameters
    ----------
    path : str or Path
        Destination.
    field_file : FieldFile
        The field, its grid and provenance.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    if not path.parent.is_dir():
        raise ValueError(
            f"cannot save {path.name}: the folder {path.parent} does not exist; choose an "
            "existing folder"
        )
    meta = field_metadata(field_file.axes, field_file.provenance, field_file.stack)
    with open(path, "wb") as out:
        np.savez_compressed(
            out,
            displacement=field_file.displacement,
            spacing=np.asarray(field_file.spacing, np.float64),
            origin=np.asarray(field_file.origin, np.float64),
            direction=field_file.direction,
            meta=np.asarray(json.dumps(meta)),
        )
    return path


def load_field(path: str | Path, allow_stack: bool = False) -> FieldFile:
    """Read a field file (``.npz``) or a bare ``.npy`` field, refusing anything else.

    Parameters
    ----------
    path : str or Path
        The file; pickled objects are never loaded.
    allow_stack : bool
        Also accept the ``(T, ndim, *spatial)`` fields of a stack.

    Returns
    -------
    FieldFile
        The field; a bare ``.npy`` gets unit spacing, zero origin and no provenance.
    """
    name = str(path)
    if not Path(path).is_file():
        raise FileNotFoundError(f"no such file: {name}; check the path")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(
            f"could not read the displacement file {name}: it is not a field file (.npz) or "
            f"a NumPy .npy file ({err}); save one with Save field… in the Register widget "
            "(or deepsim register)"
        ) from None
    if isinstance(loaded, np.ndarray):
        array = loaded
        extra: dict[str, Any] = {"stack": not is_displacement(array.shape, array.dtype)}
    else:
        with loaded:
            arrays = {key: loaded[key] for key in loaded.files}
        if "displacement" not in arrays or "meta" not in arrays:
            raise ValueError(
                f"{name} is not a displacement field file (it holds {', '.join(arrays)}); "
                "save one with Save field… in the Register widget (or deepsim register)"
            )
        array, extra = arrays["displacement"], _grid(arrays, name)
    single = not extra["stack"] and is_displacement(array.shape, array.dtype)
    if not (single or (allow_stack and is_field_stack(array.shape, array.dtype))):
        raise ValueError(
            f"{name} holds a {array.dtype} array of shape {array.shape}, not a displacement field "
            "(float, (2, H, W) or (3, D, H, W)); save one from the Register widget"
        )
    try:
        return FieldFile(array, **extra)
    except ValueError as err:
        raise ValueError(
            f"{name} is a damaged displacement field file ({err}); save it again"
        ) from None


def _grid(arrays: dict[str, np.ndarray], name: str) -> dict[str, Any]:
    """Read the grid and provenance stored beside the displacement of a field file."""
    try:
        meta = json.loads(str(arrays["meta"]))
        if meta.get("format") != FORMAT or int(meta["version"]) > VERSION:
            raise ValueError(f"format {meta.get('format')} version {meta.get('version')}")
        return {
            "spacing": tuple(arrays["spacing"].tolist()),
            "origin": tuple(arrays["origin"].tolist()),
            "direction": arrays["direction"],
            "axes": str(meta["axes"]),
            "provenance": dict(meta.get("provenance", {})),
            "stack": bool(meta.get("stack", False)),
        }
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"{name} is a damaged or newer displacement field file ({err}); save it again, or "
            "upgrade napari-deepsim"
        ) from None
