"""The loss plot of the training widgets: the loss per step and the validation scores."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF
from qtpy.QtGui import QColor, QPainter, QPaintEvent, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

MARGIN = 8


class LossPlot(QWidget):
    """A small plot of the training loss per step and the validation scores."""

    def __init__(self) -> None:
        super().__init__()
        self.setMinimumHeight(120)
        self.losses: list[tuple[int, float]] = []
        self.validation: list[tuple[int, float]] = []
        self.steps = 1

    def clear(self, steps: int) -> None:
        """Forget the points of the last run and set the x range to ``steps``.

        Parameters
        ----------
        steps : int
            Steps of the coming run.
        """
        self.losses, self.validation, self.steps = [], [], max(1, steps)
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        """Add the training loss of a step."""
        self.losses.append((step, loss))
        self.update()

    def add_validation(self, step: int, value: float) -> None:
        """Add a validation score (Dice, or loss without labels)."""
        self.validation.append((step, value))
        self.update()

    def _polygon(self, points: list[tuple[int, float]], low: float, high: float) -> QPolygonF:
        width = self.width() - 2 * MARGIN
        height = self.height() - 2 * MARGIN
        span = high - low or 1.0
        return QPolygonF(
            [
                QPointF(
                    MARGIN + width * step / self.steps,
                    MARGIN + height * (1 - (value - low) / span),
                )
                for step, value in points
            ]
        )

    def paintEvent(self, _event: QPaintEvent) -> None:
        """Draw the loss curve and the validation points, each scaled to the plot."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(QColor("gray")))
        painter.drawRect(self.rect().adjusted(0, 0, -1, -1))
        finite = [(s, v) for s, v in self.losses if np.isfinite(v)]
        if finite:
            values = [v for _, v in finite]
            painter.setPen(QPen(QColor("deepskyblue"), 1.5))
            painter.drawPolyline(self._polygon(finite, min(values), max(values)))
            painter.drawText(MARGIN + 2, MARGIN + 12, f"loss {values[-1]:.4g}")
        if self.validation:
            values = [v for _, v in self.validation]
            painter.setPen(QPen(QColor("orange"), 2))
            painter.setBrush(QColor("orange"))
            for point in self._polygon(self.validation, min(values), max(values)):
                painter.drawEllipse(point, 3, 3)
            painter.drawText(MARGIN + 2, MARGIN + 26, f"validation {values[-1]:.4g}")
        painter.end()
