"""Training inputs from layers, and how a finished run is judged (no Qt, no torch at import).

:func:`stack_layers` stacks two or more 2D images (or 3D volumes) of one shape as the
frames of a 2D+t (or 3D+t) stack, so that separate layers train a model as a stack
would, and :func:`verdict` says what to change when a run ended without beating the
identity (the engine's ``identity_dice``, the dashed line of the training plot), or,
when the validation frames have no labels, without lowering the validation loss.
"""

from __future__ import annotations

import numpy as np

BEATEN_BY = 0.002  # validation Dice above the identity's by less than this: no better
FALLEN_BY = 0.002  # validation loss below its first value by less than this share: no better


def stack_layers(arrays: list[np.ndarray], names: list[str]) -> np.ndarray:
    """Stack two or more layers of one shape as the frames of one stack.

    Parameters
    ----------
    arrays : list of numpy.ndarray
        2D images or 3D volumes, one per layer.
    names : list of str
        The layers' names, for messages.

    Returns
    -------
    numpy.ndarray
        ``(T, H, W)`` or ``(T, D, H, W)``: a 2D+t or 3D+t stack.
    """
    if len(arrays) < 2:
        raise ValueError(
            "select two or more layers under 'or layers' (they are the frames), or none to "
            "use the image stack"
        )
    shapes = {array.shape for array in arrays}
    if len(shapes) > 1:
        listed = ", ".join(f"{n!r} {a.shape}" for n, a in zip(names, arrays, strict=True))
        raise ValueError(
            f"the layers to stack have different shapes ({listed}); select layers of one shape"
        )
    if arrays[0].ndim not in (2, 3):
        raise ValueError(
            f"the layers to stack are {arrays[0].ndim}D; select 2D images or 3D volumes"
        )
    return np.stack(arrays)


def verdict(
    scores: list[float], baseline: float | None, steps: int, by_loss: bool = False
) -> str | None:
    """Return what to change when a run ended without beating the identity.

    Parameters
    ----------
    scores : list of float
        The run's validation scores, in order: Dice, or the validation loss when the
        validation frames have no labels (``by_loss``).
    baseline : float or None
        The identity's validation Dice (:func:`~src_training.engine.arrays.identity_dice`);
        None by loss.
    steps : int
        The steps the run was set to.
    by_loss : bool
        The validation frames have no labels: the run is judged by whether the
        validation loss fell from the first validation to the last.

    Returns
    -------
    str or None
        ``train longer: …`` naming the controls to change; None when the last score
        beat the identity, the validation loss fell, or nothing was scored.
    """
    fix = (
        f"raise 'steps' (now {steps}, e.g. to {max(1000, 10 * steps)}) or the 'learning "
        "rate', or lower 'λ' if the field barely moves"
    )
    if by_loss:
        if len(scores) < 2 or scores[-1] < scores[0] - FALLEN_BY * abs(scores[0]):
            return None
        return (
            f"train longer: the validation frames have no labels, so the run was judged by "
            f"the validation loss, which did not fall ({scores[0]:.4g} at the first "
            f"validation, {scores[-1]:.4g} at the last); {fix}"
        )
    if baseline is None or not scores or scores[-1] > baseline + BEATEN_BY:
        return None
    return (
        f"train longer: the validation Dice {scores[-1]:.3f} did not beat the identity's "
        f"{baseline:.3f} (no registration); {fix}"
    )
