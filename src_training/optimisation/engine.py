"""The public entry points of instance optimisation: check the inputs, then run.

:func:`optimise` checks everything a user can get wrong when it is called (shapes, the
pyramid's depth, labels, memory) and returns a generator that runs the optimisation
(:class:`src_training.optimisation.run.Run`) as it is iterated, yielding progress events.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import replace

import torch
from torch import nn

from src_training.metrics import METRICS
from src_training.optimisation.config import (
    BENDING_SCALE,
    DEFAULT_LAMBDA,
    OptimiseConfig,
    OptimiseEvent,
    OptimiseResult,
)
from src_training.optimisation.pyramid import ArrayLike, build_pyramid, check_images, max_levels
from src_training.optimisation.run import Run


def optimise(
    fixed: ArrayLike,
    moving: ArrayLike,
    metric: nn.Module,
    config: OptimiseConfig | None = None,
    *,
    needs_labels: bool | None = None,
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
    metric : nn.Module
        A similarity loss from :func:`src_training.metrics.get_metric`, called as
        ``metric(warped, fixed, **extra)``; it is moved to ``device``.
    config : OptimiseConfig, optional
        Settings; the defaults when omitted.
    needs_labels : bool, optional
        Whether ``metric`` needs ``warped_labels`` and ``fixed_labels`` (``ncc-sup``):
        the moving labels, one-hot and warped linearly, and the fixed ones. None asks
        the metric registry (False for a metric it does not know).
    labels : tuple, optional
        ``(moving_labels, fixed_labels)`` integer class ids, ``(1, 1, *spatial)`` or
        ``spatial``; used only when ``needs_labels``.
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
    if needs_labels is None:
        name = _metric_name(metric)
        needs_labels = name is not None and METRICS[name].needs_labels
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
    metric.to(device)
    return Run(pyramid, metric, config, stop, device).run()


def optimise_pair(
    fixed: ArrayLike,
    moving: ArrayLike,
    metric: nn.Module,
    config: OptimiseConfig | None = None,
    *,
    needs_labels: bool | None = None,
    labels: tuple[ArrayLike, ArrayLike] | None = None,
    init: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> OptimiseResult:
    """Run :func:`optimise` to the end, ignoring its events.

    Parameters
    ----------
    fixed, moving, metric, config, needs_labels, labels, init, mask, stop, device
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
        needs_labels=needs_labels,
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


def _metric_name(metric: nn.Module) -> str | None:
    """Registry name of a metric built by :func:`src_training.metrics.get_metric`."""
    return next((name for name, spec in METRICS.items() if type(metric) is spec.factory), None)


def _resolve(config: OptimiseConfig, metric: nn.Module, shape: tuple[int, ...]) -> OptimiseConfig:
    """Fill in the automatic settings: the number of levels and the regulariser weight."""
    levels = config.levels or min(config.wanted_levels(), max_levels(shape))
    lam = config.lam
    if lam is None:
        name = _metric_name(metric)
        if name is None:
            raise ValueError(
                f"no default regulariser weight for a metric of type {type(metric).__name__}; "
                "set lam in the OptimiseConfig"
            )
        lam = DEFAULT_LAMBDA[name] * (BENDING_SCALE if config.regulariser == "bending" else 1.0)
    return replace(config, levels=levels, lam=lam, iterations=config.level_iterations(levels))
