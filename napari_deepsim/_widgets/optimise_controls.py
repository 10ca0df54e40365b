"""The controls of an optimisation, shared by the Register and Compare widgets.

:class:`OptimisePicker` holds the metric picker (every metric of the registry, and for
the Register widget's refinement the model's own metric, its default), the feature
extractor (a built-in model's, one trained in this viewer, or a file) and the VGG16
weights, shown only for a metric that needs them, the iterations per pyramid level, an
optional rigid or affine stage and the field's smoothness (a factor on the metric's
λ). :meth:`OptimisePicker.spec` checks what can be checked without loading anything
and returns the :class:`~napari_deepsim._jobs.optimise.OptimiseSpec` a job takes;
messages name the controls, never command-line options.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, FloatSpinBox, LineEdit

from napari_deepsim._jobs.optimise import HOW_TO_GET_EXTRACTOR, OptimiseSpec, parse_iterations
from napari_deepsim._state.models import builtin_choices, trained_models
from napari_deepsim._widgets.controls import extractor_pickers
from napari_deepsim._widgets.tips import WEIGHTS_TIP
from src_training.engine.options import OWN
from src_training.engine.public import resolve

if TYPE_CHECKING:
    from src_training.engine.public import MetricSpec, ModelFile

ITERATIONS = "100,50,25,5"  # the optimiser's default: 4 levels, coarse to fine
REFINE_ITERATIONS = "20,10,5"  # refining a model's field: the core's REFINE_ITERATIONS
REFINE_LINEAR = "affine"  # refining a model's field: the core's REFINE_LINEAR
LINEAR = ("none", "rigid", "affine")
DEFAULT_METRIC = "ncc"
OWN_CHOICE = "own (the model's metric)"


def metric_specs() -> dict[str, MetricSpec]:
    """Return the metric registry, importing torch only when a widget needs it."""
    from src_training.engine.public import METRICS

    return METRICS


def check_labels(spec: OptimiseSpec, stack: bool, labelled: bool) -> None:
    """Refuse a metric that compares labels where it would have none.

    Parameters
    ----------
    spec : OptimiseSpec
        The optimisation chosen.
    stack : bool
        The frames of a stack are registered (they are optimised without labels).
    labelled : bool
        The fixed and the moving labels were chosen.
    """
    if spec.metric == OWN or not metric_specs()[spec.metric].needs_labels:
        return  # a model trained with ncc-sup is refined with ncc
    if stack:
        raise ValueError(
            f"the {spec.metric} metric compares labels, which the frames of a stack are "
            "optimised without; choose a metric without labels"
        )
    if not labelled:
        raise ValueError(
            f"the {spec.metric} metric compares labels; choose the moving and the fixed "
            "labels, or a metric without labels"
        )


class OptimisePicker:
    """Metric, extractor, weights, iterations and linear stage of an optimisation.

    The owning widget puts :attr:`widgets` into its layout, then calls
    :meth:`update_visibility`, and calls :meth:`extractors_changed` when the models
    trained in this viewer change.

    Parameters
    ----------
    own : bool
        Offer, when refining a model's field, the metric the model was trained with
        (``own``, then the default: the command line's ``--refine own``).
    """

    def __init__(self, own: bool = False) -> None:
        self._own = own
        self._shown = True
        self._refine = False
        self.metric = ComboBox(label="metric", choices=self._metrics, value=DEFAULT_METRIC)
        self.metric.tooltip = "The similarity the optimisation maximises for this pair" + (
            "; own: the one the model was trained with" if own else ""
        )
        self.extractor, self.extractor_file = extractor_pickers(
            self._extractors, "A built-in model's extractor, or one trained in this viewer"
        )
        self.weights = FileEdit(
            label="VGG16 weights",
            mode="r",
            filter="Weights (*.pt *.pth)",
            tooltip=WEIGHTS_TIP,
        )
        self.iterations = LineEdit(label="iterations", value=ITERATIONS)
        self.iterations.tooltip = (
            "Iterations per pyramid level, coarse to fine (one number: the same for each); "
            "a level ends early once the loss stops improving"
        )
        self.linear = ComboBox(label="linear stage", choices=list(LINEAR), value="none")
        self.linear.tooltip = "A rigid or affine alignment optimised before the deformation"
        self.stiffness = FloatSpinBox(
            label="smoothness ×", value=1.0, min=0.05, max=100.0, step=0.5
        )
        self.stiffness.tooltip = (
            "Factor on the metric's default regulariser weight λ: 1 keeps the default, "
            "larger values give a smoother, stiffer field (e.g. 20 for NMI from MR to ultrasound), "
            "smaller ones follow finer detail"
        )
        self.widgets = [
            self.metric,
            self.extractor,
            self.extractor_file,
            self.weights,
            self.iterations,
            self.linear,
            self.stiffness,
        ]
        self.metric.changed.connect(self.update_visibility)

    def _metrics(self, _widget: Any = None) -> list[tuple[str, str]]:
        own = [(OWN_CHOICE, OWN)] if self._own and self._refine else []
        return [*own, *((name, name) for name in metric_specs())]

    def _extractors(self, _widget: Any = None) -> list[tuple[str, str | ModelFile]]:
        trained = [(m.name, m.model) for m in trained_models.of_kind("features")]
        return [*builtin_choices("features"), *trained]

    def extractors_changed(self, *_args: Any) -> None:
        """Relist the extractors, choosing the newest trained here when none is chosen."""
        self.extractor.reset_choices()
        trained = trained_models.of_kind("features")
        if self.extractor.value is None and trained:
            self.extractor.value = trained[-1].model

    def show(self, shown: bool) -> None:
        """Show or hide every control (extractor and weights only where the metric needs)."""
        self._shown = shown
        self.update_visibility()

    def update_visibility(self, *_args: Any) -> None:
        """Show the extractor and weights pickers only for a metric that needs them."""
        spec = metric_specs().get(str(self.metric.value))  # None: the model's own
        for widget in self.widgets:
            needed = True
            if widget is self.weights:
                needed = spec is not None and spec.needs_weights
            elif widget is self.extractor or widget is self.extractor_file:
                needed = spec is not None and spec.needs_extractor
            widget.visible = self._shown and needed

    def use_refine_defaults(self, refine: bool) -> None:
        """Label the iterations as a refinement's and swap an unedited default.

        With ``own`` offered, refining starts on the model's own metric (from the
        default metric) and leaving the refinement goes back to the default metric.
        """
        self._refine = refine
        self.iterations.label = "refine iterations" if refine else "iterations"
        old, new = (ITERATIONS, REFINE_ITERATIONS) if refine else (REFINE_ITERATIONS, ITERATIONS)
        if str(self.iterations.value).replace(" ", "") == old:
            self.iterations.value = new
        linear = (LINEAR[0], REFINE_LINEAR) if refine else (REFINE_LINEAR, LINEAR[0])
        if self.linear.value == linear[0]:  # the other mode's default, unedited
            self.linear.value = linear[1]
        if not self._own:
            return
        metric = str(self.metric.value)
        self.metric.reset_choices()
        if refine and metric == DEFAULT_METRIC:
            self.metric.value = OWN
        elif not refine and metric == OWN:
            self.metric.value = DEFAULT_METRIC

    def spec(self, refine: bool | None = None) -> OptimiseSpec:
        """Return the chosen optimisation, refusing what is missing or mistyped.

        Parameters
        ----------
        refine : bool, optional
            Whether it refines a model's field (then an unedited from-identity iteration
            default becomes the refinement's); None: as :meth:`use_refine_defaults` set.

        Returns
        -------
        OptimiseSpec
            The metric, the iterations, the linear stage and what the metric needs.
        """
        refine = self._refine if refine is None else refine
        text = str(self.iterations.value)
        if refine and text.replace(" ", "") == ITERATIONS:
            text = REFINE_ITERATIONS
        iterations = parse_iterations(text)
        linear, stiffness = str(self.linear.value), float(self.stiffness.value)
        if self.metric.value == OWN:
            return OptimiseSpec(OWN, iterations, linear, refine=refine, stiffness=stiffness)
        spec = metric_specs()[str(self.metric.value)]
        features: str | ModelFile | None = None
        weights = None
        if spec.needs_extractor:
            features = self.extractor.value
            if isinstance(features, str):  # a built-in model's extractor, by its file
                features = str(resolve(features, "features"))
            if features is None:
                features = str(self._file(self.extractor_file.value, spec.name))
        if spec.needs_weights:
            path = Path(self.weights.value)
            if not path.is_file():
                raise ValueError(f"the {spec.name} metric needs a VGG16 weights file; choose one")
            weights = str(path)
        return OptimiseSpec(spec.name, iterations, linear, features, weights, refine, stiffness)

    @staticmethod
    def _file(value: Any, metric: str) -> Path:
        path = Path(value)
        if str(path) in ("", ".") or path.is_dir():
            raise ValueError(
                f"the {metric} metric needs a feature extractor; {HOW_TO_GET_EXTRACTOR}"
            )
        if not path.is_file():
            raise ValueError(f"the extractor file {path} does not exist; pick an existing .pt file")
        return path
