"""Per-pair instance optimisation of a registration: the headless core.

:func:`optimise` finds the transformation that warps a moving image onto a fixed one
by gradient descent on ``metric(warped, fixed) + lam * R(u)``: an optional rigid or
affine stage, then a B-spline (or smoothed dense) deformation, coarse to fine on an image
pyramid, optionally diffeomorphic. It yields an :class:`OptimiseEvent` per iteration
and returns an :class:`OptimiseResult`; :func:`optimise_pair` runs it to the end.
Settings live in :class:`OptimiseConfig`.
"""

from src_training.optimisation.config import (
    AFFINE_KINDS,
    TRANSFORMS,
    OptimiseConfig,
    OptimiseEvent,
    OptimiseResult,
)
from src_training.optimisation.optimise import optimise, optimise_pair

__all__ = [
    "AFFINE_KINDS",
    "TRANSFORMS",
    "OptimiseConfig",
    "OptimiseEvent",
    "OptimiseResult",
    "optimise",
    "optimise_pair",
]
