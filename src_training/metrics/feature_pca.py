"""Feature stacks on a pyramid level's grid, and their joint PCA computed from a sample.

The full stack of a level (the raw image and every chosen encoder stage resampled onto
the level's grid, each channel normalised over space) has about a hundred channels;
building it at full resolution and computing its principal components over every
position cost about as much as a whole intensity optimisation. Normalising, projecting
and resampling are all linear, so :func:`projected_pair` never builds it: the channel
statistics and the components come from the stack's values at a fixed random subset of
the level's positions, and each encoder stage is projected at its own resolution (a
1×1 mixing of its channels) before only the few components are resampled onto the grid.
With every position sampled the result equals projecting the full stack.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

PCA_POSITIONS = 8192
"""Positions per image of a level from which the channel statistics and components come.

A level with fewer positions uses all of them. On the ISBI test pairs 25:30
(docs/optimisation.md) ``deepsim+ncc`` reached Dice 0.819 / 0.803 (clean / σ = 0.3)
from 8192 positions against 0.820 / 0.803 from all of them, in 0.59 / 0.58 of the time;
the components from 2048 positions of a 128² section span those from all of them to
within 2 % (tests/core/metrics/test_feature_maps.py).
"""


def check_positions(positions: int | None) -> None:
    """Refuse a number of sampled positions that is not a whole number >= 16.

    Parameters
    ----------
    positions : int or None
        Positions per image (None: all).

    Raises
    ------
    ValueError
        One line naming the option.
    """
    if positions is not None and (
        isinstance(positions, bool) or not isinstance(positions, int) or positions < 16
    ):
        raise ValueError(
            f"positions must be a whole number of positions >= 16 (None: all), got {positions!r}"
        )


def normalise(x: Tensor) -> Tensor:
    """Centre each channel of each image and divide it by its standard deviation over space.

    Parameters
    ----------
    x : Tensor
        ``(B, K, *spatial)`` stack.

    Returns
    -------
    Tensor
        The stack, every channel of mean 0 and standard deviation 1 (or flat).
    """
    dims = tuple(range(2, x.dim()))
    std = x.std(dim=dims, keepdim=True, correction=0).clamp(min=1e-6)
    return (x - x.mean(dim=dims, keepdim=True)) / std


def level_factor(full_shape: tuple[int, ...], shape: tuple[int, ...]) -> int:
    """Return the power of 2 by which a pyramid level of ``shape`` reduces ``full_shape``.

    Parameters
    ----------
    full_shape, shape : tuple of int
        The full-resolution and the level's spatial shape.

    Returns
    -------
    int
        The reduction factor.
    """
    return 2 ** round(math.log2(max(n / m for n, m in zip(full_shape, shape, strict=True))))


def onto_grid(
    stage: Tensor,
    number: int,
    full_shape: tuple[int, ...],
    shape: tuple[int, ...],
    points: Tensor | None = None,
) -> Tensor:
    """Resample an encoder stage (cells of ``2**number`` voxels) onto a corner-aligned grid.

    A stage finer than the grid is first averaged over blocks to the grid's cell size; each
    cell's value sits at its centre, ``j * cell + (cell - 1) / 2`` in full-resolution
    voxels, and the grid's voxel ``i`` at ``i * (n - 1) / (m - 1)``.

    Parameters
    ----------
    stage : Tensor
        ``(B, C, *cells)`` encoder stage.
    number : int
        Its stage number (1 = half resolution).
    full_shape, shape : tuple of int
        The full-resolution and the grid's spatial shape.
    points : Tensor, optional
        Flat indices into the grid: only those positions are returned.

    Returns
    -------
    Tensor
        ``(B, C, *shape)``, or ``(B, C, len(points))`` with ``points``.
    """
    cell = 2**number
    factor = level_factor(full_shape, shape)
    if factor > cell:
        pool = F.avg_pool2d if stage.dim() == 4 else F.avg_pool3d
        stage = pool(stage, factor // cell, ceil_mode=True)
        cell = factor
    axes = []
    for n, m, size in zip(full_shape, shape, stage.shape[2:], strict=True):
        position = torch.linspace(0, n - 1, m, device=stage.device) if m > 1 else stage.new_zeros(1)
        index = (position - (cell - 1) / 2) / cell
        axes.append(2 * index / max(size - 1, 1) - 1)
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij")[::-1], dim=-1)
    if points is not None:
        grid = grid.reshape(-1, len(shape))[points].reshape(
            *(1,) * (len(shape) - 1), -1, len(shape)
        )
    grid = grid[None].expand(stage.shape[0], *grid.shape).to(stage.dtype)
    out = F.grid_sample(stage, grid, align_corners=True, padding_mode="border")
    return out.flatten(2) if points is not None else out


def sample_positions(shape: tuple[int, ...], count: int | None, device: torch.device) -> Tensor:
    """Return a fixed random subset of ``count`` flat positions of a grid (all when fewer).

    Parameters
    ----------
    shape : tuple of int
        The grid's spatial shape.
    count : int or None
        Positions wanted; None: all of them.
    device : torch.device
        Where the indices go.

    Returns
    -------
    Tensor
        Sorted flat indices; the same for the same shape and count on every call.
    """
    total = math.prod(shape)
    if count is None or count >= total:
        return torch.arange(total, device=device)
    generator = torch.Generator().manual_seed(0)
    return torch.randperm(total, generator=generator)[:count].sort().values.to(device)


def projected_pair(
    stages: tuple[list[Tensor], list[Tensor]],
    raws: tuple[Tensor, Tensor],
    numbers: Sequence[int],
    full_shape: tuple[int, ...],
    keep: int,
    positions: int | None = PCA_POSITIONS,
) -> tuple[Tensor, Tensor]:
    """Return both images' normalised feature stacks on a grid, projected on joint components.

    Parameters
    ----------
    stages : tuple of list of Tensor
        The fixed and the moving image's chosen encoder stages (full-resolution image).
    raws : tuple of Tensor
        ``(B, C, *shape)`` the fixed and the moving image on the grid.
    numbers : sequence of int
        The stage number of each entry of ``stages``.
    full_shape : tuple of int
        The full-resolution spatial shape.
    keep : int
        Components kept (all channels where fewer).
    positions : int or None
        Positions per image the statistics and components come from; None: all.

    Returns
    -------
    tuple of Tensor
        ``(B, k, *shape)`` each: the channels (raw, then stages) normalised per image
        over space, projected on the ``k`` leading principal components of both images.
    """
    shape = tuple(raws[0].shape[2:])
    points = sample_positions(shape, positions, raws[0].device)
    with torch.no_grad():
        samples = [
            _sampled(raw, own, numbers, full_shape, points)
            for raw, own in zip(raws, stages, strict=True)
        ]  # (B, K, M) each
        means = [s.mean(dim=2) for s in samples]
        stds = [s.std(dim=2, correction=0).clamp(min=1e-6) for s in samples]
        both = torch.cat(
            [
                (s - m[..., None]) / d[..., None]
                for s, m, d in zip(samples, means, stds, strict=True)
            ]
        )
        both = both.transpose(0, 1).flatten(1)  # (K, 2 B M)
        centred = both - both.mean(dim=1, keepdim=True)
        _, vectors = torch.linalg.eigh(centred @ centred.T / centred.shape[1])
        basis = vectors[:, -min(keep, both.shape[0]) :].T.contiguous()  # (k, K)
    return tuple(
        _project(basis, raw, own, numbers, full_shape, mean, std)
        for raw, own, mean, std in zip(raws, stages, means, stds, strict=True)
    )


def _sampled(
    raw: Tensor,
    stages: list[Tensor],
    numbers: Sequence[int],
    full_shape: tuple[int, ...],
    points: Tensor,
) -> Tensor:
    """``(B, K, len(points))``: the raw channels and every stage at the grid's ``points``."""
    shape = tuple(raw.shape[2:])
    resampled = [
        onto_grid(stage, number, full_shape, shape, points)
        for number, stage in zip(numbers, stages, strict=True)
    ]
    return torch.cat([raw.flatten(2)[:, :, points], *resampled], dim=1)


def _project(
    basis: Tensor,
    raw: Tensor,
    stages: list[Tensor],
    numbers: Sequence[int],
    full_shape: tuple[int, ...],
    mean: Tensor,
    std: Tensor,
) -> Tensor:
    """``basis @ (stack - mean) / std`` of one image, each stage mixed before resampling."""
    shape = tuple(raw.shape[2:])
    weights = basis[None] / std[:, None, :]  # (B, k, K)
    bias = -(weights * mean[:, None, :]).sum(dim=2)
    start = raw.shape[1]
    out = torch.einsum("bkc,bc...->bk...", weights[:, :, :start], raw)
    for number, stage in zip(numbers, stages, strict=True):
        mixed = torch.einsum(
            "bkc,bc...->bk...", weights[:, :, start : start + stage.shape[1]], stage
        )
        out = out + onto_grid(mixed, number, full_shape, shape)
        start += stage.shape[1]
    return out + bias.view(*bias.shape, *(1,) * len(shape))
