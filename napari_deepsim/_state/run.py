"""The lifecycle of a widget's run, as one evented state (no Qt).

A run is idle until its button is pressed, then running (its worker computes, then its
layers are added), stopping once Stop was pressed (an optimisation ends with its best
field, anything else at its next step), and done or failed when it ends; a run that was
cancelled goes back to idle. Every widget's dock keeps one :class:`RunState`, and
:attr:`RunState.changed` tells whoever listens (the dock's button). A
:class:`RunContext` holds the layers and settings a run started with.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from psygnal import Signal

if TYPE_CHECKING:
    from napari.layers import Layer


class Phase(StrEnum):
    """Where a run stands."""

    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    DONE = "done"
    FAILED = "failed"


class RunState:
    """The phase of a widget's run, announcing every change.

    Attributes
    ----------
    phase : Phase
        Where the run stands now.
    """

    changed = Signal(object)

    def __init__(self) -> None:
        self.phase = Phase.IDLE

    @property
    def active(self) -> bool:
        """Whether a run is under way (running or stopping)."""
        return self.phase in (Phase.RUNNING, Phase.STOPPING)

    def set(self, phase: Phase) -> None:
        """Move to ``phase``, announcing it when it is a change.

        Parameters
        ----------
        phase : Phase
            The new phase.
        """
        if phase != self.phase:
            self.phase = phase
            self.changed.emit(phase)


@dataclass
class RunContext:
    """The layers and settings a run started with, for the layers its result adds.

    Attributes
    ----------
    fixed, moving : Layer
        The pair (one layer: the frames of a stack).
    moving_labels : Layer, optional
        The moving labels, warped with the field.
    extras : list of Layer
        Layers carried along with the field.
    jacobian : bool
        The Jacobian layer is shown.
    keep : bool
        The previous results stay; the new layers get new names.
    optimising : bool
        The run optimises (Stop then keeps its best field).
    model_key : tuple, optional
        The model's built-in name or file and time, as the model picker caches it.
    result : object, optional
        What the run returned, once it has.
    """

    fixed: Layer
    moving: Layer
    moving_labels: Layer | None = None
    extras: list[Layer] = field(default_factory=list)
    jacobian: bool = False
    keep: bool = False
    optimising: bool = False
    model_key: tuple[str, Any] | None = None
    result: Any = None
