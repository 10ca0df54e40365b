"""Per-pair optimisation as the front ends use it: from identity, or refining a model.

An :class:`Optimisation` is a metric (any of the registry, DeepSim with its extractor
included) and the optimiser's settings. :func:`run_optimisation` optimises one pair of
normalised images, :func:`optimisation_method` makes an evaluation row of it (alone,
or refining each model's prediction), and :func:`optimisation_config` reads the
options a user types. :func:`own_refinement` is what refining a model's field means by
default, on the command line (``--refine own``) and in napari alike.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from src_training.engine.training import training_metric
from src_training.evaluation.scoring import Method, Registered
from src_training.metrics.registry import MetricInputs, Similarity, build_metric
from src_training.networks.modelio import ModelFile
from src_training.optimisation import (
    OptimiseConfig,
    OptimiseEvent,
    OptimiseResult,
    optimise,
    optimise_pair,
)
from src_training.optimisation.config import (
    DEEPSIM_OPTIMISED,
    DEEPSIM_STAGES_OPTIMISED,
    MIN_LEVEL_SIZE,
    REFINE_ITERATIONS,
    REFINE_LAM_SCALE,
    REFINE_LINEAR,
)
from src_training.optimisation.pyramid import max_levels
from src_training.registration.inference import predict


@dataclass(frozen=True)
class Optimisation:
    """How to optimise a pair: the metric and the optimiser's settings.

    Attributes
    ----------
    metric : Similarity
        The similarity the optimiser minimises (with the regulariser).
    config : OptimiseConfig
        Pyramid, iterations, parameterisation, λ, optional linear stage.
    """

    metric: Similarity
    config: OptimiseConfig

    @property
    def name(self) -> str:
        """The metric's name, for rows and messages."""
        return self.metric.name


@dataclass(frozen=True)
class OptimisationSummary:
    """What an optimisation did, for the lines and tables a user reads.

    Attributes
    ----------
    metric : str
        The metric optimised.
    iterations : int
        Iterations run (all levels and pairs together).
    initial_loss, loss : float
        Loss of the starting and of the final field (the mean over pairs of a series).
    stopped : bool
        Whether a stop request ended it early.
    """

    metric: str
    iterations: int
    initial_loss: float
    loss: float
    stopped: bool = False

    @classmethod
    def of(cls, metric: str, results: list[OptimiseResult]) -> OptimisationSummary:
        """Summarise the results of one or more pairs."""
        return cls(
            metric,
            sum(r.iterations for r in results),
            float(np.mean([r.initial_loss for r in results])),
            float(np.mean([r.loss for r in results])),
            any(r.stopped for r in results),
        )


def user_optimisation(
    metric: Similarity, config: OptimiseConfig, refine: bool = False
) -> Optimisation:
    """Pair a metric a user picked with settings; DeepSim runs as its measured best variant.

    A user who picks ``deepsim`` to optimise a field from the identity gets
    :data:`~src_training.optimisation.config.DEEPSIM_OPTIMISED` on the same extractor (its
    class probabilities and NCC), or
    :data:`~src_training.optimisation.config.DEEPSIM_STAGES_OPTIMISED` where they chose
    encoder stages; both compare what the network computed once per pyramid level, which
    beat the warp-then-extract cosine of training on the held-out pairs of
    docs/optimisation.md. Refining a model's field keeps that cosine, which refines better
    (see :data:`~src_training.optimisation.config.DEEPSIM_OPTIMISED`).

    Parameters
    ----------
    metric : Similarity
        The metric picked.
    config : OptimiseConfig
        The optimiser's settings.
    refine : bool
        Whether the optimisation refines a model's field.

    Returns
    -------
    Optimisation
        The optimisation that runs.
    """
    if metric.name != "deepsim" or refine:
        return Optimisation(metric, config)
    loss = metric.loss
    if loss.levels is None:
        winner = build_metric(DEEPSIM_OPTIMISED, MetricInputs(loss.network))
    else:
        inputs = MetricInputs(loss.network, feature_levels=loss.levels)
        winner = build_metric(DEEPSIM_STAGES_OPTIMISED, inputs)
    winner.metadata.update(metric.metadata)
    return Optimisation(winner, config)


