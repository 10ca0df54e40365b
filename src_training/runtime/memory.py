"""Memory checks before large allocations: a clear refusal instead of a crash.

An image too large for the machine should stop with a sentence that says how much
memory the job needs and what to do (crop, downsample, another device), not with the
operating system killing the process half-way. :func:`require_memory` compares an
estimate with what the device has free; where that cannot be known it checks nothing.
:func:`check_training_memory` does so for a training step before the first one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

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


def _padded_voxels(shape: Sequence[int], multiple: int) -> int:
    """Count the voxels of ``shape`` once each side is padded up to a multiple.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape.
    multiple : int
        What every side is padded to a multiple of (a U-Net's ``2 ** depth``).

    Returns
    -------
    int
        Voxels of the padded grid.
    """
    return math.prod(-(-int(n) // multiple) * multiple for n in shape)


# Peak memory of RegistrationNet inference per voxel of the padded grid and pair: about
# 22 bytes per channel of the first U-Net stage (measured on the CPU: 1.3-1.4 kB with 64
# channels, 2D and 3D), 32 per image channel and 64 for the field and its warps.
_BYTES_PER_VOXEL_AND_CHANNEL = 22
_BYTES_PER_VOXEL_AND_IMAGE_CHANNEL = 32
_BYTES_PER_VOXEL = 64


def registration_memory(network: nn.Module, shape: Sequence[int], pairs: int) -> int:
    """Estimate the peak memory of registering ``pairs`` pairs at once.

    Parameters
    ----------
    network : torch.nn.Module
        The network (a :class:`src_training.networks.models.RegistrationNet`).
    shape : sequence of int
        Spatial shape of the images.
    pairs : int
        Pairs in one forward pass.

    Returns
    -------
    int
        Bytes, on the generous side.
    """
    config = network.config()
    voxels = _padded_voxels(shape, 2 ** len(config["channels"]))
    per_voxel = (
        _BYTES_PER_VOXEL_AND_CHANNEL * config["channels"][0]
        + _BYTES_PER_VOXEL_AND_IMAGE_CHANNEL * config["in_channels"]
        + _BYTES_PER_VOXEL
    )
    return voxels * pairs * per_voxel


def _kept_channels(stage: nn.Module) -> int:
    """Channels of the maps a stage keeps for the backward pass: one per conv and norm."""
    return sum(
        m.out_channels if isinstance(m, nn.Conv2d | nn.Conv3d) else m.num_features
        for m in stage.modules()
        if isinstance(m, nn.Conv2d | nn.Conv3d | nn.modules.batchnorm._BatchNorm)
    )


def training_values_per_voxel(unet: nn.Module) -> float:
    """Values a U-Net keeps for its backward pass, per voxel of its padded input and image.

    Parameters
    ----------
    unet : torch.nn.Module
        The network's U-Net (a :class:`src_training.networks.unet.UNet`).

    Returns
    -------
    float
        The padded input, every convolution's and normalisation's output (activations
        overwrite them in place) and every decoder stage's concatenation, each scaled by
        its resolution, plus two maps of the widest full-resolution concatenation for
        the gradients alive during the backward pass.
    """
    level = [2.0 ** (-unet.ndim * k) for k in range(unet.depth + 1)]
    values = float(unet.encoder[0][0].in_channels)
    for k, stage in enumerate(unet.encoder, start=1):
        values += _kept_channels(stage) * level[k]
    for k, stage in zip(reversed(range(unet.depth)), unet.decoder, strict=True):
        cat = stage.convs[0].in_channels
        values += (cat + _kept_channels(stage)) * level[k]
    widest = unet.decoder[-1].convs[0].in_channels
    return values + unet.head.out_channels + 2 * widest


# Peak memory of a training step above what the process held before it: a fixed part
# (first-step workspaces, kernels and allocator pools: about 50 MiB in 2D, up to 230 MiB
# for small 3D crops), 36 bytes per parameter (weight, gradient, Adam's two moments and
# its temporaries: 2.2 x 16 bytes measured) and, per voxel of the padded crop and pair,
# the U-Net's kept values (training_values_per_voxel) plus 128 for the pair, its
# augmented crops, the field, the warp and the loss. Calibrated on the CPU: peak RSS of
# the first 2 steps (1 thread, default augmentation, mse) above the RSS before them,
# measured vs estimated in MiB:
#   2D 64,128,256  crop 128 batch 4   279 vs  492   3D 8,16        crop 32 batch 1   233 vs 280
#   2D 64,128,256  crop 256 batch 4   752 vs  967   3D 16,32,64    crop 32 batch 1   187 vs 302
#   2D 64,128,256  crop 256 batch 8  1272 vs 1601   3D 16,32,64    crop 48 batch 1   291 vs 372
#   2D 16,32,64    crop 256 batch 2   164 vs  392   3D 16,32,64    crop 64 batch 2   457 vs 745
#   2D 4,8         crop 16  batch 1    53 vs  256   3D 64,128,256  crop 32 batch 2   298 vs 642
# A FeatureTrainer step (2D 64,128,256, crop 128, batch 4) measured 268 MiB, the deepsim
# metric's extractor 290 (both estimated 492). The estimate stays above every figure,
# most generous for 3D, where oneDNN needs less than the 2D-calibrated count.
_TRAINING_FIXED_BYTES = 256 * 2**20
_TRAINING_BYTES_PER_PARAMETER = 36
_TRAINING_VALUES_PER_VOXEL = 128


def training_memory(
    network: nn.Module, shape: Sequence[int], batch: int, bytes_per_value: int = 4
) -> int:
    """Estimate the peak memory of one training step of a network with a ``unet``.

    Parameters
    ----------
    network : nn.Module
        A :class:`~src_training.networks.models.RegistrationNet` or
        :class:`~src_training.networks.models.FeatureExtractor`.
    shape : sequence of int
        Spatial shape of the training crops (padded to the U-Net's multiple here).
    batch : int
        Pairs (or images) per step.
    bytes_per_value : int
        Bytes of an activation: 4 for float32, 2 under bfloat16 autocast (the weights
        and Adam's state stay float32).

    Returns
    -------
    int
        Bytes, on the generous side (see the calibration above).
    """
    unet = network.unet
    voxels = _padded_voxels(shape, 2**unet.depth)
    values = training_values_per_voxel(unet) + _TRAINING_VALUES_PER_VOXEL
    parameters = sum(p.numel() for p in network.parameters())
    return int(
        _TRAINING_FIXED_BYTES
        + _TRAINING_BYTES_PER_PARAMETER * parameters
        + voxels * batch * values * bytes_per_value
    )


def check_training_memory(
    network: nn.Module,
    image_shape: Sequence[int],
    crop: int | None,
    batch: int,
    device: torch.device | str,
    bytes_per_value: int = 4,
) -> None:
    """Refuse training whose step would not fit in the device's free memory.

    Parameters
    ----------
    network : nn.Module
        The network to train (with a ``unet``).
    image_shape : sequence of int
        Spatial shape of the training images.
    crop : int or None
        Side of the training crops; None trains on whole images.
    batch : int
        Pairs (or images) per step.
    device : torch.device or str
        Where training would run.
    bytes_per_value : int
        Bytes of an activation, as for :func:`training_memory` (2 under bf16 or fp16
        autocast).

    Raises
    ------
    ValueError
        If :func:`training_memory` exceeds the free memory; the message names the
        largest ``--batch-size`` that fits, or else a smaller ``--crop`` or fewer
        ``--channels``.
    """
    shape = [min(int(n), crop) if crop else int(n) for n in image_shape]
    need = training_memory(network, shape, batch, bytes_per_value)
    free = available_memory(device)
    if free is None or need <= free:
        return
    fits = [
        b
        for b in range(batch - 1, 0, -1)
        if training_memory(network, shape, b, bytes_per_value) <= free
    ]
    channels = ",".join(str(c) for c in network.config()["channels"])
    if fits:
        hint = f"lower --batch-size to {fits[0]}"
    elif crop:
        hint = f"lower --crop (now {crop}) or use fewer --channels (now {channels})"
    else:
        hint = f"train on crops with --crop, or use fewer --channels (now {channels})"
    size = "x".join(str(n) for n in shape)
    require_memory(
        need,
        f"a training step (batch {batch}, {size} voxels)",
        device,
        f"{hint}, or use a device with more memory",
    )
