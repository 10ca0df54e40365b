"""The loss plot of the widgets: the loss per step and the validation scores, on pyqtgraph.

The loss (blue) is read on the left axis, the validation score (orange points; Dice
when the data has labels) on the right one, and the identity's validation Dice (no
registration at all) is a dashed line: a model is only useful above it. Each axis spans
at least a fixed share of its values (:data:`MIN_SCORE_SPAN` of Dice, :data:`MIN_LOSS_SPAN`
of the loss), so that a change in the fourth decimal stays a flat line instead of
filling the plot. Losses of different kinds (an optimisation's pyramid levels, each on
images of its own size) are separate curves, each named where it starts, never one
line jumping from level to level. When the validation frames have no labels the orange
points are the validation loss (lower is better) and there is no identity line.

The line above the plot shows the latest values, or those under the mouse. pyqtgraph
draws it: right-click > Export… saves it as PNG (or SVG, CSV), as :meth:`LossPlot.export`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from qtpy.QtCore import QPointF, Qt
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_deepsim._widgets.tips import plot_tip

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
        self.setMinimumHeight(180)
        self.x_label, self.score_label = x_label, score_label
        self.losses: list[tuple[int, float]] = []
        self.segments: list[tuple[int, str]] = []  # (index of its first loss, its name)
        self.validation: list[tuple[int, float]] = []
        self.baseline: float | None = None
        self.by_loss, self._steps = False, 1
        self.readout, self.view = QLabel(""), pg.PlotWidget(background=None)
        self.readout.setWordWrap(True)
        self._build()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        for part in (self.readout, self.view):
            layout.addWidget(part)
        self._tip()

    def _build(self) -> None:
        """Make the axes, the scores' own view box on the right axis and the curves."""
        item = self.view.getPlotItem()
        item.hideButtons()
        item.setMouseEnabled(False, False)
        for side in ("left", "bottom", "right"):
            axis = item.getAxis(side)
            axis.setPen(pg.mkPen(AXIS_COLOUR))
            axis.setTextPen(pg.mkPen(AXIS_COLOUR))
            axis.enableAutoSIPrefix(False)  # a loss of 0.5 reads 0.5, not 500 (x0.001)
        item.setLabel("bottom", self.x_label)
        item.setLabel("left", "loss", color=LOSS_COLOUR)
        item.showAxis("right")
        self.scores = pg.ViewBox(enableMouse=False)
        item.scene().addItem(self.scores)
        item.getAxis("right").linkToView(self.scores)
        self.scores.setXLink(item)
        item.vb.sigResized.connect(lambda: self.scores.setGeometry(item.vb.sceneBoundingRect()))
        self.curves: list[pg.PlotDataItem] = []
        self.marks: list[pg.InfiniteLine] = []
        self.score_curve = pg.PlotDataItem(
            pen=pg.mkPen(SCORE_COLOUR, width=2), symbol="o", symbolSize=6,
            symbolBrush=SCORE_COLOUR, symbolPen=None,
        )  # fmt: skip
        self.scores.addItem(self.score_curve)
        self.identity = pg.InfiniteLine(
            angle=0, pen=pg.mkPen(SCORE_COLOUR, style=Qt.PenStyle.DashLine),
            label="identity {value:.3f}", labelOpts={"color": SCORE_COLOUR, "position": 0.15},
        )  # fmt: skip
        self.identity.setVisible(False)
        self.scores.addItem(self.identity)
        item.scene().sigMouseMoved.connect(self._hover)
        self._relabel()

    def _tip(self) -> None:
        self.setToolTip(plot_tip(self.x_label, self.score_label, self.by_loss))

    @property
    def steps(self) -> int:
        """The horizontal axis' length: the steps (or iterations) of the run."""
        return self._steps

    @steps.setter
    def steps(self, value: int) -> None:
        if value != self._steps:
            self._steps = max(1, int(value))
            self.view.getPlotItem().setXRange(0, self._steps, padding=0.02)

    def clear(self, steps: int, baseline: float | None = None) -> None:
        """Forget the points of the last run and set the x range to ``steps``.

        Parameters
        ----------
        steps : int
            Steps of the coming run.
        baseline : float, optional
            The identity's validation score, drawn as a dashed line.
        """
        item = self.view.getPlotItem()
        for curve in self.curves:
            item.removeItem(curve)
        for mark in self.marks:
            item.removeItem(mark)
        self.curves, self.marks = [], []
        self.losses, self.segments, self.validation = [], [], []
        self.baseline = baseline
        self._steps = 0
        self.steps = steps
        if self.by_loss:
            self.by_loss, self.score_label = False, "validation Dice"
            self._tip()
        self._relabel()
        self._redraw_scores()

    def judge_by_loss(self) -> None:
        """Plot the validation loss as the score: the validation frames have no labels."""
        self.by_loss, self.score_label, self.baseline = True, "validation loss", None
        self._tip()
        self._relabel()
        self._redraw_scores()

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
            starts a new curve, not joined to the one before.
        """
        item = self.view.getPlotItem()
        new = segment is not None and (not self.segments or self.segments[-1][1] != segment)
        if new or not self.curves:
            if new:
                self.segments.append((len(self.losses), str(segment)))
                mark = pg.InfiniteLine(
                    pos=step, angle=90, pen=pg.mkPen(AXIS_COLOUR, style=Qt.PenStyle.DotLine),
                    label=str(segment), labelOpts={"color": AXIS_COLOUR, "position": 0.92},
                )  # fmt: skip
                item.addItem(mark)
                self.marks.append(mark)
            curve = pg.PlotDataItem(pen=pg.mkPen(LOSS_COLOUR, width=1.5))
            item.addItem(curve)
            self.curves.append(curve)
        self.losses.append((step, loss))
        start = self.segments[-1][0] if self.segments else 0
        points = [(s, v) for s, v in self.losses[start:] if np.isfinite(v)]
        if points:
            self.curves[-1].setData(*np.asarray(points, dtype=float).T)
        span = self.loss_range()
        if span is not None:
            item.setYRange(*span, padding=0.05)
        self._relabel()

    def add_validation(self, step: int, value: float) -> None:
        """Add a validation score (Dice, or loss without labels)."""
        self.validation.append((step, value))
        self._redraw_scores()
        self._relabel()

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

    def export(self, path: str | Path, width: int = 800) -> Path:
        """Save the plot as an image (PNG by its suffix), ``width`` pixels wide.

        Parameters
        ----------
        path : str or Path
            Where to write it.
        width : int
            Its width in pixels (the height follows the plot's shape).

        Returns
        -------
        Path
            The file written.
        """
        from pyqtgraph.exporters import ImageExporter

        exporter = ImageExporter(self.view.getPlotItem())
        exporter.parameters()["width"] = int(width)
        exporter.export(str(path))
        return Path(path)

    def _redraw_scores(self) -> None:
        points = [(s, v) for s, v in self.validation if np.isfinite(v)]
        self.score_curve.setData(*(np.asarray(points, dtype=float).T if points else ([], [])))
        self.identity.setVisible(self.baseline is not None)
        if self.baseline is not None:
            self.identity.setValue(self.baseline)
        span = self.score_range()
        axis = self.view.getPlotItem().getAxis("right")
        axis.setVisible(span is not None)
        if span is not None:
            self.scores.setYRange(*span, padding=0.05)

    def _relabel(self) -> None:
        """Name the right axis and show the latest values above the plot."""
        axis = self.view.getPlotItem().getAxis("right")  # setLabel would show the axis
        axis.setLabel(self.score_label, color=SCORE_COLOUR)
        self.readout.setText(self._latest())

    def _latest(self) -> str:
        parts = []
        if self.losses:
            name = f" ({self.segments[-1][1]})" if self.segments else ""
            parts.append(f"loss {self.losses[-1][1]:.4g}{name}")
        if self.validation:
            parts.append(f"{self.score_label} {self.validation[-1][1]:.4g}")
        return ", ".join(parts)

    def _hover(self, position: QPointF) -> None:
        """Show the loss (and score) nearest the mouse along the horizontal axis."""
        box = self.view.getPlotItem().vb
        if not self.losses or not box.sceneBoundingRect().contains(position):
            self.readout.setText(self._latest())
            return
        self.readout.setText(self.values_at(box.mapSceneToView(position).x()))

    def values_at(self, x: float) -> str:
        """Say the loss (and validation score) nearest to step ``x``, as the readout does.

        Parameters
        ----------
        x : float
            A step (or iteration).

        Returns
        -------
        str
            ``iteration 12: loss 0.5432 (L2), validation Dice 0.81 at 10``.
        """
        index = int(np.argmin([abs(step - x) for step, _ in self.losses]))
        step, loss = self.losses[index]
        names = [name for start, name in self.segments if start <= index]
        text = f"{self.x_label} {step}: loss {loss:.4g}" + (f" ({names[-1]})" if names else "")
        if self.validation:
            at, score = min(self.validation, key=lambda sv: abs(sv[0] - x))
            text += f", {self.score_label} {score:.4g} at {at}"
        return text
