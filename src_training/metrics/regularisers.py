"""Regularisers of displacement fields, by name.

Both take a ``(B, ndim, *spatial)`` displacement in voxels and return a scalar.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from src_training.spatial.transforms import spatial_ndim


def _diff(x: Tensor, axis: int) -> Tensor:
    """Forward difference along spatial axis ``axis`` (0-based) of a (B, C, *spatial) tensor."""
    dim = 2 + axis
    n = x.shape[dim]
    return x.narrow(dim, 1, n - 1) - x.narrow(dim, 0, n - 1)


def diffusion(disp: Tensor) -> Tensor:
    """Diffusion regulariser: mean over axes of the mean squared forward difference.

    ``R(u) = 1/ndim * sum_a mean((u(x + e_a) - u(x))**2)`` over all channels and
    voxels, the reference DeepSim/VoxelMorph ``l2`` gradient penalty.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement.

    Returns
    -------
    Tensor
        Scalar penalty; zero for any constant field.
    """
    ndim = spatial_ndim(disp)
    return sum(_diff(disp, a).pow(2).mean() for a in range(ndim)) / ndim


def bending_energy(disp: Tensor) -> Tensor:
    """Bending energy: mean of the squared second derivatives of the displacement.

    ``R(u) = mean(sum_a (d2u/dx_a2)**2 + 2 sum_{a<b} (d2u/dx_a dx_b)**2)`` with
    second differences from repeated forward differences; zero for affine fields.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement with at least 3 voxels per axis.

    Returns
    -------
    Tensor
        Scalar penalty.
    """
    ndim = spatial_ndim(disp)
    first = [_diff(disp, a) for a in range(ndim)]
    total = disp.new_zeros(())
    for a in range(ndim):
        for b in range(a, ndim):
            second = _diff(first[a], b)
            weight = 1.0 if a == b else 2.0
            total = total + weight * second.pow(2).mean()
    return total


REGULARISERS: dict[str, Callable[[Tensor], Tensor]] = {
    "diffusion": diffusion,
    "bending": bending_energy,
}


def get_regulariser(name: str) -> Callable[[Tensor], Tensor]:
    """Return the regulariser called ``name`` (``diffusion`` or ``bending``).

    Parameters
    ----------
    name : str
        Registry name.

    Returns
    -------
    callable
        ``f(disp) -> scalar``.
    """
    try:
        return REGULARISERS[name]
    except KeyError:
        raise ValueError(
            f"unknown regulariser {name!r}; choose one of {', '.join(REGULARISERS)}"
        ) from None
