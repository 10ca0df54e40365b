"""The models the widgets offer: the built-in ones, and those trained in this process.

:func:`builtin_choices` lists the models shipped with the package (by name, with a
one-line description); the widgets list them first. :data:`trained_models` lists every
model the training widgets trained (and the models handed to the Register widget).
Widgets subscribe to its events instead of looking for one another: ``inserted`` and
``removed`` refresh their model lists, and ``trained`` announces a model a widget has
just finished training, so the Register widget can select it; a widget docked later
asks :meth:`TrainedModels.newest` for the model last trained in its viewer. Nothing here
imports Qt or torch.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from napari.utils.events import EventedList

from src_training.engine.public import builtin_models

if TYPE_CHECKING:
    from src_training.engine.public import ModelFile


def builtin_choices(part: str = "registration") -> list[tuple[str, str]]:
    """Return the built-in models as ``(description, name)`` choices of a picker.

    Parameters
    ----------
    part : {"registration", "features"}
        The registration models, or their feature extractors.

    Returns
    -------
    list of (str, str)
        In the registry's order (for registration, only those with a registration
        model); empty when the registry cannot be read (the command line reports why).
    """
    try:
        models = builtin_models()
    except ValueError:
        return []
    if part == "features":
        return [(f"{name} extractor (built-in)", name) for name in models]
    return [(model.description(), name) for name, model in models.items() if model.registers]


@dataclass(frozen=True)
class Facts:
    """What a registration model registers and what it learnt from.

    Attributes
    ----------
    ndim, channels : int
        Spatial dimensions and image channels of the images it registers.
    metric : str
        The metric it was trained with.
    data : str
        Its training data (and steps), as far as it is recorded.
    """

    ndim: int
    channels: int
    metric: str
    data: str


def builtin_facts(name: str) -> Facts:
    """Return the facts of a built-in registration model, from the registry (no torch).

    Parameters
    ----------
    name : str
        A built-in model's name.

    Returns
    -------
    Facts
        Built-in models are DeepSim models (trained with their feature extractor).
    """
    model = builtin_models()[name]
    metric = "deepsim" if "features" in model.files else "unknown"
    held_out = model.heldout.get("data")
    data = model.summary + (f" (held out: {held_out})" if held_out else "")
    return Facts(model.ndim, model.channels, metric, data)


def file_facts(model: ModelFile) -> Facts:
    """Return the facts of a model in memory (trained here or read from a file).

    Parameters
    ----------
    model : ModelFile
        A registration model.

    Returns
    -------
    Facts
        From its metadata; what it does not record is "unknown".
    """
    meta = model.metadata
    data = str(meta.get("train_data") or "unknown data")
    if meta.get("steps_trained"):
        data += f", {meta['steps_trained']} steps"
    channels = int(meta["network"].get("in_channels", 1))
    return Facts(model.ndim, channels, str(meta.get("metric", "unknown")), data)


def describe(facts: Facts, origin: str) -> str:
    """Return the model line of the Register widget.

    Parameters
    ----------
    facts : Facts
        The model's facts.
    origin : str
        Where it comes from (``built-in``, ``trained here``, a file name).

    Returns
    -------
    str
        Such as ``2D, 1 channel, metric deepsim; trained on ... (built-in)``.
    """
    channels = f"{facts.channels} channel" + ("s" if facts.channels != 1 else "")
    return f"{facts.ndim}D, {channels}, metric {facts.metric}; trained on {facts.data} ({origin})"


@dataclass
class TrainedModel:
    """A model trained in this session.

    Attributes
    ----------
    name : str
        What the widgets list it as.
    model : ModelFile
        The network and its metadata.
    viewer : weakref.ref or None
        The viewer whose training widget trained it (None: listed otherwise).
    """

    name: str
    model: ModelFile
    viewer: weakref.ref[Any] | None = field(default=None, repr=False, compare=False)


class TrainedModels(EventedList):
    """The session's models, in the order they were listed.

    Besides the events of an :class:`~napari.utils.events.EventedList`,
    ``events.trained`` is emitted with ``value`` the new :class:`TrainedModel` when a
    widget finishes training one (after ``inserted``).
    """

    def __init__(self) -> None:
        super().__init__(basetype=TrainedModel)
        self.events.add(trained=None)

    def of_kind(self, kind: str) -> list[TrainedModel]:
        """Return the listed models of one kind.

        Parameters
        ----------
        kind : str
            ``registration`` or ``features``.

        Returns
        -------
        list of TrainedModel
            In the order they were listed.
        """
        return [entry for entry in self if entry.model.kind == kind]

    def newest(self, kind: str, viewer: Any) -> TrainedModel | None:
        """Return the model of one kind trained last in a viewer, if it is still listed.

        Parameters
        ----------
        kind : str
            ``registration`` or ``features``.
        viewer : napari.Viewer
            The viewer whose training widgets trained it.

        Returns
        -------
        TrainedModel or None
            None when no listed model of that kind was trained in this viewer.
        """
        viewer = _unwrapped(viewer)
        mine = [e for e in self.of_kind(kind) if e.viewer is not None and e.viewer() is viewer]
        return mine[-1] if mine else None

    def add_trained(self, model: ModelFile, label: str, viewer: Any = None) -> TrainedModel:
        """List a model a widget has just trained and announce it with ``events.trained``.

        Parameters
        ----------
        model : ModelFile
            The trained model.
        label : str
            What it is, such as ``"ncc model"``; a number follows it (``"ncc model #2"``),
            counting the listed models of its kind.
        viewer : napari.Viewer, optional
            The viewer it was trained in (what :meth:`newest` looks for).

        Returns
        -------
        TrainedModel
            The new entry.
        """
        trained_in = None if viewer is None else weakref.ref(_unwrapped(viewer))
        entry = TrainedModel(f"{label} #{len(self.of_kind(model.kind)) + 1}", model, trained_in)
        self.append(entry)
        self.events.trained(value=entry)
        return entry


def _unwrapped(viewer: Any) -> Any:
    """Return the viewer itself: each docked widget gets a proxy of its own."""
    return getattr(viewer, "__wrapped__", viewer)


trained_models = TrainedModels()
