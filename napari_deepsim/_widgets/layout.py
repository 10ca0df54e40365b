"""How every widget sits in its dock: one column in a vertical scroll area that fits.

napari stacks docked widgets in one column at the side of the canvas, or the user puts
two side by side; on a 1366×768 screen each then gets a few hundred pixels either way.
:func:`scrolled` puts a widget's parts in a column inside a scroll area that scrolls
only vertically, keeps a share of the height and the width of its narrowest layout (so
a second dock cannot squeeze it to a sliver or cut a control off) and lets every part
shrink to a narrow column: combo boxes stop growing with their longest item (a built-in
model's description) and long lines wrap.
"""

from __future__ import annotations

from qtpy.QtCore import QSize, Qt
from qtpy.QtWidgets import QComboBox, QFrame, QLabel, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

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
