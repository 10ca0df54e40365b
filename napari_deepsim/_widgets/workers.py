"""Running a widget's job in a napari thread worker, and telling the user why it failed.

Every widget starts its job with :func:`start_worker` (a progress bar in napari's
activity dock, results delivered on the GUI thread) and turns an exception into one
notification sentence with :func:`error_message`, which words the core's advice in
terms of the widgets' controls (:func:`gui_wording`: "choose the cpu device in the
widget", not a command-line option). A job whose yields say how far it is
(optimisation steps) moves its bar with :func:`advance` instead of one unit per yield.
A result's layers are added by :class:`Turns`, one step per turn of the event loop,
so the window redraws and answers between two layers.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

MEMORY_FIX = "choose the cpu device or crop the images"
TURN_MS = 1  # from the end of one layer step to the start of the next
# the core's advice names command-line options; the widgets name their controls
GUI_WORDS = (
    (r"use --device cpu", "choose the cpu device in the widget"),
    (r"lower --batch-size to (\d+)", r"lower 'batch size' in the widget to \1"),
    (r"lower --batch-size, ", ""),  # the Register widget has no batch size
    (r"--device", "'device'"),
    (r"use --precision (\w+) or (\w+)", r"choose 'precision' \1 or \2 in the widget"),
    (
        r"train one with `deepsim train-features` and pass --features F\.pt",
        "train one with 'Train feature extractor' or choose an extractor file",
    ),
    (
        r"pass (a registration model|a feature extractor) made by `deepsim train(?:-features)?`",
        r"pick \1 saved by a training widget",
    ),
    (
        r"fine-tune with `deepsim train DATA --init ([\w.-]+)`",
        r"pick another model in 'model', or fine-tune \1 with a training widget's 'start from'",
    ),
    (r"`deepsim train-features`", "'Train feature extractor'"),
    (r"`deepsim train`", "'Train registration model'"),
)


def gui_wording(text: str) -> str:
    """Replace the command-line options a core message names with the widgets' controls.

    Parameters
    ----------
    text : str
        A core error message.

    Returns
    -------
    str
        The message naming controls (``'crop'``, ``'channels'``, ``'batch size'``…).
    """
    for pattern, words in GUI_WORDS:
        text = re.sub(pattern, words, text)
    return re.sub(r"--([a-z][a-z-]*)", lambda m: f"'{m.group(1).replace('-', ' ')}'", text)


def start_worker(
    function: Callable[..., Any],
    job: Any,
    total: int,
    description: str,
    returned: Callable[[Any], None],
    errored: Callable[[BaseException], None],
    finished: Callable[[], None],
    yielded: Callable[[Any], None] | None = None,
    counted: bool = True,
) -> Any:
    """Run a generator function in a napari thread worker with a progress bar.

    Parameters
    ----------
    function : callable
        A generator function of ``job``; each yield advances the progress bar.
    job : object
        Its argument.
    total : int
        Expected number of yields.
    description : str
        The progress bar's text in napari's activity dock.
    returned, errored, finished : callable
        Slots for the worker's signals (called on the GUI thread).
    yielded : callable, optional
        A slot that receives every yielded value.
    counted : bool
        Each yield advances the bar by one; when False, ``yielded`` moves it with
        :func:`advance`.

    Returns
    -------
    napari.qt.threading.GeneratorWorker
        The started worker.
    """
    from napari.qt.threading import create_worker

    worker = create_worker(
        function,
        job,
        _progress={"total": total if counted else 0, "desc": description},
        _ignore_errors=True,
        _start_thread=False,
    )
    if not counted:
        worker.pbar.total = total
    if yielded is not None:
        worker.yielded.connect(yielded)
    worker.returned.connect(returned)
    worker.errored.connect(errored)
    worker.finished.connect(finished)
    worker.start()
    return worker


class Turns:
    """Run steps on the GUI thread, one per turn of the event loop, then ``finished``.

    Each step is started :data:`TURN_MS` after the one before has ended, so the events
    and timers that came due during a step (a repaint, a click) are handled before the
    next: a repeating timer would run steps back to back, a freeze of two layers' adds.

    Parameters
    ----------
    steps : list of callable
        The steps (each adds or changes one layer).
    finished : callable
        Called after the last step.
    errored : callable
        Called with the exception of a step that raised; the later steps are dropped.
    """

    def __init__(
        self,
        steps: list[Callable[[], Any]],
        finished: Callable[[], None],
        errored: Callable[[BaseException], None],
    ) -> None:
        from qtpy.QtCore import QTimer

        self.steps = list(steps)
        self.finished, self.errored = finished, errored
        self.active = True  # steps are left to run
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(TURN_MS)
        self.timer.timeout.connect(self._turn)
        self.timer.start()

    def cancel(self) -> None:
        """Drop the steps not run yet (``finished`` is not called)."""
        self.active = False
        self.timer.stop()
        self.steps.clear()

    def _turn(self) -> None:
        if not self.steps:
            self.active = False
            self.finished()
            return
        try:
            self.steps.pop(0)()
        except Exception as err:  # never raise into Qt's event loop
            self.cancel()
            self.errored(err)
            return
        if self.active:  # from now: what came due during the step runs first
            self.timer.start()


def advance(worker: Any, done: int, total: int) -> None:
    """Move the progress bar of a worker started with ``counted=False``.

    Parameters
    ----------
    worker : napari.qt.threading.GeneratorWorker
        The worker.
    done, total : int
        Units finished and planned (the plan may grow once the job knows it).
    """
    bar = worker.pbar
    if bar.total != total:
        bar.total = total
    if done > bar.n:
        bar.update(done - bar.n)


def error_message(err: BaseException, action: str, memory_fix: str = MEMORY_FIX) -> str:
    """Return one sentence for the user; core errors already are one.

    Parameters
    ----------
    err : BaseException
        What went wrong.
    action : str
        What failed, capitalised (``"Registration"``, ``"Training"``, ...).
    memory_fix : str
        What to try when the device ran out of memory.

    Returns
    -------
    str
        The notification text, naming the widgets' controls where the core named
        command-line options.
    """
    text = gui_wording(str(err).rstrip("."))
    if isinstance(err, (ValueError, FileNotFoundError, FloatingPointError)):
        return text[:1].upper() + text[1:] + "."
    if "out of memory" in text.lower():
        return f"{action} ran out of memory; {memory_fix} ({type(err).__name__})."
    return f"{action} failed: {type(err).__name__}: {text}."
