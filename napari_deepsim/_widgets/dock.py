"""The run lifecycle every widget shares: one button that runs and stops, a worker.

A :class:`JobDock` starts its widget's Qt-free job in a napari thread worker with a
progress bar, turns the button into Stop while it runs, shows errors as one
notification worded with the widgets' controls, adds a result's layers one per turn of
the event loop, and, once the dock is closed, shows nothing more. Where the run stands
is its :class:`~napari_deepsim._state.run.RunState`, which the button follows.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtWidgets import QApplication, QWidget

from napari_deepsim._state.run import Phase, RunState
from napari_deepsim._widgets.workers import MEMORY_FIX, Turns, error_message, start_worker

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import PushButton


class JobDock(QWidget):
    """A docked widget whose button runs a job in a worker and stops it.

    A subclass sets ``action`` (the button's text when idle), ``failure`` (what failed,
    in error messages) and, for training, ``memory_fix``; it hands its button to
    :meth:`follow`, builds its job with ``_make_job`` (through :meth:`new_job`), starts it
    with :meth:`launch` and adds result layers with :meth:`add_layers`.

    Parameters
    ----------
    viewer : napari.Viewer
        The viewer the widget reads and writes layers of.

    Attributes
    ----------
    worker : napari.qt.threading.GeneratorWorker or None
        The running worker.
    run_state : RunState
        Where the run stands.
    stop_event : threading.Event
        Set when Stop is pressed; the job polls it.
    closed : bool
        The dock was closed: nothing computed is shown any more.
    started : float
        When the run started (``time.perf_counter``): the wall time the user waits.
    """

    action = "Run"
    failure = "Run"
    memory_fix = MEMORY_FIX

    def __init__(self, viewer: napari.Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self.worker: Any = None
        self.run_state = RunState()
        self.stop_event = threading.Event()
        self.closed = False
        self.started = 0.0
        self._turns: Turns | None = None
        self._button: PushButton | None = None
        self._heard = False

    def follow(self, button: PushButton, start: Callable[[], Any]) -> None:
        """Make ``button`` start the job, read Stop while it runs, and stop it then.

        A click within the platform's double-click interval of the start, before the job
        reported anything, is the second click of a double click, not a Stop: the run
        goes on.
        """
        self._button = button

        def clicked(*_args: Any) -> None:
            if not self.running:
                start()
            elif not self.starting:
                self.stop()

        button.changed.connect(clicked)
        self.run_state.changed.connect(self._phase_changed)

    @property
    def starting(self) -> bool:
        """Whether the run started within the double-click interval and reported nothing."""
        interval = QApplication.doubleClickInterval() / 1000
        recent = time.perf_counter() - self.started < interval
        return self.run_state.active and not self._heard and recent

    @property
    def running(self) -> bool:
        """Whether a run is in progress (its layers being added included)."""
        return self.worker is not None or (self._turns is not None and self._turns.active)

    def report(self, err: BaseException) -> None:
        """Show what went wrong as one notification naming the widgets' controls."""
        show_error(error_message(err, self.failure, self.memory_fix))

    def new_job(self, busy: str) -> Any:
        """Return the widget's job from its controls, or None with the reason shown.

        Parameters
        ----------
        busy : str
            What to say when a run is already in progress (no job then).

        Returns
        -------
        object or None
            What the subclass's ``_make_job`` builds, or None when a run is under way or
            the inputs were refused (the reason shown as one notification).
        """
        if self.running:
            show_info(busy)
            return None
        try:
            return self._make_job()
        except ValueError as err:
            self.report(err)
            return None

    def launch(
        self,
        function: Callable[..., Any],
        job: Any,
        total: int,
        description: str,
        returned: Callable[[Any], None],
        failed: Callable[[BaseException], None],
        **options: Any,
    ) -> Any:
        """Start ``function(job)`` in a worker; the button reads Stop until it ends.

        Parameters
        ----------
        function : callable
            A generator function of the job (it may poll ``stop_event``).
        job : object
            Its argument.
        total : int
            Steps expected, for the progress bar.
        description : str
            The progress bar's text.
        returned, failed : callable
            Called on the GUI thread with the job's result, or its exception (not after
            the dock was closed).
        **options
            ``yielded``, ``counted`` as for
            :func:`~napari_deepsim._widgets.workers.start_worker`, and ``ended`` (called
            when the worker has ended, however it ended).

        Returns
        -------
        napari.qt.threading.GeneratorWorker
            The started worker.
        """
        ended = options.pop("ended", None)
        self.stop_event.clear()
        self.started = time.perf_counter()
        self.run_state.set(Phase.RUNNING)

        def errored(err: BaseException) -> None:
            self.run_state.set(Phase.FAILED)
            if not self.closed:
                failed(err)

        def finished() -> None:
            self.worker = None
            if ended is not None:
                ended()
            if self._turns is None or not self._turns.active:
                self.settle()

        self._heard = False
        self.worker = start_worker(
            function, job, total, description, returned, errored, finished, **options
        )
        if self.worker is not None:
            self.worker.yielded.connect(self._reported)
        return self.worker

    def _reported(self, *_args: Any) -> None:
        self._heard = True

    def add_layers(self, steps: list[Callable[[], Any]]) -> None:
        """Run ``steps`` one per turn of the event loop, then end the run."""

        def errored(err: BaseException) -> None:
            self.report(err)
            self.settle()

        self._turns = Turns(steps, self.settle, errored)

    def input_removed(self, removed: Any, inputs: dict[str, Any]) -> str | None:
        """Cancel the run when one of its input layers left the viewer, and say so.

        Parameters
        ----------
        removed : Layer
            The layer removed from the viewer.
        inputs : dict
            The run's input layers by role (``moving``, ``fixed``).

        Returns
        -------
        str or None
            The removed layer's role, or None when the run goes on.
        """
        role = next((r for r, layer in inputs.items() if layer is removed), None)
        if role is None or not self.running:
            return None
        self.cancel()
        show_warning(
            f"The {role} layer {removed.name!r} was removed from the viewer during the run; "
            "the run is stopped and no result layers are added for it."
        )
        return role

    def ask_to_stop(self) -> None:
        """Ask the job to end at its next check of ``stop_event`` (it keeps what it has)."""
        self.stop_event.set()
        self.run_state.set(Phase.STOPPING)

    def cancel(self) -> None:
        """End the worker at its next step and drop the layers not added yet."""
        self.stop_event.set()
        if self.worker is not None:
            self.worker.quit()
        if self._turns is not None:
            self._turns.cancel()
        self._turns = None
        self.run_state.set(Phase.IDLE)

    def abandon(self) -> None:
        """Cancel the run of a closed dock: nothing it computed is shown."""
        self.closed = True
        self.cancel()

    def stop(self) -> None:
        """Stop the run: by default, cancel it (subclasses may keep what it has)."""
        self.cancel()

    def settle(self) -> None:
        """End the run once its worker has ended and its layers are added."""
        self._turns = None
        if self.worker is None and self.run_state.active:
            self.run_state.set(Phase.DONE)

    def _phase_changed(self, phase: Phase) -> None:
        if self._button is not None and not self.closed:
            busy = phase in (Phase.RUNNING, Phase.STOPPING)
            self._button.text = "Stop" if busy else self.action
