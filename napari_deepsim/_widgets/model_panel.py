"""The model section of the widgets that register: a built-in model, one trained here, a file.

:class:`ModelPanel` owns the model controls of
:class:`~napari_deepsim._widgets.register.widget.RegisterWidget` and of
:class:`~napari_deepsim._widgets.bigstack.widget.BigStackWidget`. Its picker lists the built-in
models first (each with a one-line description; when the widget opens it chooses the
registration model trained last in its viewer, else the first built-in one, so two
sections register without any training), then the registration models of
:data:`~napari_deepsim._state.models.trained_models` (selecting one as soon as a training
widget announces it); a model file replaces the picked model (it is read when picked).
A line says what the chosen model is: its dimensionality, channels, metric and training
data, so that a model that does not fit the layers (a 2D model for 3D volumes, another
number of channels) is refused by :meth:`ModelPanel.check_fits` before any work.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, Label
from napari.utils.notifications import show_error, show_info

from napari_deepsim._state.models import (
    Facts,
    TrainedModel,
    builtin_choices,
    builtin_facts,
    describe,
    file_facts,
    trained_models,
)
from napari_deepsim._widgets.workers import error_message
from src_training.engine.public import is_builtin

if TYPE_CHECKING:
    import napari

    from src_training.engine.public import ModelFile

IN_USE = "The trained registration model is now used by the Register widget."


class ModelPanel:
    """Choose the registration model of the Register widget.

    The panel owns its pickers (``widgets``, laid out by the widget) and keeps the
    built-in model or model file read by the last run, reused while it is unchanged
    (:meth:`remember`). The widget wires :meth:`refresh` and :meth:`model_trained` to
    the events of :data:`~napari_deepsim._state.models.trained_models`.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer of the widget: a registration model trained there before the widget
        was docked is chosen, with the notice a model trained afterwards gets.
    """

    def __init__(self, viewer: napari.Viewer) -> None:
        self._cache: dict[tuple[str, Any], ModelFile] = {}
        self.trained = ComboBox(label="model", choices=self.choices, nullable=True)
        self.trained.tooltip = (
            "A built-in model (listed first; the line below says what it is) or a registration "
            "model trained in this viewer"
        )
        self.model_file = FileEdit(
            label="or model file",
            mode="r",
            filter="Model files (*.pt *.pth)",
            tooltip="A registration model file (.pt) saved by a training widget or deepsim train",
        )
        self.model_info = Label(value="")
        self.model_file.changed.connect(self._model_file_changed)
        self.trained.changed.connect(self._trained_changed)
        builtins = builtin_choices()
        newest = trained_models.newest("registration", viewer)
        if newest is not None:  # trained in this viewer before the widget was docked
            self.set_model(newest.model)
            show_info(IN_USE)
        elif builtins:  # register with no training: the first built-in model
            self.trained.value = builtins[0][1]
        self.widgets = [self.trained, self.model_file, self.model_info]

    def choices(self, _widget: Any = None) -> list[tuple[str, str | ModelFile]]:
        """Return the models offered: the built-in ones, then those trained here."""
        trained = [(m.name, m.model) for m in trained_models.of_kind("registration")]
        return [*builtin_choices(), *trained]

    def refresh(self, *_args: Any) -> None:
        """List the models again (one was trained or removed)."""
        self.trained.reset_choices()

    def model_trained(self, event: Any) -> None:
        """Use a registration model as soon as a training widget has trained it."""
        if event.value.model.kind == "registration":
            self.set_model(event.value.model)
            show_info(IN_USE)

    def set_model(self, model: str | Path | ModelFile) -> None:
        """Use a registration model: a built-in name, a model file or one trained here.

        Parameters
        ----------
        model : str, Path or ModelFile
            A built-in name (``deepsim models``), a file written by ``deepsim train``, or
            an in-memory registration model (added to the models trained in this session
            if it is not listed yet).
        """
        if is_builtin(model):
            self.model_file.value = Path()
            self.trained.value = model
            return
        if isinstance(model, (str, Path)):
            self.trained.value = None
            self.model_file.value = Path(model)
            return
        if model.kind != "registration":
            show_error(
                f"The model is a {model.kind} model; the Register widget needs a registration "
                "model."
            )
            return
        if all(m.model is not model for m in trained_models):
            metric = model.metadata.get("metric", "unknown metric")
            trained_models.append(TrainedModel(f"{metric} model (given)", model))
        self.trained.reset_choices()
        self.trained.value = model

    def _trained_changed(self, *_args: Any) -> None:
        model = self.trained.value
        if model is None:
            self.model_info.value = ""
        elif isinstance(model, str):
            self.model_info.value = describe(builtin_facts(model), "built-in")
        else:
            self.model_info.value = describe(file_facts(model), "trained here")

    def _model_file_changed(self, *_args: Any) -> None:
        path = Path(self.model_file.value)
        if str(path) in ("", "."):
            return
        self.trained.value = None
        if not path.is_file():  # Register says so
            return
        try:  # read it now: its facts are shown, and a mismatch is refused before a run
            model = self._read_file(path)
        except ValueError as err:  # Register reports it
            self.model_info.value = f"cannot use this file: {error_message(err, 'Reading')}"
            return
        self.model_info.value = describe(file_facts(model), path.name)

    def _read_file(self, path: Path) -> ModelFile:
        """Return the registration model of a file, read once while the file is unchanged."""
        from src_training.engine.registration import load_registration_model

        key = (str(path), path.stat().st_mtime)
        if key not in self._cache:
            self._cache = {key: load_registration_model(path)}
        return self._cache[key]

    def _facts(self) -> Facts | None:
        """Return what the chosen model registers (None for a file that is missing)."""
        chosen = self.trained.value
        if isinstance(chosen, str):
            return builtin_facts(chosen)
        if chosen is not None:
            return file_facts(chosen)
        path = Path(self.model_file.value)
        return file_facts(self._read_file(path)) if path.is_file() else None

    def check_fits(self, ndim: int, stack: bool, layer: str) -> None:
        """Refuse layers the chosen model cannot register, before any work is done.

        Parameters
        ----------
        ndim : int
            Dimensions of the fixed layer's data.
        stack : bool
            Fixed and moving are one layer, whose frames are registered.
        layer : str
            The fixed layer's name.
        """
        facts = self._facts()
        if facts is None:
            return
        spatial = ndim - 1 if stack else ndim
        what = "frames of" if stack else "layer"
        if spatial != facts.ndim:
            fix = "pick a {}D model in 'model' or 'or model file', or choose method 'optimise'"
            if not stack and ndim == facts.ndim + 1:
                fix = "to register its frames, choose it as both fixed and moving layer, or " + fix
            raise ValueError(
                f"{facts.ndim}D model, {spatial}D {what} {layer!r}: the model registers "
                f"{facts.ndim}D images; " + fix.format(spatial)
            )
        if facts.channels != 1:
            raise ValueError(
                f"{facts.channels}-channel model, 1-channel layer {layer!r}: the model registers "
                f"images of {facts.channels} channels; pick a one-channel model in 'model'"
            )

    def check_metric_known(self) -> None:
        """Refuse to refine with the model's own metric a model that does not record it."""
        facts = self._facts()
        if facts is not None and facts.metric == "unknown":
            raise ValueError(
                "the model does not say which metric it was trained with, so it cannot be "
                "refined with its own; choose a metric in 'metric'"
            )

    def source(self) -> str | ModelFile:
        """Return the chosen model: one trained here, a loaded copy, or a name or path."""
        chosen = self.trained.value
        if chosen is None:
            path = Path(self.model_file.value)
            if str(path) in ("", ".") or path.is_dir():
                raise ValueError(
                    "no model chosen; pick a built-in or registration model file (.pt), or "
                    "train one"
                )
            if not path.is_file():
                raise ValueError(f"the model file {path} does not exist; pick an existing .pt file")
            chosen = str(path)
        key = self.key(chosen)
        return chosen if key is None else self._cache.get(key, chosen)

    def remember(self, key: tuple[str, Any], model: ModelFile) -> None:
        """Keep the model a run read under its key, for the next run."""
        self._cache = {key: model}

    def key(self, source: str | ModelFile | None) -> tuple[str, Any] | None:
        """Return the cache key of a model a run reads: a built-in name, or a file and its time.

        A model read before (a built-in or file in the cache) keeps its key; None for a
        model trained here (or no model).
        """
        if not isinstance(source, str):
            return next((key for key, model in self._cache.items() if model is source), None)
        if isinstance(self.trained.value, str):  # only built-in models are picked by name
            return (source, "built-in")
        path = Path(self.model_file.value)
        return (str(path), path.stat().st_mtime)
