"""Sample data contributions: the synthetic noisy cells of :mod:`src_training.samples`."""

from __future__ import annotations

from typing import Any

from src_training.samples import noisy_cell_sequence

LayerData = tuple[Any, dict[str, Any], str]


def noisy_cell_pair() -> list[LayerData]:
    """Frames 0 (fixed) and 1 (moving) of the synthetic sequence, with their labels.

    Returns
    -------
    list of LayerData
        Fixed and moving images and their label maps (0 background, 1 cytoplasm,
        2 nucleus).
    """
    seq = noisy_cell_sequence()
    return [
        (seq.images[0], {"name": "fixed", "colormap": "gray"}, "image"),
        (seq.images[1], {"name": "moving", "colormap": "gray", "visible": False}, "image"),
        (seq.labels[0], {"name": "fixed labels", "opacity": 0.4}, "labels"),
        (seq.labels[1], {"name": "moving labels", "opacity": 0.4, "visible": False}, "labels"),
    ]


def noisy_cell_timelapse() -> list[LayerData]:
    """Return the whole 8-frame synthetic sequence as a 2D+t stack with labels.

    Returns
    -------
    list of LayerData
        The ``(8, 128, 128)`` image stack and its label stack.
    """
    seq = noisy_cell_sequence()
    return [
        (seq.images, {"name": "noisy cells", "colormap": "gray"}, "image"),
        (seq.labels, {"name": "noisy cells labels", "opacity": 0.4}, "labels"),
    ]
