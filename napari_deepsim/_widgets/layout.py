"""How every widget sits in its dock: one column in a vertical scroll area that fits.

napari stacks docked widgets in one column at the side of the canvas, or the user puts
two side by side; on a 1366×768 screen each then gets a few hundred pixels either way.
:func:`scrolled` puts a widget's parts in a column inside a scroll area that scrolls
only vertically, keeps a share of the height and the width of its narrowest layout (so
a second dock cannot squeeze it to a sliver or cut a control off) and lets every part
shrink to a narrow column: combo boxes stop growing with their longest item (a built-in
model's description) and long lines wrap. A row of buttons or tiles is a
:class:`Reflow`: as many side by side as fit the width, the rest on the lines below, so
no button is cut when a table or tiles make the column narrow.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtGui import QResizeEvent
from qtpy.QtWidgets import (
    QComboBox,
    QFrame,
    QGridLayout,
    QLabel,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

MIN_HEIGHT = 220  # pixels of a dock's scroll area: a few controls and a button at least
SLACK = 4  # pixels the styled scroll bar may take beyond its size hint
COMBO_CHARACTERS = 10  # a combo box is as wide as this many characters, or its column


class Column(QScrollArea):
    """A scroll area that scrolls vertically and is never narrower than its content."""

    def __init__(self) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def minimumSizeHint(self) -> QSize:
        """Return the content's narrowest width beside the scroll bar, and :data:`MIN_HEIGHT`."""
        inner = self.widget().minimumSizeHint().width() if self.widget() is not None else 0
        bar = self.verticalScrollBar().sizeHint().width() + SLACK
        return QSize(inner + bar, MIN_HEIGHT)


def scrolled(owner: QWidget, *parts: QWidget) -> QWidget:
    """Lay ``parts`` out in one column inside a vertical scroll area filling ``owner``.

    Parameters
    ----------
    owner : QWidget
        The docked widget; it must not have a layout yet.
    *parts : QWidget
        Its sections, top to bottom.

    Returns
    -------
    QWidget
        The panel inside the scroll area (holding the parts).
    """
    panel = QWidget()
    column = QVBoxLayout(panel)
    for part in parts:
        column.addWidget(part)
    column.addStretch()
    fit_width(panel)
    scroll = Column()
    scroll.setWidget(panel)
    outer = QVBoxLayout(owner)
    outer.setContentsMargins(0, 0, 0, 0)
    outer.addWidget(scroll)
    return panel


def fit_width(panel: QWidget) -> None:
    """Let the combo boxes and labels under ``panel`` shrink to a narrow column.

    Parameters
    ----------
    panel : QWidget
        A widget whose children are laid out; call again after adding combo boxes.
    """
    for combo in panel.findChildren(QComboBox):
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(COMBO_CHARACTERS)
    for label in panel.findChildren(QLabel):
        if len(label.text()) > COMBO_CHARACTERS * 3 or not label.text():  # sentences, not names
            label.setWordWrap(True)
            label.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)


class Reflow(QWidget):
    """Widgets in a grid of as many equal columns as fit the width (one at least).

    Each column is as wide as the widest widget's size hint, so every widget is shown
    whole; a narrow dock puts them one under another instead of cutting them off.

    Parameters
    ----------
    widgets : list of QWidget, optional
        The widgets, in reading order.
    """

    def __init__(self, widgets: list[QWidget] | None = None) -> None:
        super().__init__()
        self.grid = QGridLayout(self)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.items: list[QWidget] = []
        self.columns = 0
        for widget in widgets or []:
            self.add(widget)

    def add(self, widget: QWidget) -> None:
        """Append a widget (after the others)."""
        self.items.append(widget)
        self._place(self.columns_for(self.width()) if self.columns else len(self.items))

    def clear(self) -> None:
        """Remove and delete every widget."""
        for widget in self.items:
            self.grid.removeWidget(widget)
            widget.deleteLater()
        self.items, self.columns = [], 0

    def cell(self) -> int:
        """Return the width of a column: the widest size hint of the widgets."""
        return max((widget.sizeHint().width() for widget in self.items), default=0)

    def columns_for(self, width: int) -> int:
        """Return how many columns fit ``width`` pixels."""
        spacing = max(0, self.grid.horizontalSpacing())
        fit = (width + spacing) // max(1, self.cell() + spacing)
        return max(1, min(len(self.items), fit))

    def minimumSizeHint(self) -> QSize:
        """Return one column's width (the widest widget) and the grid's height now."""
        return QSize(self.cell(), self.grid.minimumSize().height())

    def resizeEvent(self, event: QResizeEvent) -> None:
        """Lay the widgets out again when a different number of columns fits."""
        super().resizeEvent(event)
        columns = self.columns_for(event.size().width())
        if columns != self.columns:
            self._place(columns)

    def _place(self, columns: int) -> None:
        for widget in self.items:
            self.grid.removeWidget(widget)
        for index, widget in enumerate(self.items):
            self.grid.addWidget(widget, *divmod(index, columns))
        for column in range(self.grid.columnCount()):
            self.grid.setColumnStretch(column, 1 if column < columns else 0)
        self.columns = columns
        self.updateGeometry()
