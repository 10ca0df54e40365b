"""Datasets: images and label maps read from the layouts users keep their data in.

:func:`load_dataset` detects the layout of a path:

1. a folder with ``images/`` and optionally ``labels/``: one 2D frame or one 3D volume
   per file; a label file belongs to the image file with the same name without suffix;
2. one multi-frame file: a TIFF or NumPy stack ``(T, H, W)`` of 2D frames (one 3D volume
   with ``ndim=3``), a ``(T, D, H, W)`` array of volumes, a NIfTI volume
   ``(X, Y, Z)`` or time series ``(X, Y, Z, T)``, or an ``.npz`` archive with an image
   array and optionally a label array (see :data:`IMAGE_KEYS`, :data:`LABEL_KEYS`);
   ``label_file`` gives the labels of a file that holds none;
3. a folder holding exactly one file with an image array: that file;
4. the paired layout: a folder with ``moving_images/`` and ``fixed_images/`` (and
   optionally ``moving_labels/`` and ``fixed_labels/``), cases matched by file name;
5. a Cell Tracking Challenge sequence folder (``.../01`` with ``t000.tif``, ... and a
   ``01_ST`` or ``01_GT`` sibling holding ``SEG/man_segNNN.tif``), read by
   :func:`src_training.ctc.read_sequence`.

Files are sorted by name, numbers in names compared as numbers (``t2`` before ``t10``).
Every image is normalised on its own with :func:`src_training.data.normalise_intensity`.
Label values are mapped to contiguous class ids over the whole dataset before ``frames``
selects part of it, so the ids of a training and a test selection agree. A label array
with one axis more than its image holds one binary mask per channel (channels last or
first): class ``c + 1`` where mask ``c`` is above 0.5, later channels winning where masks
overlap, 0 elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from src_training.ctc import is_sequence, read_sequence
from src_training.data import check_spatial_size, normalise_intensity
from src_training.io import (
    IMAGE_SUFFIXES,
    NPZ_SUFFIX,
    Spacing,
    file_stem,
    file_suffix,
    npz_keys,
    read_image,
    read_npz,
)

LABEL_MODES = ("classes", "foreground", "none")
IMAGE_KEYS = ("images", "image", "vol", "volume", "img", "x", "data")
LABEL_KEYS = ("labels", "label", "seg", "segmentation", "mask", "masks", "y")
VOLUME_KEYS = ("vol", "volume")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
BACKGROUND = 0
_FRAMES_PATTERN = re.compile(r"(-?\d+)?(:(-?\d+)?)?")


@dataclass
class Dataset:
    """Normalised images, their class-id label maps and where they came from.

    Attributes
    ----------
    images : numpy.ndarray
        ``(N, C, *spatial)`` float32, each image normalised on its own.
    labels : numpy.ndarray or None
        ``(N, *spatial)`` int64 class ids ``0 .. K - 1``, or None without labels.
    names : list of str
        One per image: the file name without suffix, ``file[index]`` for a frame of a
        multi-frame file, ``case/moving`` and ``case/fixed`` in the paired layout.
    class_values : list of int
        The original label value of each class id; empty without labels.
    pairs : list of tuple of int or None
        Fixed ``(moving, fixed)`` index pairs of a paired layout, else None.
    source : str
        What was loaded: path, layout, selection and options.
    spacing : tuple of float or None
        Voxel size along the spatial axes where the files record it.
    """

    images: np.ndarray
    labels: np.ndarray | None
    names: list[str]
    class_values: list[int]
    pairs: list[tuple[int, int]] | None
    source: str
    spacing: Spacing | None = None

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions (2 or 3)."""
        return self.images.ndim - 2

    @property
    def channels(self) -> int:
        """Number of image channels."""
        return self.images.shape[1]

    @property
    def num_classes(self) -> int:
        """Number of label classes (0 without labels)."""
        return len(self.class_values)

    def __len__(self) -> int:
        return self.images.shape[0]

    def subset(self, indices: Sequence[int]) -> Dataset:
        """Return the images at ``indices``, keeping the label mapping.

        Pairs whose two images are both kept are renumbered to the new positions; the
        other pairs are dropped.

        Parameters
        ----------
        indices : sequence of int
            Image indices, negative ones counted from the end.

        Returns
        -------
        Dataset
            A new dataset; ``source`` records the selection.
        """
        kept = [range(len(self))[index] for index in indices]
        position: dict[int, int] = {}
        for new, old in enumerate(kept):
            position.setdefault(old, new)
        pairs = None
        if self.pairs is not None:
            pairs = [
                (position[moving], position[fixed])
                for moving, fixed in self.pairs
                if moving in position and fixed in position
            ]
        return Dataset(
            images=self.images[kept],
            labels=None if self.labels is None else self.labels[kept],
            names=[self.names[index] for index in kept],
            class_values=list(self.class_values),
            pairs=pairs,
            source=f"{self.source}; subset {_describe_indices(kept)}",
            spacing=self.spacing,
        )


