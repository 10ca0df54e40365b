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
   :func:`src_training.data.ctc.read_sequence`.

Files are sorted by name, numbers in names compared as numbers (``t2`` before ``t10``).
Every image is normalised on its own with :func:`src_training.data.normalise.normalise_intensity`.
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

from src_training.data.layouts import (
    BACKGROUND,
    NIFTI_SUFFIXES,
    Item,
    check_common_shape,
    check_finite,
    collect,
    integer_labels,
    label_map,
    read_image_array,
    read_label_array,
    spatial_spacing,
)
from src_training.data.normalise import check_spatial_size, normalise_intensity
from src_training.data.reading import Spacing, file_suffix

LABEL_MODES = ("classes", "foreground", "none")
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

    @property
    def labelled(self) -> bool:
        """Whether the labels hold two classes or more, so that a Dice can be scored.

        Frames whose labels are one class (nothing painted on them, as the frames a
        napari user left unlabelled) score a Dice of 1 whatever the field: none counts.
        """
        return self.labels is not None and bool((self.labels != self.labels.flat[0]).any())

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
    collection = collect(path, ndim, None if label_file is None else Path(label_file))
    items = collection.items
    check_common_shape(items)
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
        :func:`src_training.data.normalise.normalise_intensity`); False keeps the file's values.

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
    image, spacing, _ = read_image_array(path)
    if image.ndim not in (2, 3):
        raise ValueError(
            f"{path} has shape {image.shape}; expected one 2D image or one 3D volume "
            "(load stacks and time series as a dataset)"
        )
    check_finite(image, path)
    values = normalise_intensity(image) if normalise else image.astype(np.float32)
    return values[np.newaxis], spatial_spacing(spacing, image.ndim)


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
    raw = read_label_array(path)
    if image_shape is not None:
        return label_map(raw, tuple(image_shape), path)
    if file_suffix(path) in NIFTI_SUFFIXES and raw.ndim == 4:
        return label_map(raw, raw.shape[:-1], path)
    return integer_labels(raw, path)


def _class_values(items: list[Item], mode: str) -> list[int]:
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
