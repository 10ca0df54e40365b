"""Numerical precision of the networks: float32, or bfloat16/float16 autocast.

``fp32`` runs everything in float32. ``bf16`` and ``fp16`` run the networks under
:func:`torch.autocast` (convolutions and matrix products in the lower precision, their
weights and gradients stay float32); the code that needs float32 (the spatial
transformer, NCC's local moments, feature cosines, histograms, the regulariser, the
Jacobian) casts to float32 and turns autocast off where it runs. ``fp16`` needs a
gradient scaler in training (:func:`gradient_scaler`): float16 gradients underflow
without one. ``auto`` picks bfloat16 on a GPU that computes in it and float32
elsewhere: on a CPU, bfloat16 pays only where the CPU has bfloat16 instructions
(AVX512-BF16, AMX), so it stays an opt-in there (docs/benchmarks.md measures it).
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from src_training.runtime.devices import PRECISION_CHOICES as PRECISIONS

_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(name: str, option: str = "--precision") -> str:
    """Return ``name`` if it is one of :data:`PRECISIONS`, else refuse it in one sentence.

    Parameters
    ----------
    name : str
        What the user asked for.
    option : str
        How the message names the setting.

    Returns
    -------
    str
        ``name``.
    """
    if name not in PRECISIONS:
        raise ValueError(f"{option} must be one of {', '.join(PRECISIONS)}; got {name!r}")
    return name


def resolve_precision(name: str, device: torch.device | str) -> str:
    """Turn ``auto|fp32|bf16|fp16`` into the precision to run on ``device``.

    Parameters
    ----------
    name : str
        One of :data:`PRECISIONS`.
    device : torch.device or str
        Where the networks run.

    Returns
    -------
    str
        ``fp32``, ``bf16`` or ``fp16``.

    Raises
    ------
    ValueError
        For an unknown name, or bfloat16 on a CUDA GPU that does not compute in it.
    """
    check_precision(name)
    device = torch.device(device)
    cuda = device.type == "cuda"
    if name == "auto":
        return "bf16" if cuda and torch.cuda.is_bf16_supported() else "fp32"
    if name == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        gpu = torch.cuda.get_device_name(device)
        raise ValueError(
            f"the GPU {gpu} does not compute in bfloat16; use --precision fp16 or fp32"
        )
    return name


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager[object]:
    """Return the autocast context of a resolved precision (nothing for ``fp32``).

    Parameters
    ----------
    device : torch.device or str
        Where the networks run.
    precision : str
        ``fp32``, ``bf16`` or ``fp16``.

    Returns
    -------
    context manager
        :func:`torch.autocast` for the device type and dtype, or a null context.
    """
    if precision == "fp32":
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=_DTYPES[precision])


def gradient_scaler(device: torch.device | str, precision: str) -> torch.amp.GradScaler:
    """Return the gradient scaler of a training run: active for ``fp16`` only.

    Parameters
    ----------
    device : torch.device or str
        Where the networks train.
    precision : str
        ``fp32``, ``bf16`` or ``fp16``.

    Returns
    -------
    torch.amp.GradScaler
        A scaler that is a no-op (``enabled=False``) unless ``precision`` is ``fp16``.
    """
    return torch.amp.GradScaler(torch.device(device).type, enabled=precision == "fp16")
