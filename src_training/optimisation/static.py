"""Extract-then-warp: a pyramid whose levels hold feature stacks instead of images.

A metric with a ``static`` flag set and ``stage_maps``/``level_pair``/``compare`` methods
(:class:`src_training.metrics.feature_maps.FeatureMaps`) has the encoder stages of both
full-resolution images computed once (the moving image's by ``moving_stage_maps`` where
the metric has one: its own network); each level then holds both images' stacks on its
grid, and the optimiser warps the moving stack, so no network runs per iteration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from torch import Tensor, nn

from src_training.optimisation.pyramid import Level


def is_static(loss: nn.Module) -> bool:
    """Return whether a loss compares feature stacks computed once per level.

    Parameters
    ----------
    loss : nn.Module
        A metric's loss.

    Returns
    -------
    bool
        True for an extract-then-warp feature metric.
    """
    return bool(getattr(loss, "static", False)) and callable(getattr(loss, "level_pair", None))


def feature_pyramid(
    pyramid: list[Level], loss: nn.Module
) -> tuple[list[Level], Callable[[Tensor, Tensor], Tensor]]:
    """Replace every level's images by their feature stacks, computed once.

    Parameters
    ----------
    pyramid : list of Level
        The image pyramid, coarsest first.
    loss : nn.Module
        A metric for which :func:`is_static` holds.

    Returns
    -------
    tuple
        The pyramid of stacks, and the function comparing a warped and a fixed stack.
    """
    full = pyramid[-1]
    fixed_stages = loss.stage_maps(full.fixed)
    moving_stages = getattr(loss, "moving_stage_maps", loss.stage_maps)(full.moving)
    levels = []
    for level in pyramid:
        stages, raws = (fixed_stages, moving_stages), (level.fixed, level.moving)
        fixed, moving = loss.level_pair(stages, raws, full.shape)
        levels.append(replace(level, fixed=fixed, moving=moving))
    return levels, loss.compare
