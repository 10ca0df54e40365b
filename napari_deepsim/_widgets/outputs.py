"""The one planner of a result's layers, for every widget: one step per layer.

A :class:`LayerPlan` collects the layer changes of a result as steps that the widget runs
one per turn of the event loop (so the window never freezes for more than one layer).
A layer of the same name and kind left by an earlier result gets the new data in place
(napari collects garbage each time it removes a layer, which can take most of a second);
any other layer of that name is removed and a new one added, tagged with the run's key
(see :func:`~napari_deepsim._widgets.controls.add_output`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_deepsim._widgets.controls import add_output

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer


class LayerPlan:
    """The steps that add, update or remove a result's layers, in order.

    Parameters
    ----------
    viewer : napari.Viewer
        Where the layers go.
    key : str
        The source key the new layers are tagged with.
    grid : tuple
        Their scale and translate (the fixed layer's).
    suffix : str
        Appended to every name (a kept run's number, ``" #2"``).
    old : dict of str to Layer, optional
        Layers of an earlier result by name, to update in place where they fit; those
        left over are removed by :meth:`finish`.
    """

    def __init__(
        self,
        viewer: napari.Viewer,
        key: str,
        grid: tuple[Any, Any],
        suffix: str = "",
        old: dict[str, Layer] | None = None,
    ) -> None:
        self.viewer, self.key, self.grid, self.suffix = viewer, key, grid, suffix
        self.old = {} if old is None else old
        self.steps: list[Callable[[], None]] = []

    def add(self, kind: str, data: Any, label: str, **style: Any) -> None:
        """Plan one layer: the earlier one of its name updated, or a new one added.

        Parameters
        ----------
        kind : str
            ``"image"``, ``"labels"``, ``"points"`` or ``"vectors"``.
        data : array-like
            Its data.
        label : str
            Its name (the suffix is appended).
        **style
            Its look, as for :func:`~napari_deepsim._widgets.controls.add_output`.
        """
        name = f"{label}{self.suffix}"
        layer = self.old.pop(name, None)
        if layer is not None and _reusable(layer, kind, data):
            self.steps.append(partial(update_layer, layer, data, name, self.grid, style))
            return
        if layer is not None:
            self.steps.append(partial(_remove_layer, self.viewer, layer))
        self.steps.append(
            partial(add_output, self.viewer, kind, data, name, self.key, self.grid, **style)
        )

    def finish(self, stale: list[Layer] | tuple[Layer, ...] = ()) -> list[Callable[[], None]]:
        """Return the steps, removing last the earlier layers no new one took over."""
        removed = [*self.old.values(), *stale]
        return [*self.steps, *(partial(_remove_layer, self.viewer, layer) for layer in removed)]


def _remove_layer(viewer: napari.Viewer, layer: Layer) -> None:
    """Remove a layer if it is still in the viewer."""
    if layer in viewer.layers:
        viewer.layers.remove(layer)


def _reusable(layer: Layer, kind: str, data: Any) -> bool:
    """Whether a result layer can take new data in place (same kind and dimensions)."""
    if type(layer).__name__.lower() != kind:
        return False
    return bool(np.ndim(data) == np.ndim(layer.data))


def update_layer(
    layer: Layer, data: Any, name: str, grid: tuple[Any, Any], style: dict[str, Any]
) -> None:
    """Give a result layer new data, grid and look (its visibility stays the user's)."""
    layer.name = name
    layer.data = data
    layer.scale, layer.translate = grid
    for attribute in ("colormap", "contrast_limits", "blending"):
        if attribute in style:
            setattr(layer, attribute, style[attribute])


def vector_scale(vectors: np.ndarray) -> float:
    """Return how much to lengthen displacement arrows so that they can be seen.

    Arrows are drawn at their true length when the mean displacement is at least a
    quarter of the distance between arrows; shorter ones are lengthened by a whole
    factor (at most 100) to about half that distance.

    Parameters
    ----------
    vectors : numpy.ndarray
        ``(N, 2, D)`` napari Vectors data: positions on a regular grid and projections.

    Returns
    -------
    float
        The factor, 1 for arrows long enough.
    """
    positions = np.unique(vectors[:, 0, -1])
    spacing = float(np.diff(positions).min()) if len(positions) > 1 else 1.0
    mean = float(np.linalg.norm(vectors[:, 1, -2:], axis=-1).mean()) if len(vectors) else 0.0
    if mean == 0.0 or mean >= spacing / 4:
        return 1.0
    return float(min(100, max(1, round(spacing / 2 / mean))))
