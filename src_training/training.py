"""Training loops that report progress as events and can be stopped between steps."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from src_training.metrics import METRICS
from src_training.networks import RegistrationNet
from src_training.regularisers import get_regulariser
from src_training.spatial import warp, warp_onehot


@dataclass(frozen=True)
class StepEvent:
    """Progress of one training step.

    Attributes
    ----------
    step, steps : int
        The step just finished (1-based) and the total.
    loss, similarity, regularisation : float
        Total loss and its two terms (``loss = similarity + lam * regularisation``).
    seconds : float
        Wall time since training started.
    """

    step: int
    steps: int
    loss: float
    similarity: float
    regularisation: float
    seconds: float


def neighbour_pairs(
    n_frames: int, batch_size: int, max_offset: int, generator: torch.Generator
) -> list[tuple[int, int]]:
    """Draw ``(moving, fixed)`` frame pairs at most ``max_offset`` frames apart.

    Parameters
    ----------
    n_frames : int
        Frames available.
    batch_size : int
        Pairs to draw.
    max_offset : int
        Largest frame distance; the partner differs from the frame itself.
    generator : torch.Generator
        Source of randomness.

    Returns
    -------
    list of tuple of int
        Moving and fixed frame indices.
    """
    if n_frames < 2:
        raise ValueError(f"training needs at least 2 frames, got {n_frames}")
    pairs = []
    for _ in range(batch_size):
        fixed = int(torch.randint(n_frames, (1,), generator=generator))
        lo, hi = max(0, fixed - max_offset), min(n_frames - 1, fixed + max_offset)
        choices = [i for i in range(lo, hi + 1) if i != fixed]
        pick = int(torch.randint(len(choices), (1,), generator=generator))
        pairs.append((choices[pick], fixed))
    return pairs


def registration_loss(
    model: RegistrationNet,
    metric: nn.Module,
    metric_name: str,
    moving: Tensor,
    fixed: Tensor,
    lam: float,
    regulariser: Callable[[Tensor], Tensor],
    moving_labels: Tensor | None = None,
    fixed_labels: Tensor | None = None,
    num_classes: int = 0,
) -> tuple[Tensor, Tensor, Tensor]:
    """Loss of a batch of pairs: ``D(moving o phi, fixed) + lam * R(phi)``.

    Parameters
    ----------
    model : RegistrationNet
        Predicts the displacement.
    metric : nn.Module
        Similarity loss from :func:`src_training.metrics.get_metric`.
    metric_name : str
        Registry name of ``metric``; decides whether labels are passed.
    moving, fixed : Tensor
        ``(B, C, *spatial)`` images.
    lam : float
        Regularisation weight.
    regulariser : callable
        ``R(disp)``.
    moving_labels, fixed_labels : Tensor, optional
        ``(B, 1, *spatial)`` class ids, needed by metrics that use labels.
    num_classes : int
        Number of label classes.

    Returns
    -------
    tuple of Tensor
        Total loss, similarity term and regularisation term.
    """
    disp = model(moving, fixed)
    warped = warp(moving, disp)
    extra = {}
    if METRICS[metric_name].needs_labels:
        if moving_labels is None or fixed_labels is None:
            raise ValueError(f"the {metric_name} metric needs label maps for training")
        extra["warped_labels"] = warp_onehot(moving_labels, disp, num_classes)
        extra["fixed_labels"] = fixed_labels
    similarity = metric(warped, fixed, **extra)
    regularisation = regulariser(disp)
    return similarity + lam * regularisation, similarity, regularisation


def train_registration(
    model: RegistrationNet,
    metric: nn.Module,
    metric_name: str,
    frames: Tensor,
    *,
    labels: Tensor | None = None,
    lam: float,
    steps: int,
    batch_size: int = 4,
    lr: float = 1e-4,
    max_offset: int = 2,
    regulariser: str = "diffusion",
    seed: int = 0,
    device: torch.device | str = "cpu",
    stop: Callable[[], bool] | None = None,
) -> Iterator[StepEvent]:
    """Train ``model`` on pairs of nearby frames, yielding one event per step.

    Parameters
    ----------
    model : RegistrationNet
        Trained in place (moved to ``device``).
    metric : nn.Module
        Similarity loss.
    metric_name : str
        Its registry name.
    frames : Tensor
        ``(T, C, *spatial)`` normalised frames.
    labels : Tensor, optional
        ``(T, 1, *spatial)`` class ids (for label-supervised metrics).
    lam : float
        Regularisation weight.
    steps, batch_size, lr, max_offset
        Optimisation settings; pairs are re-drawn every step.
    regulariser : str
        ``diffusion`` or ``bending``.
    seed : int
        Seeds the pair sampling and the network's randomness.
    device : torch.device or str
        Where to train.
    stop : callable, optional
        Polled before every step; training ends early when it returns True.

    Yields
    ------
    StepEvent
        After every optimisation step.
    """
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.to(device).train()
    metric.to(device)
    reg = get_regulariser(regulariser)
    num_classes = int(labels.max()) + 1 if labels is not None else 0
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    start = time.perf_counter()
    for step in range(1, steps + 1):
        if stop is not None and stop():
            return
        pairs = neighbour_pairs(frames.shape[0], batch_size, max_offset, generator)
        moving_idx = [m for m, _ in pairs]
        fixed_idx = [f for _, f in pairs]
        batch_labels = {}
        if labels is not None:
            batch_labels = {
                "moving_labels": labels[moving_idx].to(device),
                "fixed_labels": labels[fixed_idx].to(device),
            }
        loss, sim, regv = registration_loss(
            model,
            metric,
            metric_name,
            frames[moving_idx].to(device),
            frames[fixed_idx].to(device),
            lam,
            reg,
            num_classes=num_classes,
            **batch_labels,
        )
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        yield StepEvent(
            step,
            steps,
            loss.item(),
            sim.item(),
            regv.item(),
            time.perf_counter() - start,
        )


@torch.inference_mode()
def register(
    model: RegistrationNet, moving: Tensor, fixed: Tensor, device: torch.device | str = "cpu"
) -> Tensor:
    """Displacement that warps ``moving`` onto ``fixed`` (no gradients), on the CPU.

    Parameters
    ----------
    model : RegistrationNet
        A trained network.
    moving, fixed : Tensor
        ``(B, C, *spatial)`` normalised images.
    device : torch.device or str
        Where to run the network.

    Returns
    -------
    Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.
    """
    model.to(device).eval()
    return model(moving.to(device), fixed.to(device)).cpu()
