"""Memory checks before large allocations: a clear refusal instead of a crash.

An image too large for the machine should stop with a sentence that says how much
memory the job needs and what to do (crop, downsample, another device), not with the
operating system killing the process half-way. :func:`require_memory` compares an
estimate with what the device has free; where that cannot be known it checks nothing.
"""

from __future__ import annotations

from pathlib import Path

import torch

MEMINFO = Path("/proc/meminfo")


def available_memory(device: torch.device | str = "cpu") -> int | None:
    """Bytes of memory free for new allocations on a device, where that can be known.

    Parameters
    ----------
    device : torch.device or str
        ``cpu`` reads ``MemAvailable`` of ``/proc/meminfo`` (Linux); ``cuda`` asks
        the driver.

    Returns
    -------
    int or None
        Free bytes, or None where the platform does not say (then nothing is checked).
    """
    device = torch.device(device)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu" or not MEMINFO.is_file():
        return None
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def format_bytes(nbytes: float) -> str:
    """Write a byte count with a binary unit, e.g. ``3.2 GiB``.

    Parameters
    ----------
    nbytes : float
        A number of bytes.

    Returns
    -------
    str
        One decimal and the largest unit (B, KiB, MiB, GiB, TiB) that keeps it >= 1.
    """
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def require_memory(nbytes: int, what: str, device: torch.device | str, hint: str) -> None:
    """Refuse a job whose estimated memory exceeds what the device has free.

    Parameters
    ----------
    nbytes : int
        Estimated peak memory of the job.
    what : str
        The job, as the subject of the message (e.g. ``registering 1 pair of 512x512``).
    device : torch.device or str
        Where the job would run.
    hint : str
        What the user can do instead, ending the message.

    Raises
    ------
    ValueError
        If the estimate exceeds the free memory.
    """
    device = torch.device(device)
    free = available_memory(device)
    if free is not None and nbytes > free:
        raise ValueError(
            f"{what} needs about {format_bytes(nbytes)} but only {format_bytes(free)} of "
            f"{device.type} memory is free; {hint}"
        )
