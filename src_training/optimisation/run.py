"""Per-pair instance optimisation: a linear stage, then a smooth deformation, coarse to fine.

The transformation found maps a fixed-image voxel ``x`` to the moving-image position
``T(x) = A (u(x) + x - c) + c + t`` (pull-back, the convention of
:mod:`src_training.spatial.transforms`): ``u`` is the deformable displacement, in the fixed image's
space, and ``(A, t)`` the optional rigid or affine stage about the image centre ``c``. So
the displacement returned is ``d(x) = a(x) + A u(x)`` with ``a`` the affine's own
displacement, and the regulariser sees ``u`` only, never the linear part. A starting
field ``u0`` (``init``) is added to the optimised residual ``r``, ``u = u0 + r``, or, when
diffeomorphic, composed with the flow of the velocity ``r``: ``u(x) = phi(x) + u0(x + phi(x))``.

Both stages run on the same pyramid (:mod:`src_training.optimisation.pyramid`), the
linear one on its coarse levels only when a deformable stage follows. The deformable
stage adds, at every level, a fresh residual (a B-spline or a smoothed dense field) to
the coarser levels' result, and penalises the whole ``u``. Every level keeps the best
parameters seen (the loss of each iteration is that of the parameters it started from)
and ends early when the loss stops improving, so the returned transformation is the best
one found, and never worse at full resolution than the start.

A fixed-image ``mask`` restricts the similarity by blending: outside the mask the warped
image (and the warped labels) are replaced by the fixed ones, ``m w + (1 - m) f``, so
any metric, local or global, sees perfect agreement there and no gradient flows from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator

import torch
from torch import Tensor

from src_training.metrics.registry import Similarity
from src_training.metrics.regularisers import get_regulariser
from src_training.optimisation.config import OptimiseConfig, OptimiseEvent, OptimiseResult
from src_training.optimisation.fields import (
    affine_field,
    affine_on_grid,
    bspline_field,
    control_shape,
    gaussian_smooth,
    homogeneous_matrix,
    rotation_matrix,
)
from src_training.optimisation.pyramid import Level
from src_training.spatial.transforms import compose, integrate_velocity, resize_field, warp

Objective = Callable[[], tuple[Tensor, Tensor]]


def _terms(parts: Tensor) -> tuple[float, dict[str, float]]:
    """Return the loss and its named terms from the stack :meth:`Run.loss` returns."""
    total, similarity, regularisation = parts.tolist()
    return total, {"similarity": similarity, "regularisation": regularisation}


class Run:
    """One optimisation: the pyramid, the parameters and the loop shared by both stages.

    ``similarity`` compares a level's warped moving and fixed data (feature stacks, when
    the pyramid holds them); the metric itself when omitted.
    """

    def __init__(
        self,
        pyramid: list[Level],
        metric: Similarity,
        config: OptimiseConfig,
        stop: Callable[[], bool] | None,
        device: torch.device,
        similarity: Callable[[Tensor, Tensor], Tensor] | None = None,
    ) -> None:
        self.pyramid = pyramid
        self.metric = metric
        self.similarity = similarity or metric
        self.config = config
        self.stop = stop
        self.device = device
        self.full = pyramid[-1]
        self.ndim = len(self.full.shape)
        self.regulariser = get_regulariser(config.regulariser)
        self.iterations = 0
        self.stopped = False
        self.start = 0.0
        # the linear stage: rotation vector (rigid) or matrix offset (affine), translation
        # in half image sizes; the deformable stage: its dense residual at some level
        ndim = self.ndim
        size = {"rigid": 1 if ndim == 2 else 3, "affine": ndim * ndim, None: 0}[config.affine]
        self.linear = torch.zeros(size, device=device, requires_grad=True)
        self.shift = torch.zeros(ndim, device=device, requires_grad=config.affine is not None)
        self.residual: Tensor | None = None

    # --- the transformation --------------------------------------------------------------
    def matrix(self) -> tuple[Tensor, Tensor]:
        """Return the linear stage's ``A`` and ``t`` in full-resolution voxels."""
        ndim = self.ndim
        half = torch.tensor([(n - 1) / 2.0 for n in self.full.shape], device=self.device)
        translation = self.shift * half
        if self.config.affine == "rigid":
            return rotation_matrix(self.linear, ndim), translation
        eye = torch.eye(ndim, device=self.device)
        if self.config.affine == "affine":
            return eye + self.linear.view(ndim, ndim), translation
        return eye, translation

    def deformable(self, level: Level, residual: Tensor | None) -> Tensor | None:
        """Return the deformable displacement ``u`` on a level: start and residual."""
        if residual is not None and self.config.diffeomorphic:
            residual = self.integrate(residual)
        if level.init is None:
            return residual
        if residual is None:
            return level.init
        return compose(level.init, residual) if self.config.diffeomorphic else level.init + residual

    def integrate(self, velocity: Tensor) -> Tensor:
        """Integrate a velocity, at half resolution on grids of 64 voxels or more a side.

        The velocity is as smooth as the B-spline (or the Gaussian) makes it, so halving
        its grid loses little, and the squarings cost a quarter (an eighth in 3D).
        """
        steps = self.config.integration_steps
        shape = tuple(velocity.shape[2:])
        if min(shape) < 64:
            return integrate_velocity(velocity, steps)
        half = tuple(math.ceil(n / 2) for n in shape)
        return resize_field(integrate_velocity(resize_field(velocity, half), steps), shape)

    def linear_part(self, level: Level) -> tuple[Tensor, Tensor] | None:
        """Return the linear stage on a level: its displacement ``a`` and matrix ``A``."""
        if self.config.affine is None:
            return None
        matrix, translation = self.matrix()
        level_matrix, _ = affine_on_grid(matrix, translation, self.full.shape, level.shape)
        return affine_field(matrix, translation, self.full.shape, level.shape), level_matrix

    def displacement(
        self, level: Level, u: Tensor | None, linear: tuple[Tensor, Tensor] | None
    ) -> Tensor:
        """Return the displacement ``d = a + A u`` on a level, ``linear`` being ``(a, A)``."""
        if linear is None:
            return u if u is not None else level.fixed.new_zeros(1, self.ndim, *level.shape)
        disp, matrix = linear
        return disp if u is None else disp + torch.einsum("ij,bj...->bi...", matrix, u)

    def loss(self, level: Level, disp: Tensor, u: Tensor | None) -> tuple[Tensor, Tensor]:
        """Similarity of the warped moving image plus the weighted regulariser of ``u``.

        Returns the loss and, detached, the loss, the similarity and the regularisation
        stacked, to be read from the device in one transfer.
        """
        warped, fixed = warp(level.moving, disp), level.fixed
        extra = {}
        if level.moving_labels is not None:
            warped_labels = warp(level.moving_labels, disp)
            if level.mask is not None:
                warped_labels = torch.lerp(level.fixed_labels, warped_labels, level.mask)
            extra = {"warped_labels": warped_labels, "fixed_labels": level.fixed_labels}
        if level.mask is not None:
            warped = torch.lerp(fixed, warped, level.mask)
        similarity = self.similarity(warped, fixed, **extra)
        regularisation = self.regulariser(u) if u is not None else similarity.new_zeros(())
        total = similarity + self.config.lam * regularisation
        return total, torch.stack([total, similarity, regularisation]).detach()

    # --- the stages ----------------------------------------------------------------------
    def run(self) -> Generator[OptimiseEvent, None, OptimiseResult]:
        """Both stages over all levels, then the result at full resolution."""
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.config.seed)
            self.start = time.perf_counter()
            with torch.no_grad():
                initial_u = self.deformable(self.full, None)
                initial_disp = self.displacement(self.full, initial_u, None)
                initial_loss, _ = _terms(self.loss(self.full, initial_disp, initial_u)[1])
            linear = self.config.linear_levels(len(self.pyramid))
            for index, level in enumerate(self.pyramid[:linear]):
                if self.stopped:
                    break
                yield from self._affine_level(index, level)
            for index, level in enumerate(self.pyramid):
                if self.stopped or self.config.transform == "none":
                    break
                yield from self._deformable_level(index, level)
            return self._result(initial_loss)

    def _affine_level(self, index: int, level: Level) -> Generator[OptimiseEvent, None, None]:
        u = self.deformable(level, None)
        u = None if u is None else u.detach()

        def objective() -> tuple[Tensor, Tensor]:
            return self.loss(level, self.displacement(level, u, self.linear_part(level)), u)

        params = [self.linear, self.shift]
        config = self.config
        yield from self._loop(
            "affine", index, params, objective, config.affine_lr, config.affine_iterations
        )

    def _deformable_level(self, index: int, level: Level) -> Generator[OptimiseEvent, None, None]:
        config = self.config
        base = None
        if self.residual is not None:
            base = resize_field(self.residual, level.shape)
        self.linear.requires_grad_(False)
        self.shift.requires_grad_(False)
        with torch.no_grad():
            linear = self.linear_part(level)
        if config.transform == "bspline":
            grid = control_shape(level.shape, config.grid_spacing)
        else:
            grid = level.shape
        param = torch.zeros(1, self.ndim, *grid, device=self.device, requires_grad=True)

        def residual() -> Tensor:
            if config.transform == "bspline":
                field = bspline_field(param, level.shape, config.grid_spacing)
            else:
                field = gaussian_smooth(param, config.smoothing)
            return field if base is None else base + field

        def objective() -> tuple[Tensor, Tensor]:
            u = self.deformable(level, residual())
            return self.loss(level, self.displacement(level, u, linear), u)

        iterations = config.level_iterations(len(self.pyramid))[index]
        yield from self._loop("deformable", index, [param], objective, config.lr, iterations)
        with torch.no_grad():
            self.residual = residual().detach()

    def _loop(
        self,
        stage: str,
        index: int,
        params: list[Tensor],
        objective: Objective,
        lr: float,
        iterations: int,
    ) -> Generator[OptimiseEvent, None, None]:
        """Run Adam on one level, keeping the best parameters; restore them at the end."""
        config = self.config
        optimiser = torch.optim.Adam(params, lr=lr)
        best_loss = float("inf")
        best = [p.detach().clone() for p in params]
        waited = 0
        for iteration in range(1, iterations + 1):
            if self.stop is not None and self.stop():
                self.stopped = True
                break
            optimiser.zero_grad(set_to_none=True)
            loss, parts = objective()
            value, terms = _terms(parts)
            if not math.isfinite(value):
                break  # keep the best parameters found so far
            if value < best_loss:
                margin = config.tolerance * abs(best_loss)
                improved = best_loss == math.inf or value < best_loss - margin
                waited = 0 if improved else waited + 1
                best_loss, best = value, [p.detach().clone() for p in params]
            else:
                waited += 1
            loss.backward()
            optimiser.step()
            self.iterations += 1
            seconds = time.perf_counter() - self.start
            yield OptimiseEvent(stage, index, iteration, value, terms, seconds)
            if waited >= config.patience:
                break
        with torch.no_grad():
            for param, value in zip(params, best, strict=True):
                param.copy_(value)

    def _result(self, initial_loss: float) -> OptimiseResult:
        """Return the best transformation at full resolution, or the start if better."""
        full = self.full
        with torch.no_grad():
            residual = None
            if self.residual is not None:
                residual = resize_field(self.residual, full.shape)
            u = self.deformable(full, residual)
            disp = self.displacement(full, u, self.linear_part(full))
            loss, terms = _terms(self.loss(full, disp, u)[1])
            matrix, translation = self.matrix()
            if loss > initial_loss:  # the start was better: return it
                u = self.deformable(full, None)
                disp = u if u is not None else torch.zeros_like(disp)
                loss, terms = _terms(self.loss(full, disp, u)[1])
                matrix, translation = torch.eye(self.ndim), torch.zeros(self.ndim)
        affine = None
        if self.config.affine is not None:
            affine = homogeneous_matrix(
                matrix.detach().cpu().double(), translation.detach().cpu().double(), full.shape
            )
        return OptimiseResult(
            displacement=disp.detach().float().cpu().contiguous(),
            affine=affine,
            loss=loss,
            initial_loss=initial_loss,
            terms=terms,
            iterations=self.iterations,
            seconds=time.perf_counter() - self.start,
            stopped=self.stopped,
            config=self.config,
        )
