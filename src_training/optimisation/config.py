"""Settings, progress events and results of per-pair instance optimisation."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor

from src_training.metrics.regularisers import REGULARISERS

TRANSFORMS = ("bspline", "dense", "none")
"""Parameterisations of the deformable stage (see :class:`OptimiseConfig`)."""

AFFINE_KINDS = ("rigid", "affine")
"""Linear stages that can run before the deformable one."""

MIN_LEVEL_SIZE = 8
"""Fewest voxels along any axis of the coarsest pyramid level."""

DEFAULT_LAMBDA = {
    "mse": 0.25,
    "ncc": 1.0,
    "ncc-sup": 1.0,
    "nmi": 0.25,
    "mind": 1.0,
    "vgg": 1.0,
    "deepsim": 1.0,
    "deepsim-ae": 1.0,
    "deepsim-seg": 1.0,
    "deepsim-seg+ncc": 2.0,
    "deepsim-maps": 1.0,
    "deepsim+mse": 0.25,
    "deepsim+ncc": 1.0,
}
"""Weight of the diffusion regulariser per metric when :attr:`OptimiseConfig.lam` is None.

Chosen on ISBI 2012 sections 25-29 (4 consecutive pairs, the default settings otherwise)
as the best Dice with under 0.5 % folding among 1/4, 1 and 4 (mse also 1/10 and 1/2):
mse 0.803, ncc 0.804, nmi 0.811, mind 0.741. The others were not measured (no labels
left to tune ncc-sup on; no trained feature extractor) and take 1, as for NCC, whose
loss range the cosine losses share.
"""

DEEPSIM_OPTIMISED = "deepsim-seg+ncc"
"""The metric that runs when a user picks ``deepsim`` to optimise a field from the identity.

NCC plus the extractor's class probabilities compared once per pyramid level. On the
validation pairs (docs/optimisation.md) it beat the feature-map combination
``deepsim+ncc`` on ISBI 20:25 (Dice 0.841 / 0.825 against 0.830 / 0.814, clean / σ = 0.3)
and on T98G 16:20 clean (0.960 against 0.954), and tied it at σ = 0.3 (0.944 against 0.945).
A user who chose encoder stages (``--feature-levels``) gets :data:`DEEPSIM_STAGES_OPTIMISED`
on them instead: the class probabilities have no stages. Refining a model's field keeps
the cosine of the warped image's features: ``em-2d`` refined on the ISBI test pairs reached
Dice 0.779 (0.38 % folding) with it against 0.759 (0.56 %) with ``deepsim+ncc``.
"""

DEEPSIM_STAGES_OPTIMISED = "deepsim+ncc"
"""What optimises from the identity when a user picks ``deepsim`` with chosen encoder stages.

