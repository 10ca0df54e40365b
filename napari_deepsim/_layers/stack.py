"""Several layers chosen for training, stacked as the frames of one stack with their labels."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from napari.layers import Labels, Layer
from napari.utils.notifications import show_info

from napari_deepsim._jobs.train_data import stack_layers
from napari_deepsim._layers.choices import inputs, partner

if TYPE_CHECKING:
    import napari


def stacked_layers(
    viewer: napari.Viewer, chosen: list[Layer]
) -> tuple[np.ndarray, np.ndarray | None, str] | None:
    """Return layers as one stack, with their labels, and say so in a notification.

    Parameters
    ----------
    viewer : napari.Viewer
        Whose Labels layers are searched for each layer's labels.
    chosen : list of Layer
        Image layers of one shape (2D images or 3D volumes).

    Returns
    -------
    (images, labels, source) or None
        The stacked images, their stacked labels (when every layer has a labels layer of
        its name or shape) and where they came from; None when no layers are chosen.
    """
    if not chosen:
        return None
    names = [layer.name for layer in chosen]
    images = stack_layers([np.asarray(layer.data) for layer in chosen], names)
    found: list[Layer] = []
    for layer in chosen:
        labels = partner(layer, inputs(viewer, Labels), found)
        if labels is not None:
            found.append(labels)
    stacked = None
    if len(found) == len(chosen):
        stacked = np.stack([np.asarray(labels.data) for labels in found])
    kind = "3D+t" if images.ndim == 4 else "2D+t"
    show_info(
        f"Stacked the {len(chosen)} layers {', '.join(map(repr, names))} as frames 0-"
        f"{len(chosen) - 1} of one {kind} stack for training"
        + (", with their labels." if stacked is not None else " (without labels).")
    )
    return images, stacked, f"napari layers {', '.join(names)}"
