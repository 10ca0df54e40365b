"""Reading and writing displacement fields as ``.npy`` files.

A displacement field is a float array ``(ndim, *spatial)`` in voxels of the fixed
grid, ``ndim`` 2 or 3, following :mod:`src_training.spatial.transforms` (channel ``i`` moves
along array axis ``i``; ``warped(x) = moving(x + u(x))``). The Register widget also
saves the fields of a 2D+t stack as ``(T, 2, H, W)``. In napari a field is shown as
one Image layer per axis, each marked in its metadata, so that it can be written
back as one file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

LayerData = tuple[Any, dict[str, Any], str]
MARK = "deepsim_displacement"
AXIS = "deepsim_axis"


def is_displacement(shape: Sequence[int], dtype: np.dtype) -> bool:
    """Tell whether an array of ``shape`` and ``dtype`` can be one displacement field.

    Parameters
    ----------
    shape : sequence of int
        Array shape; ``(2, H, W)`` or ``(3, D, H, W)`` qualify.
    dtype : numpy.dtype
        Must be a floating-point type.

    Returns
    -------
    bool
        True for a floating-point ``(ndim, *spatial)`` array with ``ndim`` 2 or 3.
    """
    return (
        np.issubdtype(dtype, np.floating)
        and len(shape) in (3, 4)
        and shape[0] == len(shape) - 1
        and min(shape[1:]) >= 2
    )


def is_field_stack(shape: Sequence[int], dtype: np.dtype) -> bool:
    """Tell whether an array holds one 2D field per frame of a stack, ``(T, 2, H, W)``.

    Parameters
    ----------
    shape : sequence of int
        Array shape.
    dtype : numpy.dtype
        Must be a floating-point type.

    Returns
    -------
    bool
        True for a floating-point ``(T, 2, H, W)`` array.
    """
    return np.issubdtype(dtype, np.floating) and len(shape) == 4 and shape[1] == 2


def load_displacement(path: str | Path, allow_stack: bool = False) -> np.ndarray:
    """Read a displacement field saved as ``.npy``, refusing anything else.

    Parameters
    ----------
    path : str or Path
        A ``.npy`` file; pickled objects are never loaded.
    allow_stack : bool
        Also accept ``(T, 2, H, W)`` fields of a 2D+t stack.

    Returns
    -------
    numpy.ndarray
        The float32 field.
    """
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(
            f"could not read the displacement file {path}: it is not a NumPy .npy file ({err})"
        ) from None
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{path} holds several arrays; save one displacement field per .npy file")
    accepted = is_displacement(array.shape, array.dtype) or (
        allow_stack and is_field_stack(array.shape, array.dtype)
    )
    if not accepted:
        raise ValueError(
            f"{path} holds a {array.dtype} array of shape {array.shape}, not a displacement field "
            "(float, (2, H, W) or (3, D, H, W)); save one from the Register widget"
        )
    return array.astype(np.float32)


def save_displacement(path: str | Path, field: np.ndarray) -> str:
    """Write a displacement field (or a stack of them) to ``.npy`` as float32.

    Parameters
    ----------
    path : str or Path
        Destination; ``.npy`` is appended when missing.
    field : numpy.ndarray
        ``(ndim, *spatial)`` or ``(T, 2, H, W)`` field.

    Returns
    -------
    str
        The written path.
    """
    path = Path(path)
    if path.suffix != ".npy":
        path = path.with_name(path.name + ".npy")
    if not path.parent.is_dir():
        raise ValueError(
            f"cannot save {path.name}: the folder {path.parent} does not exist; choose an "
            "existing folder"
        )
    np.save(path, np.asarray(field, dtype=np.float32), allow_pickle=False)
    return str(path)


def displacement_layer_data(field: np.ndarray, name: str = "displacement") -> LayerData:
    """Describe a ``(ndim, *spatial)`` field as an Image layer split into one layer per axis.

    Parameters
    ----------
    field : numpy.ndarray
        The displacement field.
    name : str
        Prefix of the layer names, ``"<name> axis <i>"``.

    Returns
    -------
    LayerData
        ``(data, kwargs, "image")`` with ``channel_axis=0``, a symmetric diverging
        colormap, and metadata marking each layer as axis ``i`` of a displacement.
    """
    ndim = field.shape[0]
    limit = float(np.abs(field).max()) or 1.0
    kwargs = {
        "channel_axis": 0,
        "name": [f"{name} axis {i}" for i in range(ndim)],
        "colormap": "PiYG",
        "contrast_limits": [(-limit, limit)] * ndim,
        "blending": "translucent",
        "metadata": [{MARK: True, AXIS: i} for i in range(ndim)],
    }
    return field, kwargs, "image"


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return a reader for a ``.npy`` displacement field, or None for any other file.

    Parameters
    ----------
    path : str or list of str
        What napari asks to open.

    Returns
    -------
    callable or None
        :func:`read_displacement` when ``path`` is one ``.npy`` file holding a float
        ``(2, H, W)`` or ``(3, D, H, W)`` array; None lets napari try other readers.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).endswith(".npy"):
        return None
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError):
        return None
    if not isinstance(array, np.ndarray) or not is_displacement(array.shape, array.dtype):
        return None
    return read_displacement


def read_displacement(path: str | list[str]) -> list[LayerData]:
    """Read a displacement ``.npy`` file as one Image layer per axis.

    Parameters
    ----------
    path : str or list of str
        One ``.npy`` file.

    Returns
    -------
    list of LayerData
        One layer-data tuple (see :func:`displacement_layer_data`).
    """
    path = path[0] if isinstance(path, list) else path
    return [displacement_layer_data(load_displacement(path), Path(path).name.split(".")[0])]


def write_displacement(path: str, layer_data: list[LayerData]) -> list[str]:
    """Write displacement layers to one ``.npy`` file.

    Accepts either one Image layer holding the whole ``(ndim, *spatial)`` field, or the
    ``ndim`` per-axis layers made by the reader (any order), each marked with
    ``{"deepsim_displacement": True}`` in its metadata.

    Parameters
    ----------
    path : str
        Destination ``.npy`` file.
    layer_data : list of LayerData
        The selected layers as ``(data, attributes, layer type)``.

    Returns
    -------
    list of str
        The written path.
    """
    marked = [(np.asarray(d), m.get("metadata") or {}) for d, m, _ in layer_data]
    if not all(meta.get(MARK) for _, meta in marked):
        raise ValueError(
            "only displacement layers (made by the Register widget or read from a "
            "displacement .npy) can be written as a displacement field"
        )
    if len(marked) == 1 and AXIS not in marked[0][1]:
        field = marked[0][0]
    else:
        by_axis = {int(meta.get(AXIS, -1)): data for data, meta in marked}
        if sorted(by_axis) != list(range(len(marked))) or len(marked) not in (2, 3):
            raise ValueError(
                "select all axis layers of one displacement field (2 in 2D, 3 in 3D) to save it"
            )
        field = np.stack([by_axis[i] for i in range(len(marked))])
    if not is_displacement(field.shape, np.dtype(np.float32)):
        raise ValueError(
            f"a displacement field must have shape (2, H, W) or (3, D, H, W), got {field.shape}"
        )
    return [save_displacement(path, field)]
