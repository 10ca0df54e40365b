"""Progress of the widgets' jobs: steps for the progress bar, per stage and iteration.

A :class:`Tracker` turns the engine's events into :class:`Step` s for the progress bar:
a position in the planned iterations (a level that ends early skips the rest of its
share), the level (with its resolution), iteration and loss as text, the losses for a
plot (each named by its level, whose images have a size of their own), and, for a pair, a
preview of the warped moving image after each pyramid level (:class:`Watch`). Nothing
here touches Qt, and torch is imported only inside functions.
"""

from __future__ import annotations

import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    from src_training.engine.optimisation import Optimisation
    from src_training.engine.public import OptimiseEvent

T = TypeVar("T")
THROTTLE = 0.05  # seconds between steps within a level, so the GUI thread is never flooded


class Watch:
    """A metric's loss that keeps the last warped image it compared, for the preview.

    The optimiser calls the loss with the moving image warped by the transformation of
    each iteration; at the first iteration of a level that is the previous levels' best
    transformation. Every other attribute is the loss's own.
    """

    def __init__(self, loss: Any) -> None:
        self.loss = loss
        self.last: Any = None

    def __call__(self, warped: Any, fixed: Any, **extra: Any) -> Any:
        self.last = warped.detach()
        return self.loss(warped, fixed, **extra)

    def __getattr__(self, name: str) -> Any:
        if name == "loss":  # not set yet: never recurse
            raise AttributeError(name)
        return getattr(self.loss, name)

    def take(self) -> np.ndarray | None:
        """Return the last warped image's first channel as an array, and forget it."""
        last, self.last = self.last, None
        return None if last is None else last[0, 0].float().cpu().numpy()


def watched(optimisation: Optimisation) -> tuple[Optimisation, Watch]:
    """Return the optimisation with its metric's loss watched, and the watch."""
    from dataclasses import replace

    watch = Watch(optimisation.metric.loss)
    metric = replace(optimisation.metric, loss=watch)
    return replace(optimisation, metric=metric), watch


@dataclass(frozen=True)
class Step:
    """Progress for the GUI thread.

    Attributes
    ----------
    done, total : int
        Units finished and planned: stages, and the planned iterations of every pair.
    text : str
        What is happening (level, iteration and loss while optimising).
    losses : tuple of (int, float, str)
        ``(iteration, loss, level)`` of the iterations since the last step; ``level``
        names what the loss was computed on (``L2``: the second pyramid level, on
        images of its own size; ``affine L1``; ``2:L1`` for a stack's second frame
        pair), so that a plot draws each level as a segment of its own.
    preview : numpy.ndarray, optional
        The moving image warped by the best transformation of the level just finished,
        on the grid of the level now running (corner-aligned with the fixed image).
    """

    done: int
    total: int
    text: str
    losses: tuple[tuple[int, float, str], ...] = ()
    preview: np.ndarray | None = None


class Tracker:
    """Turns a registration's stages and optimisation events into :class:`Step` s.

    Parameters
    ----------
    stages : int
        Stage units besides the iterations (the last one is the final step).

    Attributes
    ----------
    watch : Watch or None
        The watched loss of a pair's optimisation, for a preview after each level.
    """

    def __init__(self, stages: int) -> None:
        self.stages = stages
        self.watch: Watch | None = None
        self.schedule: dict[tuple[str, int], tuple[int, int]] = {}  # (stage, level): offset, n
        self.per_pair = self.pairs = self.levels = 0
        self._stage = self._pair = self._position = 0
        self._key: tuple[int, str, int] | None = None
        self._last = 0.0
        self._losses: list[tuple[int, float, str]] = []

    @property
    def total(self) -> int:
        """Units planned: the stages and every pair's iterations."""
        return self.stages + self.per_pair * self.pairs

    def plan(self, optimisation: Optimisation, shape: tuple[int, ...], pairs: int) -> None:
        """Plan ``pairs`` optimisations of images of ``shape`` (levels as the engine picks).

        Parameters
        ----------
        optimisation : Optimisation
            Its settings give the levels and the iterations of each.
        shape : tuple of int
            Spatial shape of the images.
        pairs : int
            Pairs optimised one after another (frames of a stack).
        """
        from src_training.engine.arrays import planned_levels

        config = optimisation.config
        self.levels = planned_levels(optimisation, shape)
        offset = 0
        for level in range(config.linear_levels(self.levels)):
            self.schedule[("affine", level)] = (offset, config.affine_iterations)
            offset += config.affine_iterations
        if config.transform != "none":
            for level, count in enumerate(config.level_iterations(self.levels)):
                self.schedule[("deformable", level)] = (offset, count)
                offset += count
        self.per_pair, self.pairs = offset, pairs

    def step(self, text: str, preview: np.ndarray | None = None) -> Step:
        """Return the progress now, with the losses since the last step."""
        done = min(self._stage + self._pair * self.per_pair + self._position, self.total - 1)
        losses, self._losses = tuple(self._losses), []
        return Step(done, self.total, text, losses, preview)

    def stage(self, text: str) -> Step:
        """Count a finished stage (never the last unit, which :meth:`finish` takes)."""
        self._stage = min(self._stage + 1, self.stages - 1)
        return self.step(text)

    def finish(self, text: str) -> Step:
        """Return the final step: everything done."""
        return Step(self.total, self.total, text, tuple(self._losses))

    def follow(self, events: Generator[Any, None, T]) -> Generator[Step, None, T]:
        """Run an engine generator, yielding steps for its stages and (some) iterations.

        Parameters
        ----------
        events : generator
            :func:`~src_training.engine.registration.register_pair` or
            :func:`~src_training.engine.series.register_stack`.

        Returns
        -------
        generator
            Yields :class:`Step`, returns what ``events`` returns.
        """
        while True:
            try:
                item = next(events)
            except StopIteration as end:
                return end.value
            step = self._event(item) if hasattr(item, "iteration") else self.stage(item.what)
            if step is not None:
                yield step

    def _event(self, event: OptimiseEvent) -> Step | None:
        offset, count = self.schedule[(event.stage, event.level)]
        position = offset + event.iteration
        if self._key is not None and position <= self._position:
            self._pair += 1  # the next pair (frame) started
        self._position = position
        key = (self._pair, event.stage, event.level)
        changed, previous, self._key = key != self._key, self._key, key
        stage = "affine " if event.stage == "affine" else ""
        frame = f"{self._pair + 1}:" if self.pairs > 1 else ""
        level = f"{frame}{stage}L{event.level + 1}"
        self._losses.append((self._pair * self.per_pair + position, event.loss, level))
        now = time.perf_counter()
        if not changed and now - self._last < THROTTLE:
            return None
        self._last = now
        preview = None
        if changed and self.watch is not None and previous is not None:
            preview = self.watch.take()
        frame = f"frame pair {self._pair + 1}/{self.pairs}: " if self.pairs > 1 else ""
        factor = 2 ** (self.levels - 1 - event.level)  # the pyramid halves each axis per level
        size = "full resolution" if factor == 1 else f"1/{factor} resolution"
        text = (
            f"{frame}{stage}level {event.level + 1}/{self.levels} ({size}), iteration "
            f"{event.iteration}/{count}, loss {event.loss:.4g}"
        )
        return self.step(text, preview)