def own_refinement(
    model: ModelFile,
    *,
    ndim: int,
    channels: int,
    config: OptimiseConfig | None = None,
    vgg_weights: str | None = None,
) -> Optimisation:
    """Return the default refinement of a model's field: its own metric and schedule.

    What :data:`~src_training.engine.options.OWN` names: the metric the model was
    trained with (``ncc`` for ``ncc-sup``; a DeepSim model with its extractor), with the
    refinement's settings: by default an affine stage
    (:data:`~src_training.optimisation.config.REFINE_LINEAR`), then
    :data:`~src_training.optimisation.config.REFINE_ITERATIONS` at the metric's λ
    times :data:`~src_training.optimisation.config.REFINE_LAM_SCALE`. On the ISBI test
    pairs em-2d refined so reached Dice 0.779 against 0.735 for the model alone
    (docs/optimisation.md).

    Parameters
    ----------
    model : ModelFile
        The registration model whose field is refined.
    ndim, channels : int
        The data the metric compares.
    config : OptimiseConfig, optional
        The optimiser's settings (a refinement's, from :func:`optimisation_config` with
        ``refine=True``); None takes the refinement's defaults.
    vgg_weights : str, optional
        The VGG16 weights file, for a model trained with vgg.

    Returns
    -------
    Optimisation
        The refinement.
    """
    metric = training_metric(model, ndim=ndim, channels=channels, vgg_weights=vgg_weights)
    chosen = optimisation_config(refine=True) if config is None else config
    return user_optimisation(metric, chosen, refine=True)


def optimisation_config(
    *,
    iterations: str | None = None,
    levels: int | None = None,
    linear: str | None = None,
    lam: float | None = None,
    transform: str = "bspline",
    diffeomorphic: bool = False,
    seed: int = 0,
    refine: bool = False,
    stiffness: float = 1.0,
) -> OptimiseConfig:
    """Build the optimiser's settings from typed options (defaults where None).

    Parameters
    ----------
    iterations : str, optional
        Iterations per level: one number (``"50"``) or one per level, coarse to fine
        (``"100,50,25,5"``).
    levels : int, optional
        Pyramid levels; automatic when None.
    linear : {None, "none", "rigid", "affine"}
        A linear stage before the deformable one; None takes the default: none from
        the identity, :data:`~src_training.optimisation.config.REFINE_LINEAR` when
        refining.
    lam : float, optional
        Regulariser weight; the metric's optimisation default when None.
    transform : {"bspline", "dense"}
        Parameterisation of the deformable stage.
    diffeomorphic : bool
        Optimise a velocity field and integrate it.
    seed : int
        Seed of the run.
    refine : bool
        Whether the run refines a model's field: then the defaults are
        :data:`~src_training.optimisation.config.REFINE_ITERATIONS` (3 levels) and the
        metric's λ times :data:`~src_training.optimisation.config.REFINE_LAM_SCALE`.
    stiffness : float
        Factor on the metric's default λ when ``lam`` is None (the widgets' smoothness
        control; 1 keeps the default).

    Returns
    -------
    OptimiseConfig
        Validated settings.
    """
    if linear is None and refine:
        linear = REFINE_LINEAR
    options: dict[str, object] = {
        "levels": levels,
        "affine": None if linear == "none" else linear,
        "lam": lam,
        "transform": transform,
        "diffeomorphic": diffeomorphic,
        "seed": seed,
        "lam_scale": stiffness,
    }
    default = REFINE_ITERATIONS if refine else OptimiseConfig().iterations
    assert isinstance(default, tuple)
    if refine:
        options["lam_scale"] = REFINE_LAM_SCALE * stiffness
        options["iterations"] = default
    if iterations is None and levels is not None:
        options["iterations"] = (default[0],) * max(0, levels - len(default)) + default[-levels:]
    if iterations is not None:
        try:
            counts = tuple(int(part) for part in iterations.split(","))
        except ValueError:
            raise ValueError(
                f"--iterations must be a number or numbers per level like 100,50,25,5; "
                f"got {iterations!r}"
            ) from None
        options["iterations"] = counts[0] if len(counts) == 1 else counts
    try:
        return OptimiseConfig(**options)  # type: ignore[arg-type]
    except ValueError as err:
        raise ValueError(f"--{str(err).replace('_', '-')}") from None


