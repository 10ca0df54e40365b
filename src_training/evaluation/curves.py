"""Convergence curves: validation Dice of training runs against step and wall time."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from src_training.evaluation.figures import new_figure, save_figure

CURVE_COLUMNS = ("step", "seconds", "val_dice")


@dataclass(frozen=True)
class Curve:
    """Validation Dice of one training run against step and wall time."""

    name: str
    steps: np.ndarray
    seconds: np.ndarray
    dice: np.ndarray


def read_validation_curve(path: str | Path, name: str | None = None) -> Curve:
    """Read the validation rows of a training log (``R.csv`` beside ``R.pt``).

    Parameters
    ----------
    path : str or Path
        A CSV written by training, with columns ``step``, ``seconds`` and ``val_dice``.
    name : str, optional
        The run's name; the file stem by default.

    Returns
    -------
    Curve
        The rows whose ``val_dice`` is filled in, in file order.

    Raises
    ------
    ValueError
        If the file lacks those columns or holds no validation row.
    """
    path = Path(path)
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in CURVE_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(
                f"{path} lacks the column(s) {', '.join(missing)} of a training log; pass the "
                ".csv that `deepsim train` writes beside the model"
            )
        rows = [row for row in reader if row["val_dice"]]
    if not rows:
        raise ValueError(
            f"{path} holds no validation Dice; train with --val-frames (validation data "
            "with labels) so that validation rows are logged"
        )
    return Curve(
        name or path.stem,
        np.array([int(row["step"]) for row in rows]),
        np.array([float(row["seconds"]) for row in rows]),
        np.array([float(row["val_dice"]) for row in rows]),
    )


def convergence_figure(path: str | Path, curves: Sequence[Curve], title: str = "") -> Path:
    """Plot validation Dice against step (left) and wall time (right), a line per run.

    Parameters
    ----------
    path : str or Path
        PNG file to write.
    curves : sequence of Curve
        From :func:`read_validation_curve`.
    title : str
        Figure title.

    Returns
    -------
    Path
        The written file.
    """
    figure = new_figure(10.0, 4.0)
    by_step, by_time = figure.subplots(1, 2, sharey=True)
    for curve in curves:
        by_step.plot(curve.steps, curve.dice, marker=".", label=curve.name)
        by_time.plot(curve.seconds, curve.dice, marker=".", label=curve.name)
    by_step.set_xlabel("training step")
    by_time.set_xlabel("wall time (s)")
    by_step.set_ylabel("validation Dice")
    for ax in (by_step, by_time):
        ax.grid(alpha=0.3)
    by_time.legend(fontsize=8, loc="lower right")
    if title:
        figure.suptitle(title, fontsize=10)
    return save_figure(figure, path)
