"""Spatial transforms: identity grids, warping, integration, composition, Jacobians.

The coordinate convention of the whole project is defined here, once:

* Tensors are ``(B, C, *spatial)`` with ``spatial = (H, W)`` or ``(D, H, W)``.
  Every function works for 2D and 3D; the dimensionality is read from the data.
* A displacement field ``u`` has shape ``(B, ndim, *spatial)`` and is in voxel
  units. Channel ``i`` moves along spatial array axis ``i`` (in 2D channel 0 is
  the row axis H and channel 1 the column axis W).
* Warping pulls back: ``warped(x) = moving(x + u(x))``. A positive ``u[:, 1]``
  therefore shows, at column ``x``, what the moving image has at column ``x + u``.
* Sampling uses :func:`torch.nn.functional.grid_sample` with
  ``align_corners=True``: voxel index ``0`` maps to ``-1`` and index ``n - 1`` to
  ``+1`` exactly, so voxel centres are sampled without offset. ``grid_sample``
  orders the coordinates of its grid last axis first (x, y[, z]); the flip happens
  only in :func:`sample`, which every warp goes through.
* Outside the image, values are taken from the nearest edge voxel
  (``padding="border"``) unless a caller asks for ``"zeros"`` or ``"reflection"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

_INTERP = {"linear": "bilinear", "nearest": "nearest"}
_FAR = 1e4  # normalised coordinates beyond it are clamped (outside the image either way)


def spatial_ndim(field: Tensor) -> int:
    """Return the number of spatial dimensions of a ``(B, C, *spatial)`` tensor.

    Parameters
    ----------
    field : Tensor
        A 4D (2D images) or 5D (3D volumes) tensor.

    Returns
    -------
    int
        2 or 3.
    """
    ndim = field.dim() - 2
    if ndim not in (2, 3):
        raise ValueError(
            f"expected a (B, C, H, W) or (B, C, D, H, W) tensor, got shape {tuple(field.shape)}"
        )
    return ndim


def identity_grid(
    shape: Sequence[int],
    *,
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> Tensor:
    """Voxel coordinates of every position of a grid.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape ``(H, W)`` or ``(D, H, W)``.
    device, dtype
        Where and in which precision to create the grid.

    Returns
    -------
    Tensor
        ``(ndim, *shape)``; channel ``i`` holds the index along axis ``i``.
    """
    axes = [torch.arange(n, device=device, dtype=dtype) for n in shape]
    return torch.stack(torch.meshgrid(*axes, indexing="ij"))


def sample(
    image: Tensor, positions: Tensor, *, interpolation: str = "linear", padding: str = "border"
) -> Tensor:
    """Sample ``image`` at voxel ``positions``: the one call of ``grid_sample``.

    Parameters
    ----------
    image : Tensor
        ``(B, C, *spatial)`` floating-point image.
    positions : Tensor
        ``(B, ndim, *out)`` voxel coordinates in ``image``; channel ``i`` along axis ``i``.
    interpolation, padding : str
        As for :func:`warp`.

    Returns
    -------
    Tensor
        ``(B, C, *out)`` in float32 (float64 for float64 input), outside any autocast.
    """
    if interpolation not in _INTERP:
        raise ValueError(f"interpolation must be one of {sorted(_INTERP)}, got {interpolation!r}")
    dtype = torch.promote_types(image.dtype, torch.float32)  # never sample in half precision
    scale = [2.0 / (n - 1) if n > 1 else 0.0 for n in image.shape[2:]]
    ones = [1] * (image.dim() - 2)
    scale = torch.tensor(scale, device=image.device, dtype=dtype).view(1, -1, *ones)
    with torch.autocast(image.device.type, enabled=False):
        positions = positions.to(dtype)  # NaN/inf would index outside memory: clamp them
        grid = (positions * scale - 1.0).nan_to_num(0.0).clamp(-_FAR, _FAR)
        # (B, ndim, *out) -> (B, *out, ndim), then last axis first for grid_sample.
        grid, image, mode = grid.movedim(1, -1).flip(-1), image.to(dtype), _INTERP[interpolation]
        out = F.grid_sample(image, grid, mode=mode, padding_mode=padding, align_corners=True)
        return out + 0.0 * positions.sum(dim=1, keepdim=True)  # ... and come out NaN


def warp(
    image: Tensor, disp: Tensor, *, interpolation: str = "linear", padding: str = "border"
) -> Tensor:
    """Warp an image with a displacement field: ``warped(x) = image(x + disp(x))``.

    Parameters
    ----------
    image : Tensor
        ``(B, C, *spatial)`` floating-point image; ``B`` may be 1 to share one
        image across a batch of fields.
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels (see the module docstring).
    interpolation, padding : str
        ``linear`` or ``nearest`` sampling; ``border``, ``zeros`` or ``reflection`` outside.

    Returns
    -------
    Tensor
        The warped image, ``(B, C, *spatial)``, in the precision of :func:`sample`.
    """
    ndim = spatial_ndim(disp)
    if disp.shape[1] != ndim:
        raise ValueError(f"a {ndim}D displacement needs {ndim} channels, got {disp.shape[1]}")
    if image.shape[2:] != disp.shape[2:]:
        shape, field = tuple(image.shape[2:]), tuple(disp.shape[2:])
        raise ValueError(f"the image's spatial shape {shape} differs from the field's {field}")
    image = image.expand(len(disp), *image.shape[1:]) if len(image) == 1 else image
    dtype = torch.promote_types(image.dtype, torch.float32)
    positions = identity_grid(disp.shape[2:], device=disp.device, dtype=dtype) + disp.to(dtype)
    return sample(image, positions, interpolation=interpolation, padding=padding)


def warp_labels(labels: Tensor, disp: Tensor) -> Tensor:
    """Warp an integer label map with nearest-neighbour sampling.

    Parameters
    ----------
    labels : Tensor
        ``(B, 1, *spatial)`` integer (or boolean) label map.
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.

    Returns
    -------
    Tensor
        Warped labels with the dtype of ``labels``; no new label value appears.
    """
    # float64 represents every integer label id a label image can hold exactly.
    warped = warp(labels.to(torch.float64), disp.to(torch.float64), interpolation="nearest")
    return warped.round().to(labels.dtype)


def one_hot(labels: Tensor, num_classes: int) -> Tensor:
    """One-hot encode a ``(B, 1, *spatial)`` label map of ids ``0..num_classes-1``.

    Parameters
    ----------
    labels : Tensor
        Integer class ids.
    num_classes : int
        Number of classes ``K``.

    Returns
    -------
    Tensor
        ``(B, K, *spatial)`` float tensor.
    """
    if labels.dim() < 3 or labels.shape[1] != 1:
        raise ValueError(f"labels must be (B, 1, *spatial), got {tuple(labels.shape)}")
    encoded = F.one_hot(labels[:, 0].long(), num_classes)
    return encoded.movedim(-1, 1).to(torch.float32)


def warp_onehot(labels: Tensor, disp: Tensor, num_classes: int) -> Tensor:
    """Warp a label map as linearly interpolated one-hot channels (differentiable in ``disp``).

    Parameters
    ----------
    labels : Tensor
        ``(B, 1, *spatial)`` integer class ids.
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.
    num_classes : int
        Number of classes ``K``.

    Returns
    -------
    Tensor
        ``(B, K, *spatial)`` soft labels that sum to one at every voxel.
    """
    return warp(one_hot(labels, num_classes).to(disp.dtype), disp)


def compose(first: Tensor, second: Tensor) -> Tensor:
    """Displacement equivalent to warping with ``first`` and then with ``second``.

    Warping an image ``I`` with ``first`` gives ``I(x + first(x))``; warping that
    result with ``second`` gives ``I(x + second(x) + first(x + second(x)))``, so the
    composed field is ``second + warp(first, second)``.

    Parameters
    ----------
    first, second : Tensor
        ``(B, ndim, *spatial)`` displacement fields in voxels.

    Returns
    -------
    Tensor
        The composed displacement field.
    """
    return second + warp(first, second)


def integrate_velocity(velocity: Tensor, steps: int = 7) -> Tensor:
    """Integrate a stationary velocity field by scaling and squaring.

    Parameters
    ----------
    velocity : Tensor
        ``(B, ndim, *spatial)`` velocity in voxels per unit time.
    steps : int
        Number of squarings; the field is first divided by ``2**steps``.

    Returns
    -------
    Tensor
        The displacement of the time-1 flow, a diffeomorphism for smooth velocities.
    """
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    disp = velocity / (2**steps)
    for _ in range(steps):
        disp = compose(disp, disp)
    return disp


def resize_field(disp: Tensor, size: Sequence[int]) -> Tensor:
    """Resample a displacement field to another grid, rescaling its magnitudes.

    With the ``align_corners=True`` convention the first and last voxels of both
    grids coincide, so a displacement of ``d`` voxels along an axis of ``n`` voxels
    becomes ``d * (m - 1) / (n - 1)`` voxels on an axis of ``m`` voxels.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.
    size : sequence of int
        Target spatial shape.

    Returns
    -------
    Tensor
        ``(B, ndim, *size)`` displacement in voxels of the new grid.
    """
    ndim = spatial_ndim(disp)
    size = tuple(int(s) for s in size)
    if len(size) != ndim:
        raise ValueError(f"size must have {ndim} entries, got {size}")
    mode = "bilinear" if ndim == 2 else "trilinear"
    resized = F.interpolate(disp, size=size, mode=mode, align_corners=True)
    factors = [
        (m - 1) / (n - 1) if n > 1 else 1.0 for m, n in zip(size, disp.shape[2:], strict=True)
    ]
    scale = torch.tensor(factors, device=disp.device, dtype=disp.dtype)
    return resized * scale.view(1, ndim, *([1] * ndim))


def affine_displacement(
    matrix: Tensor, translation: Tensor, shape: Sequence[int], center: Sequence[float] | None = None
) -> Tensor:
    """Displacement of the affine map ``x -> A (x - c) + c + t`` on a voxel grid.

    Parameters
    ----------
    matrix : Tensor
        ``(B, ndim, ndim)`` or ``(ndim, ndim)`` matrix ``A`` acting on voxel indices.
    translation : Tensor
        ``(B, ndim)`` or ``(ndim,)`` translation ``t`` in voxels.
    shape : sequence of int
        Spatial shape of the grid.
    center : sequence of float, optional
        Centre ``c`` of the map; the grid centre by default.

    Returns
    -------
    Tensor
        ``(B, ndim, *shape)`` displacement ``A (x - c) + c + t - x``.
    """
    ndim = len(shape)
    matrix = matrix.reshape(-1, ndim, ndim)
    translation = translation.reshape(-1, ndim).to(matrix.dtype)
    grid = identity_grid(shape, device=matrix.device, dtype=matrix.dtype)
    if center is None:
        center = [(n - 1) / 2.0 for n in shape]
    c = torch.tensor(center, device=matrix.device, dtype=matrix.dtype).view(ndim, *([1] * ndim))
    centred = (grid - c).reshape(ndim, -1)
    moved = torch.einsum("bij,jn->bin", matrix, centred).reshape(-1, ndim, *shape)
    return moved + c + translation.view(-1, ndim, *([1] * ndim)) - grid


def jacobian_matrix(disp: Tensor) -> Tensor:
    """Jacobian of the map ``x -> x + disp(x)`` by central differences.

    One-sided differences are used on the first and last voxel of each axis; no
    absolute value is taken, so folds keep their negative sign.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels; every spatial axis needs at
        least 2 voxels.

    Returns
    -------
    Tensor
        ``(B, *spatial, ndim, ndim)`` with entry ``[..., i, j] = d(x_i + u_i)/dx_j``.
    """
    ndim = spatial_ndim(disp)
    if min(disp.shape[2:]) < 2:
        raise ValueError(
            f"the Jacobian needs at least 2 voxels along every axis, got {tuple(disp.shape[2:])}"
        )
    dims = tuple(range(2, 2 + ndim))
    grads = torch.gradient(disp, dim=dims)  # grads[j][:, i] = du_i/dx_j
    jac = torch.stack(grads, dim=-1).movedim(1, -2)  # (B, *spatial, i, j)
    eye = torch.eye(ndim, device=disp.device, dtype=disp.dtype)
    return jac + eye


def jacobian_determinant(disp: Tensor) -> Tensor:
    """Jacobian determinant of ``x -> x + disp(x)`` at every voxel.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.

    Returns
    -------
    Tensor
        ``(B, *spatial)``; values ``<= 0`` mark folds.
    """
    jac = jacobian_matrix(disp)
    if jac.shape[-1] == 2:
        return jac[..., 0, 0] * jac[..., 1, 1] - jac[..., 0, 1] * jac[..., 1, 0]
    a, b, c = jac[..., 0, 0], jac[..., 0, 1], jac[..., 0, 2]
    d, e, f = jac[..., 1, 0], jac[..., 1, 1], jac[..., 1, 2]
    g, h, i = jac[..., 2, 0], jac[..., 2, 1], jac[..., 2, 2]
    return a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g)


def folding_fraction(disp: Tensor) -> Tensor:
    """Fraction of voxels whose Jacobian determinant is ``<= 0``, per batch element.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.

    Returns
    -------
    Tensor
        ``(B,)`` values in ``[0, 1]``.
    """
    det = jacobian_determinant(disp)
    return (det <= 0).flatten(1).to(disp.dtype).mean(dim=1)


def sd_log_jacobian(disp: Tensor, eps: float = 1e-9) -> Tensor:
    """Compute the standard deviation of ``log(det J)``, per batch element.

    Determinants are clamped to ``[eps, 1/eps]`` first (the usual Learn2Reg rule),
    so folds count as very small volumes instead of producing NaN.

    Parameters
    ----------
    disp : Tensor
        ``(B, ndim, *spatial)`` displacement in voxels.
    eps : float
        Clamp bound.

    Returns
    -------
    Tensor
        ``(B,)`` standard deviations.
    """
    det = jacobian_determinant(disp).clamp(eps, 1.0 / eps)
    return det.log().flatten(1).std(dim=1)
