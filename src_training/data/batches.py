"""Training batches cropped and augmented on the training device.

The CPU only draws the random numbers of each pair and slices arrays; the affine
augmentation, the label warping and the intensity noise of a whole batch run on the
training device, with one :func:`~src_training.spatial.transforms.sample` (one
``grid_sample``) for the images and one for the labels of the batch.

Random draws. Each pair's crop window and affine matrix come from
:func:`~src_training.data.augment.pair_generator` in the order
:func:`~src_training.data.augment.augment_pair` draws them (window, then matrix), so a
seed gives the same crops and transforms as the per-pair CPU path. The noise is a new
draw: a generator on the training device seeded by :func:`noise_seed` per pair, drawn
at the crop size (the CPU path drew it from the pair's generator before cropping). Its
distribution is the same; its values differ, and differ between devices.

Geometry. As in the per-pair path, the affine acts about the centre of a window
``crop // 4`` larger on each side than the crop (the "outer" window, so that rotating
brings in image content rather than the border), and the crop is the centre of the
warped window. Here only the crop's voxels are sampled: their positions in the outer
window are computed on the device and sampled from it directly, with the same border
padding; the result equals warping the whole window and cropping it, up to float
rounding of the sample positions.

Where the data lives. The dataset's arrays are moved to the device once when they fit
in half of its free memory (on the CPU they are used where they are); otherwise each
batch's windows are sliced on the CPU, pinned and copied without blocking.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from src_training.data.augment import AugmentConfig, crop_window, pair_generator, random_affine
from src_training.data.datasets import Dataset
from src_training.data.pairs import Pair
from src_training.runtime.memory import available_memory
from src_training.spatial.transforms import affine_displacement, identity_grid, sample

RESIDENT_FRACTION = 0.5  # largest share of the device's free memory the dataset may take


def noise_seed(seed: int, step: int, index: int) -> int:
    """Seed of the noise of pair ``index`` in the global batch of ``step``.

    Distinct from the pair generator's seed (which neighbouring pairs would share
    shifted by one) by a multiplicative hash into 63 bits.
    """
    base = (seed * 1_000_003 + step) * 4099 + index
    return (base * 6364136223846793005 + 1442695040888963407) % 2**63


def _label_dtype(num_classes: int) -> np.dtype:
    return np.dtype(np.uint8) if num_classes <= 256 else np.dtype(np.int32)


def dataset_bytes(data: Dataset) -> int:
    """Bytes the dataset's images and (compact) label ids take on a device."""
    labels = (
        0 if data.labels is None else data.labels.size * _label_dtype(data.num_classes).itemsize
    )
    return int(data.images.nbytes) + int(labels)


def fits_on_device(data: Dataset, device: torch.device) -> bool:
    """Whether the dataset's arrays should be moved to ``device`` once (see the module doc)."""
    if device.type == "cpu":
        return True
    free = available_memory(device)
    return free is not None and dataset_bytes(data) <= RESIDENT_FRACTION * free


