"""The model section of the Register widget: a model trained here or a model file.

:class:`ModelChoice` is mixed into
:class:`~napari_deepsim._register_widget.RegisterWidget`. It lists the registration
models of :data:`~napari_deepsim._models.trained_models` (selecting one as soon as a
training widget announces it) beside a file picker, and says which model a run uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import ComboBox, FileEdit, Label
from napari.utils.notifications import show_error, show_info

from napari_deepsim._models import TrainedModel, trained_models

if TYPE_CHECKING:
    from src_training.networks.modelio import ModelFile


class ModelChoice:
    """Choose the registration model of the Register widget.

    The widget calls :meth:`_model_controls` once, subscribes :meth:`_trained_list_changed`
    and :meth:`_model_trained` to the registry's events, and keeps ``_model_cache`` (the
    model file read by the last run, reused while the file is unchanged).
    """

    _model_cache: dict[tuple[str, float], ModelFile]

    def _model_controls(self) -> list[Any]:
        """Make the model pickers and the line that says which model is used."""
        self.trained = ComboBox(label="model", choices=self._trained_models, nullable=True)
        self.trained.tooltip = "A registration model trained in this viewer"
        self.model_file = FileEdit(
            label="or model file", mode="r", filter="Model files (*.pt *.pth)"
        )
        self.model_info = Label(value="")
        self.model_file.changed.connect(self._model_file_changed)
        self.trained.changed.connect(self._trained_changed)
        return [self.trained, self.model_file, self.model_info]

    def _trained_models(self, _widget: Any = None) -> list[tuple[str, ModelFile]]:
        return [(m.name, m.model) for m in trained_models.of_kind("registration")]

    def _trained_list_changed(self, *_args: Any) -> None:
        self.trained.reset_choices()

    def _model_trained(self, event: Any) -> None:
        """Use a registration model as soon as a training widget has trained it."""
        if event.value.model.kind == "registration":
            self.set_model(event.value.model)
            show_info("The trained registration model is now used by the Register widget.")

    def set_model(self, model: str | Path | ModelFile) -> None:
        """Use a registration model: a model file path or a model trained in this viewer.

        Parameters
        ----------
        model : str, Path or ModelFile
            A file written by ``deepsim train``, or an in-memory registration model
            (added to the models trained in this session if it is not listed yet).
        """
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
            return
        metric = model.metadata.get("metric", "unknown metric")
        self.model_info.value = f"using the {model.ndim}D {metric} model trained here"

    def _model_file_changed(self, *_args: Any) -> None:
        if str(self.model_file.value) not in ("", "."):
            self.trained.value = None

    def _model_source(self) -> str | ModelFile:
        if self.trained.value is not None:
            return self.trained.value
        path = Path(self.model_file.value)
        if str(path) in ("", ".") or path.is_dir():
            raise ValueError(
                "no model chosen; pick a registration model file (.pt) or train one first"
            )
        if not path.is_file():
            raise ValueError(f"the model file {path} does not exist; pick an existing .pt file")
        return self._model_cache.get((str(path), path.stat().st_mtime), str(path))

    def _model_key(self, source: str | ModelFile | None) -> tuple[str, float] | None:
        """Return the cache key of a model file a run reads (None for a model in memory)."""
        if not isinstance(source, str):
            return None
        path = Path(self.model_file.value)
        return (str(path), path.stat().st_mtime)
