"""ANTs SyN through ANTsPy: the classical deformable registration users judge tools by.

ANTsPy (``antspyx``) is an optional dependency (``pip install 'napari-deepsim[baselines]'``),
imported only when the baseline is built. Images go to ANTs with spacing 1, origin 0 and
the identity direction, and ANTsPy keeps numpy's index order (its physical axis ``i`` is
array axis ``i``, unlike ITK's ``image_view_from_array``), so the composed displacement
field ANTs writes for ``antsApplyTransforms`` (a pull-back ``d(p) = T(p) - p`` in physical
units) is this project's displacement with no reordering: ``u[i] = d[..., i]``.

The registration is ANTsPy's own ``ants.registration(type_of_transform='SyN')``: an initial
translation aligning the centres of mass, an affine stage (Mattes mutual information,
regular sampling of 20 % of the voxels with random jitter) and SyN with the chosen
metric. The sampling draws random numbers, so a fixed ANTs ``--random-seed`` is passed
(``ants.config``, the mechanism of ``ants.set_ants_deterministic``); ITK uses
``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` threads, else one per CPU.
"""

from __future__ import annotations

import os
import time
from importlib.metadata import version
from tempfile import TemporaryDirectory
from types import ModuleType
from typing import Any

import numpy as np
import torch

from src_training.evaluation.scoring import Registered

MISSING_ANTS = "antspyx is not installed; pip install 'napari-deepsim[baselines]'"
ANTS_METRICS = {"cc": "CC", "mi": "mattes"}
"""``--ants-metric`` choices and ANTsPy's ``syn_metric`` name of each."""
SCHEDULE = (
    "centre-of-mass translation, Affine[0.25] 2100x1200x1200x0 (Mattes MI, 20 % regular "
    "sampling), SyN[0.2,3,0] 40x20x0 at shrink 4x2x1, smoothing 2x1x0"
)
"""ANTsPy 0.6's ``SyN`` stages at its defaults."""


def _ants() -> ModuleType:
    try:
        import ants
    except ImportError:
        raise ValueError(MISSING_ANTS) from None
    return ants


def ants_threads() -> int:
    """Return the number of threads ITK (and so ANTs) registers with.

    Returns
    -------
    int
        ``ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS`` if set, else the number of CPUs.
    """
    return int(os.environ.get("ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS") or os.cpu_count() or 1)


class AntsSyN:
    """ANTsPy's default SyN registration (translation + affine + SyN) as a method.

    Calling it registers one pair (see :data:`src_training.evaluation.scoring.Method`):
    the fixed and moving images (channels averaged) go to ANTs as float32, the moving
    labels are warped by ANTs' ``apply_transforms`` with nearest-neighbour interpolation
    (value 0 outside the image), and the forward transforms, composed by ANTs into one
    displacement field, are returned in this project's convention. ``seconds`` is the wall
    time of ``ants.registration`` alone.

    Parameters
    ----------
    metric : str
        ``cc`` (local cross-correlation, same-modality data) or ``mi`` (Mattes mutual
        information, multimodal data): SyN's similarity, ANTsPy's ``syn_metric``.
    seed : int
        Non-zero seed of ANTs' random sampling.

    Raises
    ------
    ValueError
        If antspyx is not installed.
    """

    def __init__(self, metric: str = "cc", seed: int = 1) -> None:
        self.ants = _ants()
        self.metric = metric
        self.seed = seed

    @property
    def description(self) -> str:
        """The row as a report states it: version, transform, metric, schedule, seed, threads."""
        return (
            f"ANTsPy {version('antspyx')}, type_of_transform='SyN', syn_metric="
            f"'{ANTS_METRICS[self.metric]}' (syn_sampling 32), {SCHEDULE}; random seed "
            f"{self.seed}, {ants_threads()} ITK thread(s)"
        )

    def _image(self, array: np.ndarray) -> Any:
        return self.ants.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    def __call__(
        self, moving: np.ndarray, fixed: np.ndarray, moving_labels: np.ndarray
    ) -> Registered:
        """Register ``moving`` (``(C, *spatial)``) onto ``fixed`` and warp ``moving_labels``."""
        ants = self.ants
        fixed_image = self._image(fixed.mean(axis=0))
        moving_image = self._image(moving.mean(axis=0))
        previous = ants.config._random_seed
        ants.config._random_seed = self.seed
        with TemporaryDirectory(prefix="deepsim-ants-") as scratch:
            try:
                start = time.perf_counter()
                found = ants.registration(
                    fixed_image,
                    moving_image,
                    type_of_transform="SyN",
                    syn_metric=ANTS_METRICS[self.metric],
                    outprefix=f"{scratch}/",
                )
                seconds = time.perf_counter() - start
            finally:
                ants.config._random_seed = previous
            transforms = found["fwdtransforms"]
            composed = ants.apply_transforms(
                fixed_image, moving_image, transforms, compose=f"{scratch}/composed"
            )
            disp = np.moveaxis(ants.image_read(composed).numpy(), -1, 0)
            warped = ants.apply_transforms(
                fixed_image,
                self._image(moving_labels),
                transforms,
                interpolator="nearestNeighbor",
                defaultvalue=0,
            )
        labels = np.rint(warped.numpy()).astype(moving_labels.dtype)
        return Registered(
            torch.from_numpy(np.ascontiguousarray(disp, np.float32))[None], seconds, labels
        )
