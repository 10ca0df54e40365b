"""Applying a trained registration model: pairs, batches and whole time series."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from src_training.modelio import ModelFile
from src_training.networks import RegistrationNet
from src_training.spatial import compose, jacobian_determinant, warp, warp_labels


def check_model_fits(model: ModelFile, image: np.ndarray, what: str) -> None:
    """Raise a clear error when a model cannot register ``image`` of shape ``(C, *spatial)``.

    Parameters
    ----------
    model : ModelFile
        A registration model.
    image : numpy.ndarray
        ``(C, *spatial)`` image.
    what : str
        How to name the image in the message.
    """
    ndim = image.ndim - 1
    if ndim != model.ndim:
        raise ValueError(
            f"the model registers {model.ndim}D images but {what} is {ndim}D "
            f"(shape {image.shape[1:]}); use a {ndim}D model"
        )
    channels = model.metadata["network"]["in_channels"]
    if image.shape[0] != channels:
        raise ValueError(
            f"the model expects {channels}-channel images but {what} has {image.shape[0]}"
        )


@torch.inference_mode()
def predict(
    network: RegistrationNet,
    moving: np.ndarray | Tensor,
    fixed: np.ndarray | Tensor,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
) -> Tensor:
    """Displacements that warp each moving image onto its fixed image.

    Parameters
    ----------
    network : RegistrationNet
        A trained network.
    moving, fixed : numpy.ndarray or Tensor
        ``(B, C, *spatial)`` normalised images (``fixed`` may have ``B = 1`` to share
        one reference).
    device : torch.device or str
        Where to run the network.
    batch_size : int
        Pairs per forward pass.

    Returns
    -------
    Tensor
        ``(B, ndim, *spatial)`` displacements in voxels, on the CPU.
    """
    moving = torch.as_tensor(moving, dtype=torch.float32)
    fixed = torch.as_tensor(fixed, dtype=torch.float32)
    network.to(device).eval()
    out = []
    for start in range(0, moving.shape[0], batch_size):
        m = moving[start : start + batch_size].to(device)
        f = fixed[start : start + batch_size] if fixed.shape[0] > 1 else fixed
        f = f.to(device).expand_as(m)
        out.append(network(m, f).cpu())
    return torch.cat(out)


@dataclass
class SeriesResult:
    """Every frame of a stack registered to one reference.

    Attributes
    ----------
    displacements : Tensor
        ``(T, ndim, *spatial)``; frame ``t`` warped with ``displacements[t]`` is
        aligned to the reference (zero for the reference itself).
    warped : Tensor
        ``(T, C, *spatial)`` warped frames.
    """

    displacements: Tensor
    warped: Tensor


def register_series(
    network: RegistrationNet,
    frames: np.ndarray,
    reference: int | str,
    device: torch.device | str = "cpu",
    batch_size: int = 8,
    raw_frames: np.ndarray | None = None,
) -> SeriesResult:
    """Register every frame of a ``(T, C, *spatial)`` stack to one reference frame.

    Parameters
    ----------
    network : RegistrationNet
        A trained network.
    frames : numpy.ndarray
        Normalised frames.
    reference : int or "previous"
        A frame index: every frame is registered to that frame directly.
        ``"previous"``: every frame is registered to its predecessor and the fields
        are composed, so all frames end up aligned to frame 0 (better for slow drift).
    device : torch.device or str
        Where to run the network.
    batch_size : int
        Frames per forward pass.
    raw_frames : numpy.ndarray, optional
        Frames to warp instead of ``frames`` (e.g. the original intensities).

    Returns
    -------
    SeriesResult
        Displacements and warped frames.
    """
    n = frames.shape[0]
    if reference == "previous":
        steps = predict(network, frames[1:], frames[:-1], device, batch_size)
        fields = [torch.zeros_like(steps[:1])]
        for t in range(n - 1):
            fields.append(compose(steps[t : t + 1], fields[-1]))
        disp = torch.cat(fields)
    else:
        if not isinstance(reference, int) or not -n <= reference < n:
            raise ValueError(
                f"--reference must be a frame index in 0..{n - 1} or 'previous', got {reference}"
            )
        disp = predict(network, frames, frames[reference : reference + 1], device, batch_size)
        disp[reference] = 0
    source = torch.as_tensor(raw_frames if raw_frames is not None else frames).float()
    return SeriesResult(disp, warp(source, disp))


def warp_array(image: np.ndarray, disp: Tensor) -> np.ndarray:
    """Warp a ``(C, *spatial)`` image with a ``(1, ndim, *spatial)`` field (linear)."""
    tensor = torch.as_tensor(image, dtype=torch.float32)[None]
    return warp(tensor, disp).numpy()[0]


def warp_label_array(labels: np.ndarray, disp: Tensor) -> np.ndarray:
    """Warp an integer ``(*spatial)`` label map with nearest neighbours, keeping its dtype."""
    tensor = torch.as_tensor(labels.astype(np.int64))[None, None]
    return warp_labels(tensor, disp).numpy()[0, 0].astype(labels.dtype)


def jacobian_array(disp: Tensor) -> np.ndarray:
    """Jacobian determinant ``(*spatial)`` of a ``(1, ndim, *spatial)`` field."""
    return jacobian_determinant(disp.double()).float().numpy()[0]
