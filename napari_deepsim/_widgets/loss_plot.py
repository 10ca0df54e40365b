"""The loss plot of the widgets: the loss per step and the validation scores, with axes.

The loss (blue) is read on the left axis, the validation score (orange points; Dice
when the data has labels) on the right one, and the identity's validation Dice (no
registration at all) is a dashed line: a model is only useful above it. Each axis spans
at least a fixed share of its values (:data:`MIN_SCORE_SPAN` of Dice, :data:`MIN_LOSS_SPAN`
of the loss), so that a change in the fourth decimal stays a flat line instead of
filling the plot. Losses of different kinds (an optimisation's pyramid levels, each on
images of its own size) are separate segments, each named where it starts, never one
line jumping from level to level. When the validation frames have no labels the orange
points are the validation loss (lower is better) and there is no identity line.

The plot is painted by hand: napari brings no plotting library, and matplotlib is only an
optional dependency of this package (for figures), too heavy to require for one curve.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QFontMetrics, QPainter, QPaintEvent, QPen, QPolygonF
from qtpy.QtWidgets import QWidget

MIN_SCORE_SPAN = 0.05  # Dice axis: at least 0.05 from bottom to top
MIN_LOSS_SPAN = 0.1  # loss axis: at least 10 % of the largest loss magnitude
LOSS_COLOUR, SCORE_COLOUR, AXIS_COLOUR = "deepskyblue", "orange", "gray"


def value_range(values: Sequence[float], min_span: float) -> tuple[float, float]:
    """Return the axis range of ``values``: their extent, widened to ``min_span``.

    Parameters
    ----------
    values : sequence of float
        Finite values (at least one).
    min_span : float
        The smallest distance from the bottom to the top of the axis.

    Returns
    -------
    low, high : float
        Centred on the values when widened.
    """
    low, high = float(min(values)), float(max(values))
    span = max(high - low, min_span, 1e-12)
    middle = (low + high) / 2
    return middle - span / 2, middle + span / 2


class LossPlot(QWidget):
    """A small plot of a loss per step (or iteration) and validation scores.

    Parameters
    ----------
    x_label : str
        What the horizontal axis counts (``step``, ``iteration``).
    score_label : str
        What the validation points are (``validation Dice``).
    """

    def __init__(self, x_label: str = "step", score_label: str = "validation Dice") -> None:
        super().__init__()
        self.setMinimumHeight(160)
        self.x_label, self.score_label = x_label, score_label
        self.losses: list[tuple[int, float]] = []
        self.segments: list[tuple[int, str]] = []  # (index of its first loss, its name)
        self.validation: list[tuple[int, float]] = []
        self.baseline: float | None = None
        self.by_loss = False
        self.steps = 1
        self._tip()

    def _tip(self) -> None:
        tip = f"Blue: the loss per {self.x_label} (left axis, lower is better)"
        if self.by_loss:
            tip += (
                f". Orange: the {self.score_label} (right axis, lower is better): the "
                "validation frames have no labels, so no Dice is scored"
            )
        elif self.score_label:
            tip += (
                f". Orange: the {self.score_label} (right axis, higher is better); dashed: "
                "the identity's (no registration), which the model has to beat"
            )
        self.setToolTip(tip)

    def clear(self, steps: int, baseline: float | None = None) -> None:
        """Forget the points of the last run and set the x range to ``steps``.

        Parameters
        ----------
        steps : int
            Steps of the coming run.
        baseline : float, optional
            The identity's validation score, drawn as a dashed line.
        """
        self.losses, self.segments, self.validation = [], [], []
        self.steps, self.baseline = max(1, steps), baseline
        if self.by_loss:
            self.by_loss, self.score_label = False, "validation Dice"
            self._tip()
        self.update()

    def judge_by_loss(self) -> None:
        """Plot the validation loss as the score: the validation frames have no labels."""
        self.by_loss, self.score_label, self.baseline = True, "validation loss", None
        self._tip()
        self.update()

    def add_loss(self, step: int, loss: float, segment: str | None = None) -> None:
        """Add the loss of a step (or iteration).

        Parameters
        ----------
        step : int
            Its position on the horizontal axis.
        loss : float
            Its value.
        segment : str, optional
            What kind of loss it is (``L2``: the second pyramid level); a new name
            starts a new segment of the curve, not joined to the one before.
        """
        if segment is not None and (not self.segments or self.segments[-1][1] != segment):
            self.segments.append((len(self.losses), segment))
        self.losses.append((step, loss))
        self.update()

    def add_validation(self, step: int, value: float) -> None:
        """Add a validation score (Dice, or loss without labels)."""
        self.validation.append((step, value))
        self.update()

    def loss_range(self) -> tuple[float, float] | None:
        """Return the left axis' range (None before the first finite loss)."""
        values = [v for _, v in self.losses if np.isfinite(v)]
        if not values:
            return None
        magnitude = max(abs(min(values)), abs(max(values)))
        return value_range(values, MIN_LOSS_SPAN * magnitude)

    def score_range(self) -> tuple[float, float] | None:
        """Return the right axis' range, which holds the baseline (None without scores)."""
        values = [v for _, v in self.validation if np.isfinite(v)]
        if self.baseline is not None:
            values.append(self.baseline)
        return value_range(values, MIN_SCORE_SPAN) if values else None

    def _area(self) -> QRectF:
        """Return the rectangle inside the axes, leaving room for ticks, names and legend."""
        font = QFontMetrics(self.font())
        ranges = [r for r in (self.loss_range(), self.score_range()) if r is not None]
        ticks = ["0.0000", *(_tick(value) for r in ranges for value in r)]
        side = max(font.horizontalAdvance(text) for text in ticks) + 6
        top = font.height() + 6
        bottom = 2 * font.height() + 4
        return QRectF(
            side,
            top,
            max(1, self.width() - 2 * side),
            max(1, self.height() - top - bottom),
        )

    def _points(
        self,
        points: list[tuple[int, float]],
        value_range: tuple[float, float],
        area: QRectF,
    ) -> QPolygonF:
        low, high = value_range
        return QPolygonF(
            [
                QPointF(
                    area.left() + area.width() * step / self.steps,
                    area.bottom() - area.height() * (value - low) / (high - low),
                )
                for step, value in points
                if np.isfinite(value)
            ]
        )

    def paintEvent(self, _event: QPaintEvent) -> None:
        """Draw the axes, the loss curve, the validation points and the identity line."""
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        area = self._area()
        height = QFontMetrics(self.font()).height()
        painter.setPen(QPen(QColor(AXIS_COLOUR)))
        painter.drawRect(area)
        self._x_axis(painter, area, height)
        losses = self.loss_range()
        if losses is not None:
            self._losses(painter, area, losses)
            self._y_ticks(painter, area, losses, left=True)
            last = f" ({self.segments[-1][1]})" if self.segments else ""
            painter.drawText(QPointF(area.left(), height), f"loss {self.losses[-1][1]:.4g}{last}")
        scores = self.score_range()
        if scores is not None:
            self._scores(painter, area, scores, height)
        painter.end()

    def _losses(self, painter: QPainter, area: QRectF, losses: tuple[float, float]) -> None:
        """Draw each segment of the loss on its own, named where it starts if there is room."""
        starts = [start for start, _ in self.segments] or [0]
        ends = [*starts[1:], len(self.losses)]
        font = QFontMetrics(self.font())
        free = area.left()  # where the next name may start without covering the last
        for index, (start, end) in enumerate(zip(starts, ends, strict=True)):
            points = self._points(self.losses[start:end], losses, area)
            if not len(points):
                continue
            painter.setPen(QPen(QColor(LOSS_COLOUR), 1.5))
            painter.drawPolyline(points)
            if not self.segments:
                continue
            first, name = points[0], self.segments[index][1]
            painter.setPen(QPen(QColor(AXIS_COLOUR), 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(first.x(), area.top()), QPointF(first.x(), area.bottom()))
            width = font.horizontalAdvance(name)
            x = min(max(first.x() + 2, free), area.right() - width - 2)
            if x >= free:
                painter.drawText(QPointF(x, area.top() + font.ascent() + 2), name)
                free = x + width + 4

    def _x_axis(self, painter: QPainter, area: QRectF, height: int) -> None:
        for step in (0, self.steps // 2, self.steps):
            x = area.left() + area.width() * step / self.steps
            painter.drawLine(QPointF(x, area.bottom()), QPointF(x, area.bottom() + 3))
            text = str(step)
            width = QFontMetrics(self.font()).horizontalAdvance(text)
            painter.drawText(QPointF(x - width / 2, area.bottom() + height + 2), text)
        box = QRectF(area.left(), area.bottom() + height + 2, area.width(), height + 2)
        painter.drawText(box, int(Qt.AlignmentFlag.AlignHCenter), self.x_label)

    def _y_ticks(
        self,
        painter: QPainter,
        area: QRectF,
        value_range: tuple[float, float],
        left: bool,
    ) -> None:
        font = QFontMetrics(self.font())
        for value, y in zip(value_range, (area.bottom(), area.top() + font.ascent()), strict=True):
            text = _tick(value)
            x = area.left() - font.horizontalAdvance(text) - 3 if left else area.right() + 3
            painter.drawText(QPointF(x, y), text)

    def _scores(
        self, painter: QPainter, area: QRectF, scores: tuple[float, float], height: int
    ) -> None:
        colour = QColor(SCORE_COLOUR)
        if self.baseline is not None:
            painter.setPen(QPen(colour, 1, Qt.PenStyle.DashLine))
            line = self._points([(0, self.baseline), (self.steps, self.baseline)], scores, area)
            painter.drawPolyline(line)
            painter.drawText(
                QPointF(area.left() + 3, line[0].y() - 3),
                f"identity {self.baseline:.3f}",
            )
        painter.setPen(QPen(colour, 2))
        painter.setBrush(colour)
        points = self._points(self.validation, scores, area)
        painter.drawPolyline(points)
        for point in points:
            painter.drawEllipse(point, 3, 3)
        self._y_ticks(painter, area, scores, left=False)
        text = self.score_label + (f" {self.validation[-1][1]:.4g}" if self.validation else "")
        width = QFontMetrics(self.font()).horizontalAdvance(text)
        painter.drawText(QPointF(area.right() - width, height), text)


def _tick(value: float) -> str:
    """Format an axis end with three significant digits (the margins fit the text)."""
    return f"{value:.3g}"