@dataclass
class _Item:
    """One frame or volume before normalisation."""

    name: str
    image: np.ndarray
    label: np.ndarray | None  # raw label values, int64, on the image grid
    origin: Path


@dataclass
class _Collection:
    """Everything a layout yields; ``group`` items are selected together (a case's pair)."""

    items: list[_Item]
    description: str
    spacing: Spacing | None
    group: int = 1


def parse_frames(text: str) -> slice:
    """Parse a frame range ``START:STOP`` as given on the command line.

    ``"A:B"``, ``"A:"`` and ``":B"`` are Python slices (negative numbers count from the
    end); ``"A"`` alone selects frame ``A`` only.

    Parameters
    ----------
    text : str
        The range.

    Returns
    -------
    slice
        The frames to select.

    Raises
    ------
    ValueError
        If the text is not such a range.
    """
    match = _FRAMES_PATTERN.fullmatch(text.strip())
    if not text.strip() or match is None:
        raise ValueError(f"--frames must look like START:STOP, e.g. 0:20; got {text!r}")
    start = None if match[1] is None else int(match[1])
    stop = None if match[3] is None else int(match[3])
    if match[2] is None:
        return slice(start, None if start == -1 else start + 1)
    return slice(start, stop)


def load_dataset(
    path: str | Path,
    *,
    frames: slice | None = None,
    labels: str = "classes",
    ndim: int | None = None,
    label_file: str | Path | None = None,
) -> Dataset:
    """Load a dataset of 2D frames or 3D volumes, detecting its layout (see the module).

    Parameters
    ----------
    path : str or pathlib.Path
        A folder or a multi-frame file.
    frames : slice or None
        Which of the sorted frames or volumes to keep (cases in the paired layout);
        None keeps all.
    labels : {"classes", "foreground", "none"}
        ``"classes"``: every label value becomes a class, numbered in increasing order of
        value over the whole dataset; ``"foreground"``: class 1 wherever the label is not
        background (0); ``"none"``: ignore labels.
    ndim : {None, 2, 3}
        Spatial dimensions of one image; None infers them (a 3D TIFF or NumPy array is
        a stack of 2D frames unless its ``.npz`` key is ``vol`` or ``volume``).
    label_file : str or pathlib.Path or None
        Labels of a multi-frame image file, in place of any label array of an ``.npz``
        (not for folder layouts).

    Returns
    -------
    Dataset
        The selected images, normalised, with their class ids.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the layout, a file, a shape or an option is not valid; the message says
        which and how to fix it.
    """
    if labels not in LABEL_MODES:
        raise ValueError(f"labels must be one of {', '.join(LABEL_MODES)}; got {labels!r}")
    if ndim not in (None, 2, 3):
        raise ValueError(f"ndim must be 2 or 3 (or None to infer it); got {ndim!r}")
    path = Path(path)
    collection = _collect(path, ndim, None if label_file is None else Path(label_file))
    items = collection.items
    _check_common_shape(items)
    check_spatial_size(items[0].image.shape, f"the data {path}")
    use_labels = labels != "none" and items[0].label is not None
    class_values = _class_values(items, labels) if use_labels else []
    unit = "cases" if collection.group > 1 else ("frames", "volumes")[items[0].image.ndim - 2]
    chosen = _select(len(items) // collection.group, frames, path, unit)
    kept = [items[case * collection.group + k] for case in chosen for k in range(collection.group)]
    label_ids = None
    if use_labels:
        label_ids = np.stack([_class_ids(item.label, class_values, labels) for item in kept])
    options = [_count(len(items) // collection.group, unit), f"labels={labels}"]
    if frames is not None:
        options.insert(1, f"frames {_format_slice(frames)}")
    if ndim is not None:
        options.append(f"ndim={ndim}")
    if label_file is not None:
        options.append(f"label_file={label_file}")
    return Dataset(
        images=np.stack([normalise_intensity(item.image)[np.newaxis] for item in kept]),
        labels=label_ids,
        names=[item.name for item in kept],
        class_values=class_values,
        pairs=[(2 * i, 2 * i + 1) for i in range(len(chosen))] if collection.group > 1 else None,
        source=f"{collection.description}; {', '.join(options)}",
        spacing=collection.spacing,
    )


def load_image_file(
    path: str | Path, *, normalise: bool = True
) -> tuple[np.ndarray, Spacing | None]:
    """Load one 2D image or one 3D volume, normalised by default, as ``(1, *spatial)``.

    Colour images become grayscale; an ``.npz`` archive gives its image array (see
    :data:`IMAGE_KEYS`); a 3D array is one volume.

    Parameters
    ----------
    path : str or pathlib.Path
        An image file.
    normalise : bool
        Map the robust intensity range to ``[0, 1]`` (see
        :func:`src_training.data.normalise_intensity`); False keeps the file's values.

    Returns
    -------
    image : numpy.ndarray
        float32 ``(1, H, W)`` or ``(1, D, H, W)``.
    spacing : tuple of float or None
        Voxel size per spatial axis, where the file records it.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be read, is not 2D or 3D, or has NaN or inf values.
    """
    path = Path(path)
    image, spacing, _ = _read_image_array(path)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"{path} has shape {image.shape}; expected one 2D image or one 3D volume "
            "(load stacks and time series as a dataset)"
        )
    _check_finite(image, path)
    values = normalise_intensity(image) if normalise else image.astype(np.float32)
    return values[np.newaxis], _spatial_spacing(spacing, image.ndim)


def load_label_file(path: str | Path, *, image_shape: Sequence[int] | None = None) -> np.ndarray:
    """Load one label map with its original values (not remapped) as int64.

    Per-channel binary masks become class ids as described in the module. With
    ``image_shape`` the masks are recognised by having one axis more than the image
    (channels last or first); without it only a 4D NIfTI file counts as masks (channels
    last).

    Parameters
    ----------
    path : str or pathlib.Path
        A label image, or an ``.npz`` archive with a label array (see :data:`LABEL_KEYS`).
    image_shape : sequence of int or None
        The spatial shape of the image the labels belong to, checked if given.

    Returns
    -------
    numpy.ndarray
        int64 label values of spatial shape.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    ValueError
        If the file cannot be read, its values are not integers, or its shape does
        not match ``image_shape``.
    """
    path = Path(path)
    raw = _read_label_array(path)
    if image_shape is not None:
        return _label_map(raw, tuple(image_shape), path)
    if file_suffix(path) in NIFTI_SUFFIXES and raw.ndim == 4:
        return _label_map(raw, raw.shape[:-1], path)
    return _integer_labels(raw, path)


def resample(array: np.ndarray, shape: Sequence[int], order: int) -> np.ndarray:
    """Resample an array onto a grid of another shape, mapping corner onto corner.

    The first and last element along each axis land on the first and last element of
    the output (the physical extent is assumed equal; file affines are not used).

    Parameters
    ----------
    array : numpy.ndarray
        Spatial array, one axis per entry of ``shape``.
    shape : sequence of int
        Output shape.
    order : int
        Spline order: 0 (nearest, for labels; keeps the dtype) or 1 (linear, for
        images; computed in float32, or float64 for float64 input).

    Returns
    -------
    numpy.ndarray
        The resampled array (the input itself if the shape already matches).

    Raises
    ------
    ValueError
        If ``shape`` has a different number of axes than ``array``.
    """
    shape = tuple(int(size) for size in shape)
    if len(shape) != array.ndim:
        raise ValueError(f"cannot resample an array of shape {array.shape} to shape {shape}")
    if shape == array.shape:
        return array
    if order > 0 and array.dtype != np.float64:
        array = array.astype(np.float32)
    scale = [
        (size_in - 1) / max(size_out - 1, 1)
        for size_in, size_out in zip(array.shape, shape, strict=True)
    ]
    return ndimage.affine_transform(array, scale, output_shape=shape, order=order, mode="nearest")


def _collect(path: Path, ndim: int | None, label_file: Path | None) -> _Collection:
    if path.is_file():
        return _from_file(path, ndim, label_file)
    if not path.is_dir():
        raise FileNotFoundError(f"no such file or folder: {path}; check the path")
    if (path / "fixed_images").is_dir() or (path / "moving_images").is_dir():
        _refuse_label_file(label_file, path)
        return _from_paired(path, ndim)
    if (path / "images").is_dir():
        _refuse_label_file(label_file, path)
        return _from_folder(path, ndim)
    if is_sequence(path):
        _refuse_label_file(label_file, path)
        return _from_ctc(path)
    return _from_file(_single_data_file(path), ndim, label_file)


def _from_ctc(folder: Path) -> _Collection:
    sequence = read_sequence(folder)
    items = []
    for index, time in enumerate(sequence.times):
        image = sequence.frames[index].astype(np.float32)
        _check_finite(image, folder)
        label = None if sequence.labels is None else sequence.labels[index].astype(np.int64)
        items.append(_Item(f"t{time:03d}", image, label, folder))
    return _Collection(items, sequence.source, None)


def _refuse_label_file(label_file: Path | None, folder: Path) -> None:
    if label_file is not None:
        raise ValueError(
            f"label_file applies to a single image file, but {folder} is a folder layout "
            "whose labels are found by file name; leave label_file out"
        )


def _from_file(path: Path, ndim: int | None, label_file: Path | None) -> _Collection:
    image, spacing, key = _read_image_array(path)
    _check_finite(image, path)
    label = None
    label_origin = path
    if label_file is not None:
        label, label_origin = _read_label_array(label_file), label_file
    elif file_suffix(path) == NPZ_SUFFIX:
        label = _npz_labels(path)
    is_nifti = file_suffix(path) in NIFTI_SUFFIXES
    target = ndim or _default_ndim(image.ndim, is_nifti or key in VOLUME_KEYS)
    if image.ndim not in (target, target + 1):
        raise ValueError(
            f"{path} has shape {image.shape}; expected one {target}D image or a stack of "
            f"them with one more axis (pass ndim=2 or ndim=3 to choose)"
        )
    description = str(path) if key is None else f"{path} (array '{key}')"
    if image.ndim == target:
        label_map = None if label is None else _label_map(label, image.shape, label_origin)
        item = _Item(file_stem(path), image, label_map, path)
        return _Collection([item], description, _spatial_spacing(spacing, target))
    axis = image.ndim - 1 if is_nifti else 0
    images = np.moveaxis(image, axis, 0)
    labels = (
        [None] * len(images) if label is None else _split_labels(label, image, axis, label_origin)
    )
    items = [
        _Item(
            f"{file_stem(path)}[{index}]",
            frame,
            None if frame_label is None else _label_map(frame_label, frame.shape, label_origin),
            path,
        )
        for index, (frame, frame_label) in enumerate(zip(images, labels, strict=True))
    ]
    if spacing is not None:
        spacing = spacing[:axis] + spacing[axis + 1 :]
    return _Collection(items, description, _spatial_spacing(spacing, target))


def _default_ndim(array_ndim: int, is_volume: bool) -> int:
    if array_ndim == 3:
        return 3 if is_volume else 2
    return 3 if array_ndim >= 4 else 2


def _split_labels(
    label: np.ndarray, image: np.ndarray, axis: int, origin: Path
) -> list[np.ndarray]:
    if label.ndim < image.ndim or label.shape[axis] != image.shape[axis]:
        raise _shape_mismatch(label.shape, image.shape, origin)
    return list(np.moveaxis(label, axis, 0))


def _single_data_file(folder: Path) -> Path:
    files = sorted(
        (
            entry
            for entry in folder.iterdir()
            if entry.is_file()
            and not entry.name.startswith(".")
            and file_suffix(entry) in (*IMAGE_SUFFIXES, NPZ_SUFFIX)
        ),
        key=_natural_key,
    )
    candidates = [
        entry
        for entry in files
        if file_suffix(entry) != NPZ_SUFFIX or any(key in IMAGE_KEYS for key in npz_keys(entry))
    ]
    if len(candidates) > 1:
        names = ", ".join(entry.name for entry in candidates)
        raise ValueError(
            f"{folder} holds several image files ({names}); pass one of them as the path"
        )
    if not candidates:
        subfolders = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
        hint = f"; it has the subfolders {', '.join(subfolders)}: pass one" if subfolders else ""
        raise ValueError(
            f"found no images in {folder}: expected images/ (and labels/), moving_images/ "
            f"and fixed_images/, or one image file ({', '.join(IMAGE_SUFFIXES)} or "
            f"{NPZ_SUFFIX} with an image array){hint}"
        )
    return candidates[0]


def _from_folder(root: Path, ndim: int | None) -> _Collection:
    image_files = _files_by_stem(root / "images")
    label_dir = root / "labels"
    label_files = _match_stems(image_files, _files_by_stem(label_dir)) if label_dir.is_dir() else {}
    items = []
    spacings = set()
    for stem, image_path in image_files.items():
        image, spacing = _read_one_image(image_path, ndim)
        label_path = label_files.get(stem)
        label = None
        if label_path is not None:
            raw = read_image(label_path, as_label=True)[0]
            label = _label_map(raw, image.shape, label_path)
        items.append(_Item(stem, image, label, image_path))
        spacings.add(_spatial_spacing(spacing, image.ndim))
    layout = "images/ and labels/" if label_files else "images/"
    return _Collection(items, f"{root} ({layout})", spacings.pop() if len(spacings) == 1 else None)


def _from_paired(root: Path, ndim: int | None) -> _Collection:
    _both_or_neither(root, ("moving_images", "fixed_images"))
    moving = _files_by_stem(root / "moving_images")
    fixed = _match_stems(moving, _files_by_stem(root / "fixed_images"))
    label_files: list[dict[str, Path]] = [{}, {}]
    if _both_or_neither(root, ("moving_labels", "fixed_labels")):
        label_files = [
            _match_stems(moving, _files_by_stem(root / name))
            for name in ("moving_labels", "fixed_labels")
        ]
    raw_items = []
    for stem in moving:
        for role, files, labels in zip(
            ("moving", "fixed"), (moving, fixed), label_files, strict=True
        ):
            image, spacing = _read_one_image(files[stem], ndim)
            label = None
            if stem in labels:
                raw = read_image(labels[stem], as_label=True)[0]
                label = _label_map(raw, image.shape, labels[stem])
            raw_items.append((_Item(f"{stem}/{role}", image, label, files[stem]), spacing))
    grid_item, grid_spacing = raw_items[1]
    grid = grid_item.image.shape
    items = [_on_grid(item, grid) for item, _ in raw_items]
    return _Collection(
        items,
        f"{root} (paired moving_images/ and fixed_images/, resampled to {grid})",
        _spatial_spacing(grid_spacing, len(grid)),
        group=2,
    )


def _both_or_neither(root: Path, names: tuple[str, str]) -> bool:
    """Return whether both subfolders exist; refuse one without the other."""
    present = [(root / name).is_dir() for name in names]
    if any(present) and not all(present):
        raise ValueError(
            f"{root} has {names[present.index(True)]}/ but no {names[present.index(False)]}/; "
            "give both or neither"
        )
    return all(present)


def _on_grid(item: _Item, grid: tuple[int, ...]) -> _Item:
    if item.image.ndim != len(grid):
        raise ValueError(
            f"{item.origin} has shape {item.image.shape} but the first fixed image has shape "
            f"{grid}; moving and fixed images must have the same number of dimensions"
        )
    label = None if item.label is None else resample(item.label, grid, order=0)
    return _Item(item.name, resample(item.image, grid, order=1), label, item.origin)


def _read_one_image(path: Path, ndim: int | None) -> tuple[np.ndarray, Spacing | None]:
    image, spacing = read_image(path)
    if image.ndim not in (2, 3) or (ndim is not None and image.ndim != ndim):
        wanted = "2D image or one 3D volume" if ndim is None else f"{ndim}D image (ndim={ndim})"
        raise ValueError(f"{path} has shape {image.shape}; each file must hold one {wanted}")
    _check_finite(image, path)
    return image, spacing


def _files_by_stem(folder: Path) -> dict[str, Path]:
    files = sorted(
        (
            entry
            for entry in folder.iterdir()
            if entry.is_file()
            and not entry.name.startswith(".")
            and file_suffix(entry) in IMAGE_SUFFIXES
        ),
        key=_natural_key,
    )
    if not files:
        raise ValueError(f"no image files in {folder}; supported: {', '.join(IMAGE_SUFFIXES)}")
    by_stem: dict[str, Path] = {}
    for entry in files:
        other = by_stem.setdefault(file_stem(entry), entry)
        if other != entry:
            raise ValueError(
                f"{other.name} and {entry.name} in {folder} have the same name; keep one"
            )
    return by_stem


def _match_stems(reference: dict[str, Path], candidates: dict[str, Path]) -> dict[str, Path]:
    """Return ``candidates`` ordered like ``reference``; the stems must be the same."""
    for ours, theirs in ((reference, candidates), (candidates, reference)):
        for stem, path in ours.items():
            if stem not in theirs:
                folder = next(iter(theirs.values())).parent
                raise ValueError(
                    f"{path} has no matching file in {folder} (files are matched by name "
                    "without suffix)"
                )
    return {stem: candidates[stem] for stem in reference}


def _read_image_array(path: Path) -> tuple[np.ndarray, Spacing | None, str | None]:
    """Read an image file, or the image array of an ``.npz`` (returning its key)."""
    if file_suffix(path) != NPZ_SUFFIX:
        return (*read_image(path), None)
    arrays = read_npz(path)
    key = _first_key(arrays, IMAGE_KEYS, path, "image")
    return arrays[key], None, key


def _npz_labels(path: Path) -> np.ndarray | None:
    arrays = read_npz(path)
    return next((arrays[key] for key in LABEL_KEYS if key in arrays), None)


def _read_label_array(path: Path) -> np.ndarray:
    if file_suffix(path) != NPZ_SUFFIX:
        return read_image(path, as_label=True)[0]
    arrays = read_npz(path)
    return arrays[_first_key(arrays, LABEL_KEYS, path, "label")]


def _first_key(arrays: dict[str, np.ndarray], keys: Sequence[str], path: Path, kind: str) -> str:
    found = next((key for key in keys if key in arrays), None)
    if found is None:
        raise ValueError(
            f"{path} has no {kind} array: its keys are {', '.join(arrays) or '(none)'}; "
            f"expected one of {', '.join(keys)}"
        )
    return found


def _label_map(raw: np.ndarray, shape: tuple[int, ...], origin: Path) -> np.ndarray:
    """Return int64 label values on an image grid of ``shape``, masks turned into ids."""
    if raw.ndim == len(shape) + 1:
        raw = _masks_to_ids(raw, shape, origin)
    if raw.shape != shape:
        raise _shape_mismatch(raw.shape, shape, origin)
    return _integer_labels(raw, origin)


def _masks_to_ids(masks: np.ndarray, shape: tuple[int, ...], origin: Path) -> np.ndarray:
    if masks.shape[:-1] == shape:
        masks = np.moveaxis(masks, -1, 0)
    elif masks.shape[1:] != shape:
        raise _shape_mismatch(masks.shape, shape, origin)
    ids = np.zeros(shape, np.int64)
    for class_id, mask in enumerate(masks, start=1):
        ids[mask > 0.5] = class_id
    return ids


def _integer_labels(raw: np.ndarray, origin: Path) -> np.ndarray:
    if raw.dtype.kind == "f" and not (np.isfinite(raw).all() and (raw == np.round(raw)).all()):
        raise ValueError(
            f"label map {origin} has non-integer values; labels must be integer class or "
            "instance ids, or one binary mask per channel"
        )
    return raw.astype(np.int64)


def _shape_mismatch(
    label_shape: tuple[int, ...], image_shape: tuple[int, ...], origin: Path
) -> ValueError:
    return ValueError(
        f"label map {origin} has shape {label_shape} but its image has shape {image_shape}; "
        "labels must lie on the image's grid"
    )


def _check_finite(image: np.ndarray, origin: Path) -> None:
    if image.dtype.kind in "fc" and not np.isfinite(image).all():
        raise ValueError(
            f"the image {origin} contains NaN or inf values; replace them (e.g. with 0) first"
        )


def _check_common_shape(items: list[_Item]) -> None:
    first = items[0]
    for item in items[1:]:
        if item.image.shape != first.image.shape:
            raise ValueError(
                f"images have different shapes: {first.image.shape} ({first.origin}) and "
                f"{item.image.shape} ({item.origin}); resample or crop them to one shape"
            )


def _class_values(items: list[_Item], mode: str) -> list[int]:
    if mode == "foreground":
        return [BACKGROUND, 1]
    values = np.unique(np.concatenate([np.unique(item.label) for item in items]))
    return [int(value) for value in values]


def _class_ids(label: np.ndarray, class_values: list[int], mode: str) -> np.ndarray:
    if mode == "foreground":
        return (label != BACKGROUND).astype(np.int64)
    return np.searchsorted(np.asarray(class_values, np.int64), label).astype(np.int64)


def _select(count: int, frames: slice | None, path: Path, unit: str) -> list[int]:
    if frames is None:
        return list(range(count))
    chosen = list(range(count)[frames])
    bounds = (frames.start, frames.stop)
    text = _format_slice(frames)
    if not chosen:
        raise ValueError(
            f"frames {text} select nothing from the {_count(count, unit)} of {path}; "
            f"use a range within 0:{count}"
        )
    if any(bound is not None and not -count <= bound <= count for bound in bounds):
        raise ValueError(
            f"frames {text} reach outside the {_count(count, unit)} of {path}; "
            f"use a range within 0:{count}"
        )
    return chosen


def _count(count: int, unit: str) -> str:
    return f"{count} {unit.removesuffix('s') if count == 1 else unit}"


def _format_slice(frames: slice) -> str:
    text = f"{'' if frames.start is None else frames.start}:"
    text += "" if frames.stop is None else str(frames.stop)
    return text if frames.step is None else f"{text}:{frames.step}"


def _describe_indices(indices: list[int]) -> str:
    if indices and indices == list(range(indices[0], indices[-1] + 1)):
        return f"{indices[0]}:{indices[-1] + 1}"
    return "[" + ", ".join(str(index) for index in indices) + "]"


def _spatial_spacing(spacing: Spacing | None, ndim: int) -> Spacing | None:
    return None if spacing is None else spacing[:ndim]


def _natural_key(path: Path) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]
