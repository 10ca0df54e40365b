"""Optional :func:`torch.compile` of a network, and one sentence when it fails.

``torch.compile`` compiles lazily: the network is traced and its kernels are built on
the first call (and the backward pass on the first backward), with a C++ compiler on
the CPU and Triton on a GPU. A missing or broken toolchain therefore shows as an
exception from ``torch._dynamo`` or ``torch._inductor`` in the middle of the first
step; :func:`compile_failure` turns those into one sentence naming the fix.
"""

from __future__ import annotations

import torch
from torch import nn

_COMPILER_MODULES = ("torch._dynamo", "torch._inductor")


def compile_network(network: nn.Module) -> nn.Module:
    """Wrap a network in :func:`torch.compile` (it compiles on its first call).

    Parameters
    ----------
    network : nn.Module
        The network, or its distributed wrapper.

    Returns
    -------
    nn.Module
        The compiled module; it shares its parameters with ``network``.
    """
    return torch.compile(network)


def compile_failure(error: BaseException) -> ValueError | None:
    """Return the refusal of an error raised by the compiler, or None for any other error.

    Parameters
    ----------
    error : BaseException
        An exception raised while running a compiled network.

    Returns
    -------
    ValueError or None
        ``--compile failed ...; train without --compile`` for errors of
        ``torch._dynamo`` or ``torch._inductor``; None otherwise.
    """
    if not type(error).__module__.startswith(_COMPILER_MODULES):
        return None
    inner = getattr(error, "inner_exception", None) or error  # what the backend raised
    lines = [line.strip() for line in str(inner).splitlines() if line.strip()]
    cause = f"{type(inner).__name__}: {lines[0]}" if lines else type(inner).__name__
    if len(cause) > 160:
        cause = cause[:157] + "..."
    return ValueError(
        f"--compile failed: torch.compile could not build the network ({cause}); "
        "train without --compile (on a CPU it needs a working C++ compiler)"
    )
