"""What training reports and how it is set up: events, settings, file names beside a model.

:class:`StepEvent` and :class:`ValidationEvent` are what a run yields to its consumers
(a terminal progress bar, the CSV log, a napari widget); :class:`TrainConfig` holds
the optimisation settings both trainers share.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from src_training.data.augment import AugmentConfig
from src_training.runtime.precision import check_precision

LOG_EVERY = 10  # steps between reads of the losses on a GPU


@contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it.

    Only the main thread receives signals; elsewhere (a napari worker, which stops
    through its ``stop`` callback) the block runs as it is, and so it does where SIGINT
    is ignored (a shell's background job: the terminal's Ctrl-C is not for it).
    """
    main = threading.current_thread() is threading.main_thread()
    if not main or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, _frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


@dataclass(frozen=True)
class StepEvent:
    """One optimisation step finished.

    Attributes
    ----------
    step, steps : int
        The step just finished (1-based) and the total.
    loss : float
        Training loss of the latest step whose loss was read: the losses stay on the
        device and are read every ``log_every`` steps (see :class:`TrainConfig`).
    terms : dict
        Named parts of that loss (e.g. ``similarity``, ``regularisation``).
    seconds : float
        Wall time since this run (or resumption) started.
    history : tuple of (int, float)
        The ``(step, loss)`` of every step read at this event, oldest first; empty
        between reads. A plot that adds these points gets every step's loss.
    """

    step: int
    steps: int
    loss: float
    terms: dict[str, float]
    seconds: float
    history: tuple[tuple[int, float], ...] = ()


@dataclass(frozen=True)
class ValidationEvent:
    """Scores on the validation data after ``step``.

    Attributes
    ----------
    step, steps : int
        Progress.
    scores : dict
        ``dice`` (when labels exist) and ``loss``.
    best : bool
        Whether this is the best validation so far (and was saved as the model).
    seconds : float
        Wall time since this run started.
    """

    step: int
    steps: int
    scores: dict[str, float]
    best: bool
    seconds: float


Event = StepEvent | ValidationEvent


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings shared by both trainers.

    Attributes
    ----------
    steps : int
        Optimisation steps in total (a resumed run continues up to this).
    batch_size : int
        Pairs (or images) per step and process.
    lr : float
        Adam learning rate.
    crop : int or None
        Side of random training crops; None trains on whole images.
    seed : int
        Seed of every random choice.
    max_offset : int
        Registration pairs: largest frame distance (the paper's 2).
    augment : AugmentConfig
        Random affine and noise applied to each training pair/image.
    val_every : int
        Validate every this many steps (and at the end).
    checkpoint_every : int
        Save ``.last.pt`` every this many steps (and at the end or when stopped).
    precision : str
        ``auto``, ``fp32``, ``bf16`` or ``fp16`` (see :mod:`src_training.runtime.precision`).
    compile : bool
        Run the network through :func:`torch.compile`.
    log_every : int or None
        Read the losses from the device (and write the log) every this many steps, and
        at the first step, validations, checkpoints and the end. None: every step on
        the CPU (reading costs nothing there), every :data:`LOG_EVERY` on a GPU.
    """

    steps: int = 1000
    batch_size: int = 4
    lr: float = 1e-4
    crop: int | None = None
    seed: int = 0
    max_offset: int = 2
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    val_every: int = 100
    checkpoint_every: int = 100
    precision: str = "auto"
    compile: bool = False
    log_every: int | None = None

    def __post_init__(self) -> None:
        if self.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {self.steps}")
        if self.batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {self.batch_size}")
        if not 0 < self.lr < float("inf"):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if self.crop is not None and self.crop < 8:
            raise ValueError(f"--crop must be at least 8 pixels, got {self.crop}")
        if self.val_every < 1 or self.checkpoint_every < 1:
            raise ValueError("validation and checkpoint intervals must be at least 1 step")
        if self.log_every is not None and self.log_every < 1:
            raise ValueError(f"--log-every must be at least 1 step, got {self.log_every}")
        check_precision(self.precision)

    def to_json(self) -> dict[str, Any]:
        """Return the settings as plain JSON values."""
        return asdict(self)


def last_checkpoint_path(out: str | Path) -> Path:
    """``R.pt`` -> ``R.last.pt``: the resumable checkpoint next to a model file."""
    out = Path(out)
    return out.with_name(out.stem + ".last" + out.suffix)


def log_path(out: str | Path) -> Path:
    """``R.pt`` -> ``R.csv``: the training curves next to a model file."""
    return Path(out).with_suffix(".csv")


LOG_FIELDS = ("step", "seconds", "loss", "similarity", "regularisation", "val_dice", "val_loss")