class TrainingBatches:
    """Crops and augments batches of training pairs on the training device.

    Parameters
    ----------
    data : Dataset
        Training data.
    crop : int or None
        Side of the crops; None keeps whole images.
    augment : AugmentConfig
        Random affine and noise.
    seed : int
        The run's seed.
    device : torch.device or str
        The training device.

    Attributes
    ----------
    resident : bool
        Whether the dataset's arrays were moved to the device (or are on the CPU).
    """

    def __init__(
        self,
        data: Dataset,
        crop: int | None,
        augment: AugmentConfig,
        seed: int,
        device: torch.device | str,
    ) -> None:
        self.device = torch.device(device)
        self.crop = crop
        self.augment = augment
        self.seed = seed
        self.shape = tuple(int(n) for n in data.images.shape[2:])
        self.resident = fits_on_device(data, self.device)
        labels = None
        if data.labels is not None:
            labels = data.labels.astype(_label_dtype(data.num_classes), copy=False)
        self._images: Tensor | np.ndarray = data.images
        self._labels: Tensor | np.ndarray | None = labels
        if self.resident:
            self._images = torch.from_numpy(data.images).to(self.device)
            self._labels = None if labels is None else torch.from_numpy(labels).to(self.device)
        margin = crop // 4 if crop is not None and augment.geometric else 0
        self._outer_size = crop + 2 * margin if crop is not None else None

    def __call__(
        self, pairs: Sequence[Pair], indices: Sequence[int], step: int, n_images: int
    ) -> tuple[Tensor, Tensor | None]:
        """Crop and augment a batch: one window and one affine per pair, for its images.

        Parameters
        ----------
        pairs : sequence of (int, int)
            ``(moving, fixed)`` image indices; the first ``n_images`` of each are used.
        indices : sequence of int
            Each pair's position in the global batch (its random draws depend on it).
        step : int
            The step the batch is for.
        n_images : int
            1 (feature extractors) or 2 (registration pairs).

        Returns
        -------
        images : Tensor
            ``(n_images, B, C, *crop)`` float32 on the device.
        labels : Tensor or None
            ``(n_images, B, 1, *crop)`` int64 class ids on the device.
        """
        windows, matrices = [], []
        for index in indices:
            generator = pair_generator(self.seed, step, index)
            windows.append(crop_window(self.shape, self._outer_size, generator))
            if self.augment.geometric:
                matrices.append(random_affine(len(self.shape), self.augment, generator))
        images, labels = self._slices([list(p[:n_images]) for p in pairs], windows)
        outer = tuple(images.shape[2:])
        inner = tuple(min(self.crop, n) if self.crop is not None else n for n in outer)
        if matrices:
            positions = self._positions(torch.stack(matrices), outer, inner)
            images = sample(images, positions)
            if labels is not None:
                labels = sample(labels.float(), positions, interpolation="nearest")
        batch = len(pairs)
        images = images.unflatten(1, (n_images, -1)).transpose(0, 1)
        if self.augment.noise > 0:
            images = images + self.augment.noise * self._noise(images.shape, indices, step)
        if labels is not None:
            labels = labels.round() if labels.is_floating_point() else labels
            labels = labels.long().view(batch, n_images, 1, *inner).transpose(0, 1)
        return images.contiguous(), None if labels is None else labels.contiguous()

    def _slices(
        self, images_of_pairs: list[list[int]], windows: list[tuple[slice, ...]]
    ) -> tuple[Tensor, Tensor | None]:
        """Slice the pairs' windows: ``(B, n_images * C, *outer)`` and ``(B, n_images, *outer)``."""
        image_parts = [
            self._images[(idx, slice(None), *w)]
            for idx, w in zip(images_of_pairs, windows, strict=True)
        ]
        label_parts = None
        if self._labels is not None:
            label_parts = [
                self._labels[(idx, *w)] for idx, w in zip(images_of_pairs, windows, strict=True)
            ]
        if self.resident:
            images = torch.stack(image_parts).flatten(1, 2)
            labels = None if label_parts is None else torch.stack(label_parts)
            return images, labels
        images = self._to_device(np.stack(image_parts)).flatten(1, 2)
        labels = None if label_parts is None else self._to_device(np.stack(label_parts))
        return images, labels

    def _to_device(self, array: np.ndarray) -> Tensor:
        tensor = torch.from_numpy(array)
        if self.device.type == "cuda":
            tensor = tensor.pin_memory()
        return tensor.to(self.device, non_blocking=True)

    def _positions(
        self, matrices: Tensor, outer: tuple[int, ...], inner: tuple[int, ...]
    ) -> Tensor:
        """Where each crop voxel ``x`` samples the outer window: ``A (x + o - c) + c``.

        ``o`` is the crop's offset in the outer window and ``c`` the outer window's
        centre: the affine about the window's centre, seen from the crop's grid.
        """
        device = self.device
        matrices = matrices.to(device=device, dtype=torch.float32, non_blocking=True)
        offset = [float((n - m) // 2) for n, m in zip(outer, inner, strict=True)]
        centre = [(n - 1) / 2.0 - o for n, o in zip(outer, offset, strict=True)]
        shift = torch.tensor(offset, device=device)
        disp = affine_displacement(matrices, shift, inner, center=centre)
        return identity_grid(inner, device=device) + disp

    def _noise(self, shape: torch.Size, indices: Sequence[int], step: int) -> Tensor:
        """Draw standard normal noise of ``(n_images, B, C, *crop)`` per pair on the device."""
        draws = []
        for index in indices:
            generator = torch.Generator(device=self.device)
            generator.manual_seed(noise_seed(self.seed, step, index))
            draws.append(
                torch.randn((shape[0], *shape[2:]), generator=generator, device=self.device)
            )
        return torch.stack(draws, dim=1)
