"""Reading and writing displacement fields: field files, older ``.npy`` and ITK exports.

A displacement field is a float array ``(ndim, *spatial)`` in voxels of the fixed grid,
following :mod:`src_training.spatial.transforms`; the Register widget also keeps the
fields of a 2D+t stack, ``(T, 2, H, W)``. A field file (``.npz``, see
:mod:`src_training.spatial.fieldio`) carries the fixed grid's spacing and origin and
what made the field. In napari a field is one Image layer per axis, on the fixed grid
(``scale`` = spacing, ``translate`` = origin), each marked in its metadata with its
axis and the file's grid and provenance, so that the Register widget can apply it
(its "field" picker lists them) and the layers can be written back as one file.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from src_training.engine.public import FieldFile, itk_suffix, load_field, save_field

LayerData = tuple[Any, dict[str, Any], str]
MARK = "deepsim_displacement"
AXIS = "deepsim_axis"
FIELD = "deepsim_field"  # the grid, axes, provenance and name of the field file
SUFFIXES = (".npz", ".npy")


def field_info(field_file: FieldFile, name: str) -> dict[str, Any]:
    """Describe a field's grid and provenance as layer metadata (plain values).

    Parameters
    ----------
    field_file : FieldFile
        The field.
    name : str
        The name its layers share (the file's stem).

    Returns
    -------
    dict
        ``name``, ``spacing``, ``origin``, ``axes``, ``direction``, ``stack``, ``provenance``.
    """
    return {
        "name": name,
        "spacing": list(field_file.spacing),
        "origin": list(field_file.origin),
        "axes": field_file.axes,
        "direction": field_file.direction.tolist(),
        "stack": field_file.stack,
        "provenance": dict(field_file.provenance),
    }


def field_from_info(displacement: np.ndarray, info: dict[str, Any]) -> FieldFile:
    """Rebuild a field from its array and the metadata of :func:`field_info`.

    Parameters
    ----------
    displacement : numpy.ndarray
        The field.
    info : dict
        Its metadata; missing entries mean the unit grid.

    Returns
    -------
    FieldFile
        The field and its grid.
    """
    return FieldFile(
        displacement,
        spacing=tuple(info.get("spacing", ())),
        origin=tuple(info.get("origin", ())),
        axes=str(info.get("axes", "")),
        direction=np.asarray(info.get("direction", np.eye(0))),
        provenance=dict(info.get("provenance", {})),
        stack=bool(info.get("stack", False)),
    )


def displacement_layer_data(field_file: FieldFile, name: str = "displacement") -> LayerData:
    """Describe a field as an Image layer split into one layer per axis, on its grid.

    Parameters
    ----------
    field_file : FieldFile
        The field and its grid.
    name : str
        Prefix of the layer names, ``"<name> axis <i>"``.

    Returns
    -------
    LayerData
        ``(data, kwargs, "image")`` with the channel axis split, a symmetric diverging
        colormap, the grid as scale and translate, and metadata marking each layer.
    """
    field = field_file.displacement
    ndim, channel = field_file.ndim, int(field_file.stack)
    limit = float(np.abs(field).max()) or 1.0
    info = field_info(field_file, name)
    lead = [1.0] * channel
    kwargs = {
        "channel_axis": channel,
        "name": [f"{name} axis {i}" for i in range(ndim)],
        "colormap": "PiYG",
        "contrast_limits": [(-limit, limit)] * ndim,
        "blending": "translucent",
        "scale": [*lead, *field_file.spacing],
        "translate": [*[0.0] * channel, *field_file.origin],
        "metadata": [{MARK: True, AXIS: i, FIELD: info} for i in range(ndim)],
    }
    return field, kwargs, "image"


def get_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return a reader for a displacement field file, or None for any other file.

    Parameters
    ----------
    path : str or list of str
        What napari asks to open.

    Returns
    -------
    callable or None
        :func:`read_displacement` when ``path`` is one field file (``.npz``) or one
        ``.npy`` holding a float ``(2, H, W)`` or ``(3, D, H, W)`` array; None lets
        napari try other readers.
    """
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not str(path).endswith(SUFFIXES):
        return None
    try:
        load_field(path, allow_stack=str(path).endswith(".npz"))
    except ValueError:
        return None
    return read_displacement


def read_displacement(path: str | list[str]) -> list[LayerData]:
    """Read a displacement field file as one Image layer per axis.

    Parameters
    ----------
    path : str or list of str
        One field file.

    Returns
    -------
    list of LayerData
        One layer-data tuple (see :func:`displacement_layer_data`).
    """
    path = path[0] if isinstance(path, list) else path
    field_file = load_field(path, allow_stack=True)
    return [displacement_layer_data(field_file, Path(path).name.split(".")[0])]


def field_from_layers(layers: Sequence[tuple[np.ndarray, dict[str, Any]]]) -> FieldFile:
    """Reassemble a field from its per-axis layers (any order) or one whole-field layer.

    Parameters
    ----------
    layers : sequence of (data, metadata)
        The layers' data and metadata, each marked ``{"deepsim_displacement": True}``.

    Returns
    -------
    FieldFile
        The field, with the grid and provenance its metadata recorded.
    """
    marked = [(np.asarray(data), meta or {}) for data, meta in layers]
    if not marked or not all(meta.get(MARK) for _, meta in marked):
        raise ValueError(
            "only displacement layers (made by the Register widget or read from a "
            "displacement field file) can be written as a displacement field"
        )
    info = marked[0][1].get(FIELD, {})
    if len(marked) == 1 and AXIS not in marked[0][1]:
        return field_from_info(marked[0][0], info)
    by_axis = {int(meta.get(AXIS, -1)): data for data, meta in marked}
    if sorted(by_axis) != list(range(len(marked))) or len(marked) not in (2, 3):
        raise ValueError(
            "select all axis layers of one displacement field (2 in 2D, 3 in 3D) to save it"
        )
    stacked = np.stack([by_axis[i] for i in range(len(marked))], axis=int(info.get("stack", 0)))
    return field_from_info(stacked, info)


def save_any(path: str | Path, field_file: FieldFile, grid: dict[str, Any] | None = None) -> str:
    """Save a field by the file's suffix: a field file, an ITK transform or a bare array.

    Parameters
    ----------
    path : str or Path
        ``.npz`` (the default, added when there is no known suffix), ``.nii.gz`` or
        ``.mha`` (an ITK displacement field) or ``.npy`` (the array alone).
    field_file : FieldFile
        The field and its grid as napari shows it.
    grid : dict, optional
        The physical grid of the NIfTI file the fixed layer was read from (its layer
        metadata ``deepsim_grid``) and, as ``moved``, how far the moving layer was moved
        from where its own file's header puts it (``Align centres``): an ITK export
        then lies in the files' physical space, the move included, so that ITK and
        ANTs apply it to the original files.

    Returns
    -------
    str
        The written path.
    """
    if itk_suffix(path) is not None:
        from src_training.engine.fields import export_itk

        if grid and len(grid.get("axes", "")) == field_file.ndim and not field_file.stack:
            moved = np.asarray(grid.get("moved", [0.0] * field_file.ndim), float)
            step = moved / np.asarray(field_file.spacing or (1.0,) * field_file.ndim)
            field_file = FieldFile(
                field_file.displacement - step.reshape(-1, *[1] * field_file.ndim),
                tuple(grid["spacing"]),
                tuple(grid["origin"]),
                axes=str(grid["axes"]),
                direction=np.asarray(grid["direction"]),
                provenance=field_file.provenance,
            )
        return str(export_itk(field_file, path))
    if str(path).endswith(".npy"):
        if not Path(path).parent.is_dir():
            raise ValueError(
                f"cannot save {Path(path).name}: the folder {Path(path).parent} does not "
                "exist; choose an existing folder"
            )
        np.save(path, field_file.displacement, allow_pickle=False)
        return str(path)
    return str(save_field(path, field_file))


def write_displacement(path: str, layer_data: list[LayerData]) -> list[str]:
    """Write displacement layers to one file: a field file, an ITK transform or ``.npy``.

    Accepts either one Image layer holding the whole field, or the per-axis layers made
    by the reader or the Register widget (any order), each marked with
    ``{"deepsim_displacement": True}`` in its metadata.

    Parameters
    ----------
    path : str
        Destination: ``.npz``, ``.nii.gz``, ``.mha`` or ``.npy``.
    layer_data : list of LayerData
        The selected layers as ``(data, attributes, layer type)``.

    Returns
    -------
    list of str
        The written path.
    """
    layers = [(data, meta.get("metadata") or {}) for data, meta, _ in layer_data]
    return [save_any(path, field_from_layers(layers))]
