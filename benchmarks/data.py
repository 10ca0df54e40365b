"""The real images the benchmarks run on, read from ``../shared/data`` (never copied here)."""

from __future__ import annotations

from functools import cache

import nibabel as nib
import numpy as np
from scipy import ndimage

from benchmarks.common import DATA
from src_training.data.datasets import Dataset, load_dataset
from src_training.data.normalise import normalise_intensity

MNI_T1 = "mni152_2009/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@cache
def isbi() -> Dataset:
    """ISBI 2012 EM: 30 sections of 512x512 with membrane/cell labels."""
    return load_dataset(DATA / "isbi2012_em")


@cache
def t98g() -> Dataset:
    """T98G phase contrast: 24 frames of 1022x1024 with cell foreground labels."""
    return load_dataset(DATA / "t98g_phase", labels="foreground")


@cache
def brain_pair() -> tuple[np.ndarray, np.ndarray]:
    """``(moving, fixed)`` as ``(1, 1, 160, 192, 224)`` float32, both normalised.

    Moving: the skull-stripped T1 brain of ``brain_mri_3d``. Fixed: the MNI152 2009 T1
    template resampled (trilinear) onto the same 160x192x224 grid: a second real volume
    of that size for timing; the two are not in the same orientation, so no Dice.
    """
    moving = np.load(DATA / "brain_mri_3d" / "test_scan.npz")["vol"]
    template = np.asarray(nib.load(DATA / MNI_T1).dataobj, dtype=np.float32)
    zoom = [n / m for n, m in zip(moving.shape, template.shape, strict=True)]
    fixed = ndimage.zoom(template, zoom, order=1, grid_mode=True, mode="nearest")
    return tuple(normalise_intensity(v)[None, None] for v in (moving, fixed))  # type: ignore[return-value]
