"""The layouts users keep their data in, read into items (see :mod:`src_training.data.datasets`).

One function per layout: a folder of ``images/`` and ``labels/``, one multi-frame file,
a folder with one data file, the paired ``moving_images/``/``fixed_images/`` layout and
a Cell Tracking Challenge sequence; plus the checks and label conversions they share.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src_training.data.ctc import is_sequence, read_sequence
from src_training.data.placement import check_label_layouts, put_on_grid
from src_training.data.reading import (
    IMAGE_SUFFIXES,
    NPZ_SUFFIX,
    Spacing,
    file_stem,
    file_suffix,
    npz_keys,
    read_image,
    read_image_ras,
    read_npz,
)

IMAGE_KEYS = ("images", "image", "vol", "volume", "img", "x", "data")
LABEL_KEYS = ("labels", "label", "seg", "segmentation", "mask", "masks", "y")
VOLUME_KEYS = ("vol", "volume")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
BACKGROUND = 0


@dataclass
class Item:
    """One frame or volume before normalisation."""

    name: str
    image: np.ndarray
    label: np.ndarray | None  # raw label values, int64, on the image grid
    origin: Path


@dataclass
class Collection:
    """Everything a layout yields; ``group`` items are selected together (a case's pair)."""

    items: list[Item]
    description: str
    spacing: Spacing | None
    group: int = 1


def collect(path: Path, ndim: int | None, label_file: Path | None) -> Collection:
    """Read every item of the layout at ``path`` (the layouts of ``load_dataset``)."""
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


def _from_ctc(folder: Path) -> Collection:
    sequence = read_sequence(folder)
    items = []
    for index, time in enumerate(sequence.times):
        image = sequence.frames[index].astype(np.float32)
        check_finite(image, folder)
        label = None if sequence.labels is None else sequence.labels[index].astype(np.int64)
        items.append(Item(f"t{time:03d}", image, label, folder))
    return Collection(items, sequence.source, None)


def _refuse_label_file(label_file: Path | None, folder: Path) -> None:
    if label_file is not None:
        raise ValueError(
            f"label_file applies to a single image file, but {folder} is a folder layout "
            "whose labels are found by file name; leave label_file out"
        )


def _from_file(path: Path, ndim: int | None, label_file: Path | None) -> Collection:
    image, spacing, key = read_image_array(path)
    check_finite(image, path)
    label = None
    label_origin = path
    if label_file is not None:
        label, label_origin = read_label_array(label_file), label_file
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
        on_grid = None if label is None else label_map(label, image.shape, label_origin)
        item = Item(file_stem(path), image, on_grid, path)
        return Collection([item], description, spatial_spacing(spacing, target))
    axis = image.ndim - 1 if is_nifti else 0
    images = np.moveaxis(image, axis, 0)
    labels = (
        [None] * len(images) if label is None else _split_labels(label, image, axis, label_origin)
    )
    items = [
        Item(
            f"{file_stem(path)}[{index}]",
            frame,
            None if frame_label is None else label_map(frame_label, frame.shape, label_origin),
            path,
        )
        for index, (frame, frame_label) in enumerate(zip(images, labels, strict=True))
    ]
    if spacing is not None:
        spacing = spacing[:axis] + spacing[axis + 1 :]
    return Collection(items, description, spatial_spacing(spacing, target))


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


def _from_folder(root: Path, ndim: int | None) -> Collection:
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
            raw = read_image_ras(label_path, as_label=True)[0]
            label = label_map(raw, image.shape, label_path)
        items.append(Item(stem, image, label, image_path))
        spacings.add(spatial_spacing(spacing, image.ndim))
    layout = "images/ and labels/" if label_files else "images/"
    return Collection(items, f"{root} ({layout})", spacings.pop() if len(spacings) == 1 else None)


def _from_paired(root: Path, ndim: int | None) -> Collection:
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
        label_paths = [files[stem] for files in label_files if stem in files]
        raw_labels = [read_image_ras(path, as_label=True)[0] for path in label_paths]
        if raw_labels:
            check_label_layouts(raw_labels, label_paths)
        for index, (role, files) in enumerate((("moving", moving), ("fixed", fixed))):
            image, spacing = _read_one_image(files[stem], ndim)
            label = None
            if raw_labels:
                label = label_map(raw_labels[index], image.shape, label_paths[index])
            raw_items.append((Item(f"{stem}/{role}", image, label, files[stem]), spacing))
    grid = raw_items[1][0].image.shape
    spacing = spatial_spacing(raw_items[1][1], len(grid))
    items = [_on_grid(item, grid, item_spacing, spacing) for item, item_spacing in raw_items]
    known = all(item_spacing is not None for _, item_spacing in raw_items)
    placed = "by voxel size, centres aligned" if known else "corner to corner"
    return Collection(
        items,
        f"{root} (paired layout, resampled to {grid} {placed})",
        spacing,
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


def _on_grid(
    item: Item, grid: tuple[int, ...], spacing: Spacing | None, grid_spacing: Spacing | None
) -> Item:
    if item.image.ndim != len(grid):
        raise ValueError(
            f"{item.origin} has shape {item.image.shape} but the first fixed image has shape "
            f"{grid}; moving and fixed images must have the same number of dimensions"
        )
    size = spatial_spacing(spacing, len(grid))
    image, label = put_on_grid(item.image, item.label, grid, size, grid_spacing)
    return Item(item.name, image, label, item.origin)


def _read_one_image(path: Path, ndim: int | None) -> tuple[np.ndarray, Spacing | None]:
    image, spacing = read_image_ras(path)
    if image.ndim not in (2, 3) or (ndim is not None and image.ndim != ndim):
        wanted = "2D image or one 3D volume" if ndim is None else f"{ndim}D image (ndim={ndim})"
        raise ValueError(f"{path} has shape {image.shape}; each file must hold one {wanted}")
    check_finite(image, path)
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


def read_image_array(path: Path) -> tuple[np.ndarray, Spacing | None, str | None]:
    """Read an image file, or the image array of an ``.npz`` (returning its key)."""
    if file_suffix(path) != NPZ_SUFFIX:
        return (*read_image(path), None)
    arrays = read_npz(path)
    key = _first_key(arrays, IMAGE_KEYS, path, "image")
    return arrays[key], None, key


def _npz_labels(path: Path) -> np.ndarray | None:
    arrays = read_npz(path)
    return next((arrays[key] for key in LABEL_KEYS if key in arrays), None)


def read_label_array(path: Path) -> np.ndarray:
    """Read a label array from an image file or an ``.npz`` archive's label key."""
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


def label_map(raw: np.ndarray, shape: tuple[int, ...], origin: Path) -> np.ndarray:
    """Return int64 label values on an image grid of ``shape``, masks turned into ids."""
    if raw.ndim == len(shape) + 1:
        raw = _masks_to_ids(raw, shape, origin)
    if raw.shape != shape:
        raise _shape_mismatch(raw.shape, shape, origin)
    return integer_labels(raw, origin)


def _masks_to_ids(masks: np.ndarray, shape: tuple[int, ...], origin: Path) -> np.ndarray:
    if masks.shape[:-1] == shape:
        masks = np.moveaxis(masks, -1, 0)
    elif masks.shape[1:] != shape:
        raise _shape_mismatch(masks.shape, shape, origin)
    ids = np.zeros(shape, np.int64)
    for class_id, mask in enumerate(masks, start=1):
        ids[mask > 0.5] = class_id
    return ids


def integer_labels(raw: np.ndarray, origin: Path) -> np.ndarray:
    """Return labels as int64, refusing non-integer values."""
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


def check_finite(image: np.ndarray, origin: Path) -> None:
    """Refuse an image with NaN or inf values, naming the file."""
    if image.dtype.kind in "fc" and not np.isfinite(image).all():
        raise ValueError(
            f"the image {origin} contains NaN or inf values; replace them (e.g. with 0) first"
        )


def check_common_shape(items: list[Item]) -> None:
    """Refuse items of different shapes, naming the first that differs."""
    first = items[0]
    for item in items[1:]:
        if item.image.shape != first.image.shape:
            raise ValueError(
                f"images have different shapes: {first.image.shape} ({first.origin}) and "
                f"{item.image.shape} ({item.origin}); resample or crop them to one shape"
            )


def _natural_key(path: Path) -> list[str | int]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def spatial_spacing(spacing: Spacing | None, ndim: int) -> Spacing | None:
    """Return the voxel size per spatial axis, or None where it is not known."""
    return None if spacing is None else spacing[:ndim]
