"""A terminal progress display for training events (one of their consumers)."""

from __future__ import annotations

import sys
from typing import TextIO

from src_training.training.trainer import Event, StepEvent, ValidationEvent


class ProgressPrinter:
    """Print training progress: a live bar on a terminal, periodic lines otherwise.

    Parameters
    ----------
    stream : TextIO
        Where to print (standard error by default).
    lines : int
        Number of progress lines over a whole run when the stream is not a terminal.
    """

    def __init__(self, stream: TextIO | None = None, lines: int = 20) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty()
        self.lines = lines
        self.val = ""
        self.first_step: int | None = None

    def __call__(self, event: Event) -> None:
        """Show one event."""
        if isinstance(event, ValidationEvent):
            parts = [f"{k} {v:.4f}" for k, v in event.scores.items()]
            self.val = "  val " + ", ".join(parts)
            if not self.live:
                best = " (best so far)" if event.best else ""
                print(
                    f"step {event.step}/{event.steps}{self.val}{best}", file=self.stream, flush=True
                )
            return
        assert isinstance(event, StepEvent)
        if self.first_step is None:
            self.first_step = event.step - 1  # a resumed run starts counting later
        rate = event.seconds / max(event.step - self.first_step, 1)
        eta = rate * (event.steps - event.step)
        text = (
            f"step {event.step}/{event.steps}  loss {event.loss:.4f}  "
            f"{event.seconds:.0f} s (eta {eta:.0f} s){self.val}"
        )
        if self.live:
            width = 20
            done = int(width * event.step / event.steps)
            bar = "#" * done + "." * (width - done)
            end = "\n" if event.step == event.steps else ""
            print(f"\r[{bar}] {text}\033[K", end=end, file=self.stream, flush=True)
        elif event.step % max(1, event.steps // self.lines) == 0 or event.step == event.steps:
            print(text, file=self.stream, flush=True)
