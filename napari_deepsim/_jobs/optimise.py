"""Optimisation in the widgets' jobs: its settings, its metric, and progress per iteration.

The widgets describe an optimisation as an :class:`OptimiseSpec` of plain values (the
metric's name, its feature extractor, the iterations per level, a linear stage); the
job builds the engine's :class:`~src_training.engine.optimisation.Optimisation` from it
in the worker (loading an extractor takes time). Its progress is told by
:mod:`napari_deepsim._jobs.progress`. Nothing here touches Qt, and torch is imported
only inside functions.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from src_training.engine.options import OWN

if TYPE_CHECKING:
    from src_training.engine.optimisation import Optimisation, OptimisationSummary
    from src_training.engine.public import ModelFile

T = TypeVar("T")
HOW_TO_GET_EXTRACTOR = (
    "pick a built-in one, train one with 'Train feature extractor' or choose an extractor file"
)
OTHER_KIND = {"deepsim": "deepsim-ae", "deepsim-ae": "deepsim"}


@dataclass(frozen=True)
class OptimiseSpec:
    """An optimisation as the widgets choose it, in plain values.

    Attributes
    ----------
    metric : str
        A metric of the registry, or ``"own"`` (refining: the model's own metric).
    iterations : tuple of int
        Iterations per pyramid level, coarse to fine (one number: the same for 4 levels).
    linear : {None, "none", "rigid", "affine"}
        A linear stage before the deformable one; None takes the engine's default (an
        affine stage when refining, none from the identity).
    features : str or ModelFile, optional
        The feature extractor of deepsim and deepsim-ae (a file or one trained here).
    weights : str, optional
        The VGG16 weights file of vgg.
    refine : bool
        The optimisation starts from a model's field: the regulariser weight is the
        metric's λ times the core's refinement factor, as on the command line.
    stiffness : float
        Factor on the metric's default regulariser weight λ (1: the default).
    """

    metric: str
    iterations: tuple[int, ...]
    linear: str | None = None
    features: str | ModelFile | None = None
    weights: str | None = None
    refine: bool = False
    stiffness: float = 1.0

    @property
    def label(self) -> str:
        """The metric, with its extractor file's name (for rows and layer names)."""
        if self.metric == OWN:
            return "the model's own metric"
        if isinstance(self.features, str):
            return f"{self.metric} ({Path(self.features).stem})"
        return self.metric


def parse_iterations(text: str) -> tuple[int, ...]:
    """Read the iterations a user typed: one number, or one per level like ``100,50,25,5``.

    Parameters
    ----------
    text : str
        What was typed.

    Returns
    -------
    tuple of int
        At least one positive number.
    """
    try:
        counts = tuple(int(part) for part in text.replace(" ", "").split(","))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise ValueError(
            "the iterations must be one positive number or one per pyramid level, coarse to "
            f"fine, like 100,50,25,5; got {text!r}"
        )
    return counts


def _article(word: str) -> str:
    return "an" if word[:1] in "aeiou" else "a"


def _extractor(spec: OptimiseSpec) -> ModelFile:
    """Load the chosen extractor and check it is one of the kind the metric compares."""
    from src_training.engine.public import ModelFile, load_model, metric_spec

    source = spec.features
    assert source is not None
    name = "the chosen extractor" if isinstance(source, ModelFile) else str(source)
    model = source if isinstance(source, ModelFile) else load_model(source)
    if model.kind != "features":
        raise ValueError(
            f"{name} holds a {model.kind} model, not a feature extractor; {HOW_TO_GET_EXTRACTOR}"
        )
    wanted = str(metric_spec(spec.metric).extractor_kind)
    kind = str(model.network.kind)
    if kind != wanted:
        raise ValueError(
            f"the {spec.metric} metric compares the features of {_article(wanted)} {wanted} "
            f"extractor but {name} is {_article(kind)} {kind} extractor; choose the "
            f"{OTHER_KIND.get(spec.metric, 'deepsim-ae')} metric or another extractor"
        )
    return model


def optimisation(spec: OptimiseSpec, ndim: int, model: ModelFile | None = None) -> Optimisation:
    """Build the engine's optimisation for single-channel data of ``ndim`` dimensions.

    Parameters
    ----------
    spec : OptimiseSpec
        What the widget chose (already checked for what it can check without loading).
    ndim : int
        2 or 3.
    model : ModelFile, optional
        The model whose field is refined: the ``own`` metric is the one it was trained
        with, as the engine's :func:`~src_training.engine.optimisation.own_refinement`
        defines for the command line's ``--refine own``.

    Returns
    -------
    Optimisation
        The metric and the optimiser's settings.
    """
    from src_training.engine.metrics import registration_metric
    from src_training.engine.optimisation import (
        optimisation_config,
        own_refinement,
        user_optimisation,
    )

    config = optimisation_config(
        iterations=",".join(map(str, spec.iterations)),
        linear=spec.linear,
        refine=spec.refine,
        stiffness=spec.stiffness,
    )
    if spec.metric == OWN:
        if model is None or not spec.refine:
            raise ValueError("the model's own metric refines a model; choose method model + refine")
        return own_refinement(model, ndim=ndim, channels=1, config=config)

    metric = registration_metric(
        spec.metric,
        ndim=ndim,
        channels=1,
        features=None if spec.features is None else _extractor(spec),
        vgg_weights=spec.weights,
        how_to_get_extractor=HOW_TO_GET_EXTRACTOR,
    )
    return user_optimisation(metric, config, spec.refine)


def describe_optimisation(summary: OptimisationSummary, refined: bool) -> str:
    """Return one line on what the optimisation did (for the results text)."""
    start = "refining the model, " if refined else ""
    stopped = ", stopped" if summary.stopped else ""
    return (
        f"{start}{summary.iterations} iterations of {summary.metric}{stopped}, loss at full "
        f"resolution {summary.initial_loss:.4f} -> {summary.loss:.4f}"
    )
