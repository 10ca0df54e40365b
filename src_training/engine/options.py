"""Options every front end reads from text the user typed (no torch: widgets import it)."""

from __future__ import annotations

OWN = "own"
"""The metric that refines a model's field with the one it was trained with (``--refine own``)."""


def parse_channels(text: str, option: str = "channels") -> tuple[int, ...]:
    """Read encoder channels written as ``"16,32,64"``.

    Parameters
    ----------
    text : str
        Comma-separated positive integers.
    option : str
        How the message names the setting (``--channels`` on the command line).

    Returns
    -------
    tuple of int
        The channels.
    """
    try:
        channels = tuple(int(part) for part in text.replace(" ", "").split(",") if part)
    except ValueError:
        channels = ()
    if not channels or min(channels) < 1:
        raise ValueError(f"{option} must be positive integers like 64,128,256; got {text!r}")
    return channels
