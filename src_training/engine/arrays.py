"""The engine for front ends that hold arrays in memory, as the napari widgets do.

Layers arrive as arrays of their own intensities, not as dataset folders: these
functions build a training dataset from them (the class mapping of
:func:`src_training.data.datasets.load_dataset`), score the identity on it, register the
frames of a stack as read (normalising each frame, warping the original intensities),
apply a field to more arrays, and tell how many pyramid levels an optimisation will run
on images of a shape. They never touch Qt and run in a worker thread.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING, Any

import numpy as np

from src_training.data.augment import AugmentConfig
from src_training.data.datasets import Dataset
from src_training.data.normalise import normalise_intensity
from src_training.data.pairs import consecutive_pairs
from src_training.engine.series import register_stack
from src_training.metrics.dice import mean_dice
from src_training.optimisation.pyramid import max_levels

if TYPE_CHECKING:
    from src_training.engine.optimisation import Optimisation
    from src_training.engine.series import SeriesRegistration
    from src_training.networks.modelio import ModelFile


def dataset_from_arrays(
    images: np.ndarray,
    labels: np.ndarray | None,
    source: str,
    *,
    volume: bool = False,
    labelled_only: bool = False,
) -> Dataset:
    """Build a :class:`Dataset` from an image array and its label array.

    Parameters
    ----------
    images : numpy.ndarray
        ``(H, W)``, ``(T, H, W)``, ``(D, H, W)`` (with ``volume``) or ``(T, D, H, W)``.
    labels : numpy.ndarray or None
        Integer labels of the same shape; every label value becomes a class, numbered in
        increasing order of value.
    source : str
        Where the data came from (recorded in the model file).
    volume : bool
        A 3D array is one volume rather than a 2D+t stack.
    labelled_only : bool
        Keep only the frames where some label is painted.

    Returns
    -------
    Dataset
        Normalised frames, class-id labels and names.
    """
    images = np.asarray(images)
    if not np.issubdtype(images.dtype, np.number) or not np.isfinite(images).all():
        raise ValueError("the image layer must hold finite numbers")
    if images.ndim < 2 or images.ndim > 4 or (volume and images.ndim != 3):
        raise ValueError(
            f"the image layer is {images.ndim}D; use a 2D image, a 2D+t stack, a 3D volume or "
            "a 3D+t stack"
        )
    frames = images[None, None] if images.ndim == 2 or volume else images[:, None]
    class_ids = None
    class_values: list[int] = []
    if labels is not None:
        label_frames = _label_frames(np.asarray(labels), images.shape, volume)
        if labelled_only:
            keep = [i for i, frame in enumerate(label_frames) if frame.any()]
            if not keep:
                raise ValueError("no labels are painted; paint some classes on a few frames")
            frames, label_frames = frames[keep], label_frames[keep]
        class_values = [int(v) for v in np.unique(label_frames)]
        class_ids = np.searchsorted(class_values, label_frames).astype(np.int64)
    normalised = np.stack([normalise_intensity(f.astype(np.float32)) for f in frames])
    return Dataset(
        images=normalised.astype(np.float32),
        labels=class_ids,
        names=[f"frame{t}" for t in range(len(normalised))],
        class_values=class_values,
        pairs=None,
        source=source,
    )


def _label_frames(labels: np.ndarray, shape: tuple[int, ...], volume: bool) -> np.ndarray:
    """Check a label array against its images and return it as frames."""
    if labels.shape != shape:
        raise ValueError(
            f"the labels have shape {labels.shape} but the image {shape}; choose the image's labels"
        )
    if not np.issubdtype(labels.dtype, np.integer) and labels.dtype != bool:
        raise ValueError("the labels layer must hold integer label ids")
    return labels[None] if labels.ndim == 2 or volume else labels


def identity_dice(val: Dataset | None) -> float | None:
    """Return the validation Dice of no registration: the score a model has to beat.

    Parameters
    ----------
    val : Dataset or None
        Validation frames; their consecutive pairs (or fixed pairs) are scored as the
        trainer scores them.

    Returns
    -------
    float or None
        The mean Dice of the unmoved label maps; None without labelled validation data
        (no labels, or labels of one class: nothing painted on the validation frames).
    """
    if val is None or not val.labelled:
        return None
    pairs = val.pairs if val.pairs is not None else consecutive_pairs(len(val))
    return float(np.mean([mean_dice(val.labels[m], val.labels[f]) for m, f in pairs]))


def normalised_frames(frames: np.ndarray) -> np.ndarray:
    """Normalise every frame of a ``(T, *spatial)`` stack on its own: ``(T, 1, *spatial)``.

    Parameters
    ----------
    frames : numpy.ndarray
        The frames as read.

    Returns
    -------
    numpy.ndarray
        float32 frames with one channel, as the registration models read them.
    """
    return np.stack([normalise_intensity(frame) for frame in frames])[:, None]


def register_frames(
    model: ModelFile | None, frames: np.ndarray, reference: int | str, **options: Any
) -> Generator[Any, None, SeriesRegistration]:
    """Register the frames of a ``(T, *spatial)`` stack as read to one reference frame.

    Each frame is normalised on its own for the registration, and the original
    intensities are warped.

    Parameters
    ----------
    model : ModelFile or None
        A registration model; None optimises every frame from the identity.
    frames : numpy.ndarray
        The frames as read, one channel.
    reference : int or "previous"
        As for :func:`~src_training.engine.series.register_stack`.
    **options
        The other options of :func:`~src_training.engine.series.register_stack`
        (``device``, ``labels``, ``what``, ``batch_size``, ``optimisation``, ``stop``).

    Returns
    -------
    generator
        Yields the progress of ``register_stack`` and returns its
        :class:`~src_training.engine.series.SeriesRegistration`.
    """
    raw = np.asarray(frames, np.float32)[:, None]
    normalised = normalised_frames(frames)
    return (yield from register_stack(model, normalised, reference, raw_frames=raw, **options))


def warp_with_field(
    data: np.ndarray, displacement: np.ndarray, *, labels: bool = False, stack: bool = False
) -> np.ndarray:
    """Warp an array with a displacement field of its grid.

    Parameters
    ----------
    data : numpy.ndarray
        An image or label map ``(*spatial)``, or with ``stack`` a stack ``(T, *spatial)``.
    displacement : numpy.ndarray
        ``(ndim, *spatial)`` or ``(1, ndim, *spatial)``; with ``stack``
        ``(T, ndim, *spatial)``, frame ``t`` warped by field ``t``.
    labels : bool
        Nearest-neighbour interpolation keeping the labels' dtype (linear otherwise).
    stack : bool
        ``data`` is a stack warped frame by frame.

    Returns
    -------
    numpy.ndarray
        The warped array, of ``data``'s shape.
    """
    import torch

    from src_training.registration.inference import warp_array, warp_label_array

    disp = torch.as_tensor(np.asarray(displacement, np.float32))
    if stack:
        return np.stack(
            [warp_with_field(frame, disp[t : t + 1], labels=labels) for t, frame in enumerate(data)]
        )
    disp = disp if disp.ndim == data.ndim + 2 else disp[None]
    if labels:
        return warp_label_array(data, disp)
    return warp_array(np.asarray(data, np.float32)[None], disp)[0]


def planned_levels(optimisation: Optimisation, shape: tuple[int, ...]) -> int:
    """Return the pyramid levels an optimisation runs on images of ``shape``.

    Parameters
    ----------
    optimisation : Optimisation
        Its settings ask for levels (or leave them to the image size).
    shape : tuple of int
        Spatial shape of the images.

    Returns
    -------
    int
        The levels, at most as many as the images allow.
    """
    config = optimisation.config
    return config.levels or min(config.wanted_levels(), max_levels(shape))


def training_augment(noise: float = 0.0) -> AugmentConfig:
    """Return the widgets' training augmentation: the default random affine, and ``noise``.

    Parameters
    ----------
    noise : float
        Std of the Gaussian noise added to each image of a crop (0 for none; the
        self-supervised extractor's :data:`~src_training.engine.training.SELF_SUPERVISED_NOISE`).

    Returns
    -------
    AugmentConfig
        For :class:`~src_training.training.trainer.TrainConfig`'s ``augment``.
    """
    return AugmentConfig(noise=noise)
