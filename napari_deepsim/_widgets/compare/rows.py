"""The rows of the Compare metrics widget: models, model files and optimisations.

:class:`RowsPanel` is a panel of
:class:`~napari_deepsim._widgets.compare.widget.CompareWidget`. Its ticked list holds the
built-in models (first, unticked, each row named by the built-in name), the
registration models trained in this viewer (as they come), model files added with
**Add model files…**, optimisation rows (**Add optimisation**: the field optimised for
the pair with the chosen metric, from the identity) and refinement rows (**Refine
selected models**: each selected model's prediction refined by that optimisation).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import Container
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QAbstractItemView,
    QFileDialog,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_deepsim._jobs.compare import Entry
from napari_deepsim._state.models import builtin_choices, trained_models
from napari_deepsim._widgets.layout import Reflow
from napari_deepsim._widgets.optimise_controls import OptimisePicker
from napari_deepsim._widgets.tips import COMPARE_BUTTON_TIPS
from napari_deepsim._widgets.workers import error_message

if TYPE_CHECKING:
    from napari_deepsim._jobs.optimise import OptimiseSpec
    from src_training.engine.public import ModelFile


def optimisation_name(spec: OptimiseSpec, model: str | None = None) -> str:
    """Name an optimisation row: ``optimise: ncc``, or ``<model> + refine: ncc``.

    Parameters
    ----------
    spec : OptimiseSpec
        The optimisation.
    model : str, optional
        The name of the model it refines.

    Returns
    -------
    str
        The row's name in the list, the table and the layers.
    """
    label = spec.label + (f" after {spec.linear}" if spec.linear not in (None, "none") else "")
    return f"optimise: {label}" if model is None else f"{model} + refine: {label}"


class RowsPanel(QWidget):
    """The ticked methods of the Compare widget and the buttons that add them.

    The widget wires :meth:`list_models` to the models trained in this viewer;
    :meth:`entries` are the ticked methods.
    """

    def __init__(self) -> None:
        super().__init__()
        self._files: list[Path] = []
        self.optimisations: dict[str, Entry] = {}
        self.models = QListWidget()
        self.models.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.models.setMaximumHeight(130)
        self.models.setToolTip(
            "Ticked methods run on the pair; the built-in models (unticked) and the models "
            "trained here appear too. Select models and press 'Refine selected models' to add "
            "their refinement"
        )
        self.add_button = QPushButton("Add model files…")
        self.remove_button = QPushButton("Remove")
        self.optimise = OptimisePicker()
        self.add_optimisation_button = QPushButton("Add optimisation")
        self.refine_button = QPushButton("Refine selected models")
        for button, tip in zip(
            (self.add_button, self.remove_button, self.add_optimisation_button, self.refine_button),
            COMPARE_BUTTON_TIPS,
            strict=True,
        ):
            button.setToolTip(tip)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("methods"))
        column.addWidget(self.models)
        column.addWidget(Reflow([self.add_button, self.remove_button]))
        column.addWidget(Container(widgets=self.optimise.widgets).native)
        column.addWidget(Reflow([self.add_optimisation_button, self.refine_button]))
        self.optimise.update_visibility()
        self.add_button.clicked.connect(self._add_clicked)
        self.remove_button.clicked.connect(self.remove_clicked)
        self.add_optimisation_button.clicked.connect(self.add_optimisation)
        self.refine_button.clicked.connect(self.refine_selected)

    def list_models(self, *_args: Any) -> None:
        """List the built-in models, those trained here, the files and the optimisations.

        Rows keep their ticks; a new built-in row starts unticked, any other new row ticked.
        """
        states = {
            self.models.item(i).text(): self.models.item(i).checkState()
            for i in range(self.models.count())
        }
        builtins = {text for text, _ in builtin_choices()}
        self.models.clear()
        for text in [*self._models(), *self.optimisations]:
            item = QListWidgetItem(text)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            new = Qt.CheckState.Unchecked if text in builtins else Qt.CheckState.Checked
            item.setCheckState(states.get(text, new))
            self.models.addItem(item)

    def _file_name(self, path: Path) -> str:
        """Name a model file by its stem, or by its path when two stems clash."""
        stems = [p.stem for p in self._files]
        return path.stem if stems.count(path.stem) == 1 else str(path)

    def add_model_files(self, paths: list[str | Path]) -> None:
        """Offer model files for comparison (they are read when Compare runs).

        Parameters
        ----------
        paths : list of str or Path
            Registration model files written by ``deepsim train`` or the training widget.
        """
        for path in map(Path, paths):
            if not path.is_file():
                show_error(f"The model file {path} does not exist; pick an existing .pt file.")
                continue
            if path.resolve() not in [p.resolve() for p in self._files]:
                self._files.append(path)
        self.list_models()

    def _models(self) -> dict[str, tuple[str, str | ModelFile]]:
        """Return every listed model by its text: its row name and its source.

        The built-in models come first (their text is a one-line description, their row
        name the built-in name), then the models trained here, then the added files.
        """
        sources = {text: (name, name) for text, name in builtin_choices()}
        sources.update({m.name: (m.name, m.model) for m in trained_models.of_kind("registration")})
        sources.update({self._file_name(p): (self._file_name(p), str(p)) for p in self._files})
        return sources

    def add_optimisation(self, *_args: Any) -> str | None:
        """Add a row optimising the pair with the chosen metric (from the identity).

        Returns
        -------
        str or None
            The row's name, or None when the choice was refused (the reason is shown
            as a notification).
        """
        try:
            spec = self.optimise.spec(refine=False)
        except ValueError as err:
            show_error(error_message(err, "Comparison"))
            return None
        name = optimisation_name(spec)
        self.optimisations[name] = Entry(name, None, spec)
        self.list_models()
        return name

    def refine_selected(self, *_args: Any) -> list[str]:
        """Add a row per selected model: its prediction refined by the chosen optimisation.

        As on the command line, a refinement's regulariser is the metric's λ times the
        refinement factor, and unedited iterations become the refinement's default.

        Returns
        -------
        list of str
            The new rows' names (none when no model is selected or the choice was refused).
        """
        models = self._models()
        chosen = [item.text() for item in self.models.selectedItems() if item.text() in models]
        if not chosen:
            show_error("No model is selected; select models in the list, then refine them.")
            return []
        try:
            spec = self.optimise.spec(refine=True)
        except ValueError as err:
            show_error(error_message(err, "Comparison"))
            return []
        names = []
        for text in chosen:
            model, source = models[text]
            name = optimisation_name(spec, model)
            self.optimisations[name] = Entry(name, source, spec)
            names.append(name)
        self.list_models()
        return names

    def entries(self) -> list[Entry]:
        """Return the ticked methods, in the list's order."""
        entries = {text: Entry(*row) for text, row in self._models().items()}
        entries.update(self.optimisations)
        return [
            entries[item.text()]
            for item in map(self.models.item, range(self.models.count()))
            if item.checkState() == Qt.CheckState.Checked and item.text() in entries
        ]

    def _add_clicked(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add registration models", "", "Model files (*.pt *.pth)"
        )
        self.add_model_files(paths)

    def remove_clicked(self) -> None:
        """Remove the selected rows (a model trained here leaves every widget's list)."""
        chosen = {item.text() for item in self.models.selectedItems()}
        self._files = [path for path in self._files if self._file_name(path) not in chosen]
        self.optimisations = {
            name: entry for name, entry in self.optimisations.items() if name not in chosen
        }
        for model in [m for m in trained_models if m.name in chosen]:
            trained_models.remove(model)
        self.list_models()
