"""The public entry points of instance optimisation: check the inputs, then run.

:func:`optimise` checks everything a user can get wrong when it is called (shapes, the
pyramid's depth, labels, memory) and returns a generator that runs the optimisation
(:class:`src_training.optimisation.run.Run`) as it is iterated, yielding progress events.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace

import torch

from src_training.metrics.registry import Similarity
from src_training.optimisation.config import (
    BENDING_SCALE,
    DEFAULT_LAMBDA,
    OptimiseConfig,
    OptimiseEvent,
    OptimiseResult,
)
from src_training.optimisation.pyramid import ArrayLike, build_pyramid, check_images, max_levels
from src_training.optimisation.run import Run
from src_training.optimisation.static import feature_pyramid, is_static


def optimise(
    fixed: ArrayLike,
    moving: ArrayLike,
    metric: Similarity,
    config: OptimiseConfig | None = None,
    *,
    labels: tuple[ArrayLike, ArrayLike] | None = None,
    init: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> Generator[OptimiseEvent, None, OptimiseResult]:
    """Optimise the transformation that warps ``moving`` onto ``fixed``.

    The inputs are checked (and the memory estimated) when this function is called; the
    optimisation runs as the returned generator is iterated. It yields an
    :class:`OptimiseEvent` per iteration and returns an :class:`OptimiseResult`
    (``result = yield from optimise(...)``, or see :func:`optimise_pair`).

    Parameters
    ----------
    fixed, moving : Tensor or numpy.ndarray
        ``(1, C, H, W)`` or ``(1, C, D, H, W)`` images of equal shape, normalised as
        ``metric`` expects.
    metric : Similarity
        A similarity metric from :func:`src_training.metrics.build_metric`, called as
        ``metric(warped, fixed, **extra)``; its loss is moved to ``device``. Its name
        picks the default regulariser weight; a metric that needs labels (``ncc-sup``)
        compares the moving labels, one-hot and warped linearly, with the fixed ones.
    config : OptimiseConfig, optional
        Settings; the defaults when omitted.
    labels : tuple, optional
        ``(moving_labels, fixed_labels)`` integer class ids, ``(1, 1, *spatial)`` or
        ``spatial``; used only when the metric needs labels.
    init : Tensor or numpy.ndarray, optional
        ``(1, ndim, *spatial)`` starting displacement (e.g. a network's prediction, to
        refine); the identity when omitted.
    mask : Tensor or numpy.ndarray, optional
        Fixed-image mask, ``(1, 1, *spatial)`` or ``spatial``, boolean or weights in
        ``[0, 1]``: the similarity counts only where it is non-zero.
    stop : callable, optional
        Polled before every iteration; when it returns True the run ends with the best
        transformation found so far.
    device : torch.device or str
        Where to optimise (``cpu``, ``cuda``, ``mps``).

    Returns
    -------
    Generator
        Yields :class:`OptimiseEvent`, returns :class:`OptimiseResult`.

    Raises
    ------
    ValueError
        If an input has the wrong shape or values, the pyramid is too deep for the image,
        labels are missing, or the job would not fit in the device's memory.
    """
    config = config or OptimiseConfig()
    device = torch.device(device)
    fixed, moving = check_images(fixed, moving)
    config = _resolve(config, metric, tuple(fixed.shape[2:]))
    needs_labels = metric.needs_labels
    if needs_labels and labels is None:
        raise ValueError(
            "the metric needs label images: pass labels=(moving_labels, fixed_labels) or "
            "choose a metric without labels"
        )
    pyramid = build_pyramid(
        fixed,
        moving,
        config.levels,
        labels=labels if needs_labels else None,
        init=init,
        mask=mask,
        device=device,
    )
    metric.loss.to(device)
    similarity = None
    if is_static(metric.loss):
        pyramid, similarity = feature_pyramid(pyramid, metric.loss)
    return Run(pyramid, metric, config, stop, device, similarity).run()


def optimise_pair(
    fixed: ArrayLike,
    moving: ArrayLike,
    metric: Similarity,
    config: OptimiseConfig | None = None,
    *,
    labels: tuple[ArrayLike, ArrayLike] | None = None,
    init: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> OptimiseResult:
    """Run :func:`optimise` to the end, ignoring its events.

    Parameters
    ----------
    fixed, moving, metric, config, labels, init, mask, stop, device
        As for :func:`optimise`.

    Returns
    -------
    OptimiseResult
        The transformation found.
    """
    events = optimise(
        fixed,
        moving,
        metric,
        config,
        labels=labels,
        init=init,
        mask=mask,
        stop=stop,
        device=device,
    )
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


def _resolve(config: OptimiseConfig, metric: Similarity, shape: tuple[int, ...]) -> OptimiseConfig:
    """Fill in the automatic settings: the number of levels and the regulariser weight."""
    levels = config.levels or min(config.wanted_levels(), max_levels(shape))
    lam = config.lam
    if lam is None:
        bending = BENDING_SCALE if config.regulariser == "bending" else 1.0
        lam = DEFAULT_LAMBDA[metric.name] * bending * config.lam_scale
    return replace(config, levels=levels, lam=lam, iterations=config.level_iterations(levels))
