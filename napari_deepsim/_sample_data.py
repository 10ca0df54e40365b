"""Sample data: the synthetic noisy cells, and a Cell Tracking Challenge sequence.

The synthetic samples are made by :mod:`src_training.data.samples` (nothing shipped or
downloaded). The PhC-C2DH-U373 sample is downloaded once, when the user picks it from
the File > Open Sample menu, into the cache of :mod:`src_training.data.ctc`.
"""

from __future__ import annotations

from typing import Any

from src_training.engine.public import noisy_cell_sequence

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


def phc_u373() -> list[LayerData]:
    """Sequence 01 of the Cell Tracking Challenge's PhC-C2DH-U373, with segmentations.

    Downloads the training archive into the cache the first time (its SHA-256 is
    recorded then and checked on every later use).

    Returns
    -------
    list of LayerData
        The ``(T, H, W)`` phase-contrast frames and their instance segmentations
        (silver truth where available).
    """
    from napari.utils.notifications import show_info

    from src_training.engine.public import fetch, read_sequence

    folder = fetch("PhC-C2DH-U373", download=True, report=show_info)
    sequence = read_sequence(folder / "01")
    layers: list[LayerData] = [
        (
            sequence.frames,
            {"name": "U373 01", "colormap": "gray", "metadata": {"source": sequence.source}},
            "image",
        )
    ]
    if sequence.labels is not None:
        layers.append((sequence.labels, {"name": "U373 01 labels", "opacity": 0.4}, "labels"))
    return layers
