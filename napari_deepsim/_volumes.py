"""Opening NIfTI volumes (MR, ultrasound, CT and their label files) in napari.

napari has no NIfTI reader of its own. This one opens ``.nii`` and ``.nii.gz`` files
as the command line reads them (:func:`src_training.engine.volumes.read_volume`):
voxels in RAS+ order, ``scale`` the voxel size in mm and ``translate`` the first
voxel's position, so that two volumes of different grids lie where their headers put
them; label files (integer ids, or one binary mask per channel) become Labels layers.
Several files dropped together open as one layer each.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from src_training.engine.volumes import is_volume_file, read_volume

LayerData = tuple[Any, dict[str, Any], str]
GRID = "deepsim_grid"  # the file's grid as a field records it: fields export in its space


def get_volume_reader(path: str | list[str]) -> Callable[[str | list[str]], list[LayerData]] | None:
    """Return a reader when every path is a NIfTI file, else None.

    Parameters
    ----------
    path : str or list of str
        What napari asks to open.

    Returns
    -------
    callable or None
        :func:`read_volumes`, or None so that napari tries other readers.
    """
    paths = path if isinstance(path, list) else [path]
    if not paths or not all(is_volume_file(p) for p in paths):
        return None
    return read_volumes


def read_volumes(path: str | list[str]) -> list[LayerData]:
    """Read NIfTI files as Image or Labels layers placed in mm.

    Parameters
    ----------
    path : str or list of str
        One or several ``.nii`` / ``.nii.gz`` files.

    Returns
    -------
    list of (data, kwargs, layer type)
        One layer per file, named by the file and its parent folder (``case000025``
        of ``moving_images`` becomes ``moving_images/case000025``).

    Raises
    ------
    ValueError
        If a file is not a 3D volume or a 4D file of label masks (napari shows it as a
        notification).
    """
    layers = []
    for one in path if isinstance(path, list) else [path]:
        volume = read_volume(one)
        origin = list(volume.origin)
        kwargs: dict[str, Any] = {
            "name": _name(Path(one)),
            "scale": list(volume.spacing),
            "translate": origin,
            "metadata": {"source_file": str(one), GRID: {**volume.grid, "ras": origin}},
        }
        if not volume.labels:
            kwargs["colormap"] = "gray"
        layers.append((volume.data, kwargs, "labels" if volume.labels else "image"))
    return layers


def _name(path: Path) -> str:
    stem = path.name.removesuffix(".gz").removesuffix(".nii")
    return f"{path.parent.name}/{stem}" if path.parent.name else stem


def moved_by(layer: Any) -> list[float]:
    """Return how far a layer read from a NIfTI file was moved from where its header put it.

    Parameters
    ----------
    layer : napari layer
        A layer; one this reader opened records its header's position.

    Returns
    -------
    list of float
        Its translate minus the header's origin (world units), per axis; zeros for a
        layer that was not read from a NIfTI file.
    """
    header = layer.metadata.get(GRID, {}).get("ras")
    translate = [float(value) for value in layer.translate]
    if header is None or len(header) != len(translate):
        return [0.0] * len(translate)
    return [now - then for now, then in zip(translate, header, strict=True)]
