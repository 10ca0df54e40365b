"""Training losses kept on the device until they are read: one host sync per read.

Reading a loss (``loss.item()``) makes the host wait until the device has finished the
step; doing it every step leaves a GPU idle while the host prepares the next one.
:class:`DeviceLosses` keeps each step's loss and its named parts as a small tensor on
the device and reads all pending steps at once when asked.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor


class DeviceLosses:
    """The losses of the steps not yet read, and the last values read.

    Attributes
    ----------
    last : tuple of (float, dict)
        The latest loss read and its named parts (NaN and empty before any read).
    """

    def __init__(self) -> None:
        self._pending: list[tuple[int, float, list[str], Tensor]] = []
        self.last: tuple[float, dict[str, float]] = (float("nan"), {})

    def add(self, step: int, seconds: float, loss: Tensor, terms: dict[str, Tensor]) -> None:
        """Keep a step's loss and parts (detached, on their device) until the next read."""
        values = torch.stack([loss.detach().float(), *(t.detach().float() for t in terms.values())])
        self._pending.append((step, seconds, list(terms), values))

    def read(self) -> tuple[list[dict[str, Any]], tuple[int, float] | None]:
        """Read every pending step with one sync, up to the first non-finite loss.

        Returns
        -------
        rows : list of dict
            One log row per finite step (``step``, ``seconds``, ``loss`` and the parts),
            oldest first.
        bad : (int, float) or None
            The step and value of the first non-finite loss; the steps after it are
            dropped.
        """
        if not self._pending:
            return [], None
        pending, self._pending = self._pending, []
        values = torch.stack([v for *_, v in pending]).tolist()
        rows = []
        for (step, seconds, names, _), (loss, *parts) in zip(pending, values, strict=True):
            if not math.isfinite(loss):
                return rows, (step, loss)
            terms = dict(zip(names, parts, strict=True))
            rows.append({"step": step, "seconds": f"{seconds:.3f}", "loss": loss, **terms})
            self.last = (loss, terms)
        return rows, None