def _label_ids(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both label maps as class ids over the union of their values."""
    values = np.union1d(np.unique(moving), np.unique(fixed))
    return np.searchsorted(values, moving), np.searchsorted(values, fixed)


def run_optimisation(
    optimisation: Optimisation,
    fixed: np.ndarray,
    moving: np.ndarray,
    *,
    init: Tensor | None = None,
    moving_labels: np.ndarray | None = None,
    fixed_labels: np.ndarray | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> Generator[OptimiseEvent, None, OptimiseResult]:
    """Optimise the field that warps ``moving`` onto ``fixed`` (checked when called).

    Parameters
    ----------
    optimisation : Optimisation
        Metric and settings.
    fixed, moving : numpy.ndarray
        ``(C, *spatial)`` normalised images of one shape.
    init : Tensor, optional
        ``(1, ndim, *spatial)`` starting field (a model's prediction, to refine).
    moving_labels, fixed_labels : numpy.ndarray, optional
        Label maps, for a metric that needs them.
    stop : callable, optional
        Polled every iteration; True ends the run with the best field so far.
    device : torch.device or str
        Where to optimise.

    Returns
    -------
    Generator
        Yields an :class:`OptimiseEvent` per iteration, returns the
        :class:`OptimiseResult`.
    """
    labels = None
    if optimisation.metric.needs_labels:
        if moving_labels is None or fixed_labels is None:
            raise ValueError(
                f"the {optimisation.name} metric compares labels: give the moving and the "
                "fixed image's labels, or choose a metric without labels"
            )
        labels = _label_ids(moving_labels, fixed_labels)
    return optimise(
        fixed[None],
        moving[None],
        optimisation.metric,
        optimisation.config,
        labels=labels,
        init=init,
        stop=stop,
        device=device,
    )


def optimisation_method(
    optimisation: Optimisation,
    model: ModelFile | None = None,
    device: torch.device | str = "cpu",
    precision: str = "fp32",
) -> Method:
    """Make an evaluation method that optimises each pair (refining ``model`` if given).

    Parameters
    ----------
    optimisation : Optimisation
        Metric and settings; a metric that needs labels cannot be evaluated this way
        (it would see the fixed labels the evaluation scores against).
    model : ModelFile, optional
        A registration model whose prediction is the start; the identity otherwise.
    device : torch.device or str
        Where to run.
    precision : str
        Of the model's prediction, as for
        :func:`~src_training.registration.inference.predict`; the optimisation runs
        in float32.

    Returns
    -------
    Method
        Timed over the prediction and the optimisation together.
    """
    if optimisation.metric.needs_labels:
        raise ValueError(
            f"the {optimisation.name} metric needs the fixed labels, which the evaluation "
            "scores against; evaluate the optimisation with a metric without labels"
        )

    def register(moving: np.ndarray, fixed: np.ndarray, moving_labels: np.ndarray) -> Registered:
        start = time.perf_counter()
        init = None
        if model is not None:
            init = predict(model.network, moving[None], fixed[None], device, precision=precision)
        result = optimise_pair(
            fixed[None],
            moving[None],
            optimisation.metric,
            optimisation.config,
            init=init,
            device=device,
        )
        return Registered(result.displacement, time.perf_counter() - start)

    return register


def check_levels(optimisation: Optimisation, shape: tuple[int, ...]) -> None:
    """Refuse a pyramid deeper than an image of ``shape`` allows, before any work.

    Parameters
    ----------
    optimisation : Optimisation
        Its ``config.levels`` is checked (automatic levels always fit).
    shape : tuple of int
        Spatial shape of the images.
    """
    levels = optimisation.config.levels
    deepest = max_levels(shape)
    if levels is not None and levels > deepest:
        raise ValueError(
            f"--levels {levels} is too deep for images of {shape} (each level halves them, "
            f"down to {MIN_LEVEL_SIZE} voxels); use --levels {deepest} or fewer"
        )
