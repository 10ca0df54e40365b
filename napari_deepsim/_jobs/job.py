"""What a registration job is: its plain arrays and settings in, its arrays out (no Qt).

The Register and Compare widgets copy their layers into a :class:`Job` on the GUI
thread; :func:`napari_deepsim._jobs.register.run` returns a :class:`Result` with every
overlay already drawn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from napari_deepsim._jobs.optimise import OptimiseSpec
    from src_training.engine.optimisation import OptimisationSummary
    from src_training.engine.public import ModelFile

CHECKER_TILES = 8


@dataclass
class Job:
    """Everything the worker needs, as plain arrays and values (no layers)."""

    fixed: np.ndarray
    moving: np.ndarray
    fixed_name: str
    moving_name: str
    model: str | ModelFile | None
    device: str
    spacing: int
    stack: bool
    reference: int | str
    moving_labels: np.ndarray | None = None
    fixed_labels: np.ndarray | None = None
    extras: list[tuple[np.ndarray, bool]] = field(default_factory=list)
    grid: bool = True
    vectors: bool = False
    checkerboard: bool = True
    timing_runs: int = 1  # > 1: one untimed warm-up pass, then the fastest of this many
    optimise: OptimiseSpec | None = None  # optimise the field (refining the model's, if any)
    preview: bool = True  # a pair's warped image after each pyramid level, while optimising
    frames_per_pass: int = 1  # a stack's frames per forward pass: progress (and Stop) per frame
    moving_as_given: np.ndarray | None = None  # before it was placed on the fixed grid


@dataclass
class Result:
    """What the worker computed; ``field`` is ``(ndim, *spatial)`` or ``(T, 2, H, W)``."""

    model: ModelFile | None
    field: np.ndarray
    warped: np.ndarray
    jacobian: np.ndarray
    folds: np.ndarray
    folding_percent: float
    sdlogj: float
    seconds: float
    device: str
    predict_seconds: float = 0.0
    warped_labels: np.ndarray | None = None
    extras: list[np.ndarray] = field(default_factory=list)
    grid: np.ndarray | None = None  # the warped lines as an image of the spatial shape
    vectors: np.ndarray | None = None
    checkerboard: np.ndarray | None = None
    fold_points: np.ndarray | None = None  # a volume's folds as points, not a label map
    dice: tuple[float, float] | None = None
    optimisation: OptimisationSummary | None = None
    warnings: list[str] = field(default_factory=list)  # the data is unlike the model's
    frame_pairs: list[tuple[int, int]] = field(default_factory=list)  # (moving, fixed) optimised
    planned_pairs: int = 0  # the frame pairs a stack's optimisation would have run to the end