The feature maps of those stages, compared once per pyramid level, plus NCC: the best
stage-based variant on the ISBI validation pairs 20:25 (0.830 / 0.813 clean / σ = 0.3,
against 0.828 / 0.807 for ``deepsim+mse`` and NCC's 0.820 / 0.703).
"""

REFINE_ITERATIONS = (20, 10, 5)
"""Default iterations per level (3 levels) when the optimisation refines a model's field."""

REFINE_LINEAR = "affine"
"""Default linear stage when refining a model's field.

The model's field misses large shifts that an affine stage before the refinement
corrects: em-2d refined with its own metric on the ISBI test pairs reached Dice 0.779
with it and stayed at the model's 0.735 without (section 26 onto 25: 0.785 against
0.644); phase-contrast-2d on T98G 0.953 against 0.950 (docs/optimisation.md).
"""

REFINE_LAM_SCALE = 1.5
"""Default factor on the metric's λ when refining a model's field.

The model's field already holds the large displacements, so a short 3-level schedule
with a stiffer regulariser refines it: on ISBI 2012 sections 25-29 the built-in em-2d
refined with DeepSim (affine stage first) reached Dice 0.778 with 0.40 % folding, against
0.775 / 0.59 % at λ × 1 and 0.764 / 0.31 % with the 4-level schedule (50,25,10,3) at
λ × 2; on T98G frames 20-23 (not used to choose) 0.953 with 0.03 % folding, elastix 0.949.
"""

LINEAR_SKIPPED_LEVELS = 2
"""Finest pyramid levels the linear stage skips when a deformable stage follows.

The linear stage then runs on levels of at most 1/4 resolution (always on the coarsest):
its few parameters are found there, and the deformable stage corrects what is left at
the finer levels. Measured against the linear stage on every level (one thread, the
CPU shared): on ISBI 2012 sections 25-29 the built-in em-2d refined with DeepSim reached
Dice 0.7785 against 0.7788 at 3.2 instead of 8.4 s per pair, NCC from the identity
0.8041 against 0.8047 at 2.5 instead of 3.9 s; on T98G frames 20-23 the same Dice to
4 digits (0.9532 and 0.9509) at 11.9 instead of 28.4 s and 7.8 instead of 15.0 s.
"""

BENDING_SCALE = 10.0
"""The bending energy's default weight over the diffusion's (equal Dice and folding on ISBI)."""


@dataclass(frozen=True)
class OptimiseConfig:
    """How to optimise a transformation between one fixed and one moving image.

    Attributes
    ----------
    transform : {"bspline", "dense", "none"}
        Parameterisation of the deformable stage: a cubic B-spline control grid every
        ``grid_spacing`` voxels of each pyramid level, a dense field on the level's grid
        smoothed by a Gaussian of ``smoothing`` voxels, or none (the linear stage alone).
    grid_spacing : int
        B-spline control-point spacing in voxels of each level (so in full-resolution
        voxels it halves from one level to the next, as elastix's default schedule).
    smoothing : float
        Gaussian sigma (level voxels) applied to the dense parameterisation (on ISBI, 1
        and 2 voxels let 2.5-9 % of the pixels fold; 4 kept it under 0.5 %).
    diffeomorphic : bool
        Optimise a stationary velocity field and integrate it by scaling and squaring.
    integration_steps : int
        Squarings of the diffeomorphic integration.
    levels : int or None
        Pyramid levels; level ``l`` holds the images downsampled ``2**(levels - 1 - l)``
        times, the last level the full resolution. None: as many as ``iterations`` lists
        (4 for a single number), fewer when the image is too small for them.
    iterations : int or sequence of int
        Iterations per level: one number for all, or one per level, coarse to fine (when
        fewer levels run than it lists, the coarsest entries are dropped).
    lr : float
        Adam learning rate of the deformable parameters (voxels of the level per step;
        0.25, 0.5 and 1 reached the same Dice on ISBI, 0.25 is slower, 1 folds a bit more).
    regulariser : {"diffusion", "bending"}
        Penalty on the deformable displacement (at each level, in its voxels).
    lam : float or None
        Weight of the regulariser; None takes the metric's entry of
        :data:`DEFAULT_LAMBDA` (tuned on ISBI 2012 for this optimiser, not for training),
        times :data:`BENDING_SCALE` for the bending energy.
    affine : {None, "rigid", "affine"}
        Optional linear stage optimised first, on the same pyramid (its coarse levels
        only when a deformable stage follows: :meth:`linear_levels`); the deformable
        stage is composed with it.
    affine_iterations : int
        Iterations per level of the linear stage.
    affine_lr : float
        Adam learning rate of the linear stage, in units of the matrix entries and of
        half the image size for the translation.
    patience : int
        End a level once the loss has not improved by ``tolerance`` (relative) for this
        many iterations.
    tolerance : float
        Relative improvement that counts for ``patience``.
    seed : int
        Seed of torch's random number generators during the run (the optimisation itself
        draws nothing; a metric may), restored afterwards.
    lam_scale : float
        Factor on the metric's default λ when ``lam`` is None (:data:`REFINE_LAM_SCALE`
        for a refinement).
    """

    transform: str = "bspline"
    grid_spacing: int = 8
    smoothing: float = 4.0
    diffeomorphic: bool = False
    integration_steps: int = 7
    levels: int | None = None
    iterations: int | tuple[int, ...] = (100, 50, 25, 5)
    lr: float = 0.5
    regulariser: str = "diffusion"
    lam: float | None = None
    affine: str | None = None
    affine_iterations: int = 50
    affine_lr: float = 0.01
    patience: int = 10
    tolerance: float = 1e-4
    seed: int = 0
    lam_scale: float = 1.0

    def __post_init__(self) -> None:
        _choice("transform", self.transform, TRANSFORMS)
        _choice("regulariser", self.regulariser, tuple(REGULARISERS))
        if self.affine is not None:
            _choice("affine", self.affine, AFFINE_KINDS)
        elif self.transform == "none":
            raise ValueError("transform='none' leaves nothing to optimise; set affine as well")
        if self.levels is not None:
            _at_least("levels", self.levels, 1, "use 1 for no pyramid, or None for automatic")
        if isinstance(self.iterations, Sequence):
            if not self.iterations:
                raise ValueError("iterations lists no level; give at least one number")
            for count in self.iterations:
                _at_least("iterations", count, 1, "every level needs at least one")
            object.__setattr__(self, "iterations", tuple(self.iterations))
            if self.levels is not None and len(self.iterations) < self.levels:
                raise ValueError(
                    f"iterations lists {len(self.iterations)} levels but levels is "
                    f"{self.levels}; give one number per level or a single number"
                )
        else:
            _at_least("iterations", self.iterations, 1, "use 1 or more per level")
        _at_least("grid_spacing", self.grid_spacing, 1, "use e.g. 8 voxels")
        _at_least("integration_steps", self.integration_steps, 0, "use e.g. 7")
        _at_least("affine_iterations", self.affine_iterations, 1, "or set affine=None")
        _at_least("patience", self.patience, 1, "use e.g. 10 iterations")
        _positive("lr", self.lr)
        _positive("lam_scale", self.lam_scale)
        _positive("affine_lr", self.affine_lr)
        if self.lam is not None and not (math.isfinite(self.lam) and self.lam >= 0):
            raise ValueError(f"lam must be a finite number >= 0, got {self.lam}")
        if not (math.isfinite(self.smoothing) and self.smoothing >= 0):
            raise ValueError(f"smoothing must be >= 0 voxels (0 for none), got {self.smoothing}")
        if not (math.isfinite(self.tolerance) and self.tolerance >= 0):
            raise ValueError(f"tolerance must be >= 0, got {self.tolerance}")

    def wanted_levels(self) -> int:
        """Return the number of levels asked for: ``levels``, else as ``iterations`` lists.

        Returns
        -------
        int
            At least 1.
        """
        if self.levels is not None:
            return self.levels
        return len(self.iterations) if isinstance(self.iterations, tuple) else 4

    def linear_levels(self, levels: int) -> int:
        """Return how many of ``levels`` levels, coarsest first, the linear stage runs on.

        Parameters
        ----------
        levels : int
            Levels actually run.

        Returns
        -------
        int
            0 without a linear stage; every level when it is the only stage; else all but
            the :data:`LINEAR_SKIPPED_LEVELS` finest, at least one.
        """
        if self.affine is None:
            return 0
        if self.transform == "none":
            return levels
        return max(1, levels - LINEAR_SKIPPED_LEVELS)

    def level_iterations(self, levels: int) -> tuple[int, ...]:
        """Return the iterations of each of ``levels`` levels, coarse to fine.

        Parameters
        ----------
        levels : int
            Levels actually run (at most :meth:`wanted_levels`).

        Returns
        -------
        tuple of int
            ``levels`` numbers: the finest entries of ``iterations``.
        """
        if isinstance(self.iterations, tuple):
            return self.iterations[len(self.iterations) - levels :]
        return (self.iterations,) * levels

    def to_json(self) -> dict[str, Any]:
        """Return the settings as plain JSON values.

        Returns
        -------
        dict
            Field names to values.
        """
        values = asdict(self)
        if isinstance(values["iterations"], tuple):
            values["iterations"] = list(values["iterations"])
        return values


def _choice(name: str, value: object, options: Sequence[str]) -> None:
    if value not in options:
        raise ValueError(f"{name} must be one of {', '.join(options)}; got {value!r}")


def _at_least(name: str, value: object, low: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}; {fix}")


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive number, got {value}")


@dataclass(frozen=True)
class OptimiseEvent:
    """One optimisation iteration finished.

    Attributes
    ----------
    stage : {"affine", "deformable"}
        Which stage ran it.
    level : int
        Pyramid level, counted from 0 (coarsest) to ``levels - 1`` (full resolution).
    iteration : int
        Iteration within the level, from 1.
    loss : float
        Loss of the transformation the iteration started from, on this level.
    terms : dict
        Named parts of the loss: ``similarity`` and ``regularisation`` (unweighted).
    seconds : float
        Wall time since the run started.
    """

    stage: str
    level: int
    iteration: int
    loss: float
    terms: dict[str, float]
    seconds: float


@dataclass(frozen=True)
class OptimiseResult:
    """The transformation found for one pair.

    Attributes
    ----------
    displacement : Tensor
        ``(1, ndim, *spatial)`` float32 on the CPU, in full-resolution voxels, the linear
        stage composed in: ``warped(x) = moving(x + displacement(x))``.
    affine : Tensor or None
        ``(ndim + 1, ndim + 1)`` float64 homogeneous matrix of the linear stage, mapping a
        fixed voxel index to the moving position it samples (array axis order), or None.
    loss : float
        Loss of the returned transformation at full resolution.
    initial_loss : float
        Loss of the starting transformation at full resolution.
    terms : dict
        ``similarity`` and ``regularisation`` of the returned transformation.
    iterations : int
        Iterations run, all stages and levels together.
    seconds : float
        Wall time of the whole run.
    stopped : bool
        Whether the ``stop`` callback ended the run early.
    config : OptimiseConfig
        The settings used, with ``levels``, ``iterations`` and ``lam`` resolved.
    """

    displacement: Tensor
    affine: Tensor | None
    loss: float
    initial_loss: float
    terms: dict[str, float]
    iterations: int
    seconds: float
    stopped: bool
    config: OptimiseConfig
