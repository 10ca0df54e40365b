"""The zoom of the Compare metrics widget: every model's warp of one patch, side by side.

:class:`ZoomPanel` is a panel of :class:`~napari_deepsim._widgets.compare.widget.CompareWidget`,
which hands it each comparison's outcomes (:meth:`ZoomPanel.show`).
A rectangle drawn on the ``compare zoom`` Shapes layer selects a patch of the fixed
grid; the fixed and moving patches and every model's warped patch with its deformation
grid (in the model's colour) are shown as tiles, as many side by side as the dock's
width holds (:class:`~napari_deepsim._widgets.layout.Reflow`), each captioned with its
method's name wrapped to the tile's width.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from napari.layers import Shapes
from napari.utils.notifications import show_error
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QColor, QImage, QPainter, QPen, QPixmap, QPolygonF
from qtpy.QtWidgets import QLabel, QPushButton, QVBoxLayout, QWidget

from napari_deepsim._jobs.compare import Outcome, Zoom, zoom, zoom_box
from napari_deepsim._layers.choices import SOURCE
from napari_deepsim._widgets.layout import Reflow
from napari_deepsim._widgets.workers import error_message

if TYPE_CHECKING:
    import napari
    from magicgui.widgets import ComboBox

    from napari_deepsim._state.run import RunContext

PREFIX = "compare:"  # SOURCE metadata of the Compare widget's layers: PREFIX + model name
ZOOM_LAYER = "compare zoom"
TILE = 130  # side of a zoom tile in screen pixels: two fit a dock at 1366×768


def _tile(patch: Zoom, limits: tuple[float, float], color: str | None) -> QPixmap:
    """Render a patch (grey, with the layer's contrast limits) and its grid lines."""
    low, high = limits
    scaled = np.clip((patch.image - low) / max(high - low, 1e-12), 0.0, 1.0)
    grey = np.ascontiguousarray(np.round(scaled * 255).astype(np.uint8))
    height, width = grey.shape
    image = QImage(grey.data, width, height, width, QImage.Format.Format_Grayscale8).copy()
    factor = TILE / max(height, width)
    pixmap = QPixmap.fromImage(image).scaled(
        max(1, round(width * factor)),
        max(1, round(height * factor)),
        Qt.AspectRatioMode.IgnoreAspectRatio,
        Qt.TransformationMode.FastTransformation,
    )
    if color is not None and patch.lines:
        painter = QPainter(pixmap)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pen = QPen(QColor(color))
        pen.setWidthF(1.5)
        painter.setPen(pen)
        for line in patch.lines:
            points = [QPointF((c + 0.5) * factor, (r + 0.5) * factor) for r, c in line]
            painter.drawPolyline(QPolygonF(points))
        painter.end()
    return pixmap


class ZoomPanel:
    """The zoom rectangle and tiles of the Compare widget.

    The panel owns its button and tiles (laid out by the widget) and the patches shown
    (``zooms``); it reads the fixed layer from the widget's picker.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the rectangle is drawn.
    fixed : ComboBox
        The widget's fixed-layer picker.
    """

    def __init__(self, viewer: napari.Viewer, fixed: ComboBox) -> None:
        self.viewer = viewer
        self.fixed = fixed
        self.outcomes: list[Outcome] = []
        self.context: RunContext | None = None
        self.zooms: dict[str, Zoom] = {}
        self.zoom_button = QPushButton("Draw zoom rectangle")
        self.zoom_button.setToolTip(
            "Draw a rectangle on the image (a noisy patch) to see every model's warp on it"
        )
        self.zoom_button.clicked.connect(self.draw_zoom)
        self.tiles = Reflow()

    def show(self, outcomes: list[Outcome], context: RunContext) -> None:
        """Zoom on a comparison's outcomes, computed on the layers of ``context``."""
        self.outcomes, self.context = outcomes, context
        self.update_zoom()

    def _zoom_layer(self) -> Shapes | None:
        return next(
            (
                layer
                for layer in self.viewer.layers
                if isinstance(layer, Shapes) and layer.metadata.get(SOURCE) == PREFIX + "zoom"
            ),
            None,
        )

    def draw_zoom(self, *_args: Any) -> Shapes | None:
        """Add (or select) the ``compare zoom`` Shapes layer in rectangle-drawing mode.

        Returns
        -------
        Shapes or None
            The layer whose last rectangle is zoomed on, or None without a fixed layer.
        """
        fixed = self.fixed.value
        if fixed is None:
            show_error("Choose a fixed image layer before drawing a zoom rectangle.")
            return None
        layer = self._zoom_layer()
        if layer is None:
            layer = self.viewer.add_shapes(
                name=ZOOM_LAYER,
                ndim=fixed.ndim,
                scale=fixed.scale,
                translate=fixed.translate,
                edge_color="white",
                edge_width=2,
                face_color="transparent",
                metadata={SOURCE: PREFIX + "zoom"},
            )
            layer.events.data.connect(self.update_zoom)
        self.viewer.layers.selection.active = layer
        layer.mode = "add_rectangle"
        return layer

    def update_zoom(self, *_args: Any) -> None:
        """Show the fixed, moving and every model's warped patch in the last rectangle."""
        layer = self._zoom_layer()
        if layer is None or not len(layer.data) or not self.outcomes or self.context is None:
            return
        try:
            self._show_zoom(np.asarray(layer.data[-1]), self.context)
        except ValueError as err:
            show_error(error_message(err, "Zooming"))

    def _show_zoom(self, corners: np.ndarray, context: RunContext) -> None:
        fixed, moving = context.fixed, context.moving
        results = [o for o in self.outcomes if o.result is not None]
        if not results:
            return
        plane, rows, cols = zoom_box(corners, np.shape(fixed.data))
        fixed_data = np.asarray(fixed.data)
        self.zooms = {
            "fixed": zoom(fixed_data, None, plane, rows, cols),
            "moving": zoom(_on_grid(moving, fixed_data.shape), None, plane, rows, cols),
        }
        tiles: list[tuple[str, Zoom, tuple[float, float], str | None]] = [
            ("fixed", self.zooms["fixed"], tuple(fixed.contrast_limits), None),
            ("moving", self.zooms["moving"], tuple(moving.contrast_limits), None),
        ]
        for outcome in results:
            result = outcome.result
            assert result is not None
            patch = zoom(result.warped, result.field, plane, rows, cols)
            self.zooms[outcome.name] = patch
            tiles.append((outcome.name, patch, tuple(moving.contrast_limits), outcome.color))
        self.tiles.clear()
        for name, patch, limits, color in tiles:
            self.tiles.add(_captioned(name, _tile(patch, limits, color)))


def _captioned(name: str, pixmap: QPixmap) -> QWidget:
    """Return a tile: its method's name, wrapped to the tile's width, above the patch."""
    tile = QWidget()
    column = QVBoxLayout(tile)
    column.setContentsMargins(0, 0, 0, 0)
    caption = QLabel(name)
    caption.setWordWrap(True)
    caption.setFixedWidth(TILE)
    caption.setAlignment(Qt.AlignmentFlag.AlignCenter)
    image = QLabel()
    image.setPixmap(pixmap)
    column.addWidget(caption)
    column.addWidget(image)
    return tile


def _on_grid(moving: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Return the moving image on the fixed grid (resampled when the shapes differ)."""
    data = np.asarray(moving.data, np.float32)
    if data.shape == shape:
        return data
    from src_training.engine.public import resample

    return resample(data, shape, order=1)
