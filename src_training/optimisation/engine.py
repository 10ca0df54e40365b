"""Per-pair instance optimisation: a linear stage, then a smooth deformation, coarse to fine.

The transformation found maps a fixed-image voxel ``x`` to the moving-image position
``T(x) = A (u(x) + x - c) + c + t`` (pull-back, the convention of
:mod:`src_training.spatial`): ``u`` is the deformable displacement, in the fixed image's
space, and ``(A, t)`` the optional rigid or affine stage about the image centre ``c``. So
the displacement returned is ``d(x) = a(x) + A u(x)`` with ``a`` the affine's own
displacement, and the regulariser sees ``u`` only, never the linear part.

Both stages run on the same pyramid (:mod:`src_training.optimisation.pyramid`). The
deformable stage adds, at every level, a fresh residual (a B-spline or a smoothed dense
field) to the coarser levels' result, and penalises the whole ``u``. Every level keeps
the best parameters seen (the loss of each iteration is that of the parameters it
started from) and ends early when the loss stops improving, so the returned
transformation is the best one found, and never worse at full resolution than the start.

A fixed-image ``mask`` restricts the similarity by blending: outside the mask the warped
image (and the warped labels) are replaced by the fixed ones, ``m w + (1 - m) f``, so
any metric, local or global, sees perfect agreement there and no gradient flows from it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Generator

import torch
from torch import Tensor, nn

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
from src_training.optimisation.pyramid import ArrayLike, Level, build_pyramid, check_images
from src_training.regularisers import get_regulariser
from src_training.spatial import compose, integrate_velocity, resize_field, warp

Objective = Callable[[], tuple[Tensor, dict[str, float]]]


def optimise(
    fixed: ArrayLike,
    moving: ArrayLike,
    metric: nn.Module,
    config: OptimiseConfig | None = None,
    *,
    needs_labels: bool = False,
    labels: tuple[ArrayLike, ArrayLike] | None = None,
    init: ArrayLike | None = None,
    mask: ArrayLike | None = None,
    stop: Callable[[], bool] | None = None,
    device: torch.device | str = "cpu",
) -> Generator[OptimiseEvent, None, OptimiseResult]:
    """Optimise the transformation that warps ``moving`` onto ``fixed``.

    The inputs are checked (and the memory estimated) when this function is called; the
    optimisation runs as the returned generator is iterated. It yields an
    :class:`OptimiseEvent` per iteration and returns an :class:`OptimiseResult`
    (``result = yield from optimise(...)``, or see :func:`optimise_pair`).

    Parameters
    ----------
    fixed, moving : Tensor or numpy.ndarray
        ``(1, C, H, W)`` or ``(1, C, D, H, W)`` images of equal shape, normalised as
        ``metric`` expects.
    metric : nn.Module
        A similarity loss from :func:`src_training.metrics.get_metric`, called as
        ``metric(warped, fixed, **extra)``; it is moved to ``device``.
    config : OptimiseConfig, optional
        Settings; the defaults when omitted.
    needs_labels : bool
        Whether ``metric`` needs ``warped_labels`` and ``fixed_labels`` (``ncc-sup``):
        the moving labels, one-hot and warped linearly, and the fixed ones.
    labels : tuple, optional
        ``(moving_labels, fixed_labels)`` integer class ids, ``(1, 1, *spatial)`` or
        ``spatial``; used only when ``needs_labels``.
    init : Tensor or numpy.ndarray, optional
        ``(1, ndim, *spatial)`` starting displacement (e.g. a network's prediction, to
        refine); the identity when omitted.
    mask : Tensor or numpy.ndarray, optional
        Fixed-image mask, ``(1, 1, *spatial)`` or ``spatial``, boolean or weights in
        ``[0, 1]``: the similarity counts only where it is non-zero.
    stop : callable, optional
        Polled before every iteration; when it returns True the run ends with the best
        transformation found so far.
    device : torch.device or str
        Where to optimise (``cpu``, ``cuda``, ``mps``).

    Returns
    -------
    Generator
        Yields :class:`OptimiseEvent`, returns :class:`OptimiseResult`.

    Raises
    ------
    ValueError
        If an input has the wrong shape or values, the pyramid is too deep for the image,
        labels are missing, or the job would not fit in the device's memory.
    """
    config = config or OptimiseConfig()
    device = torch.device(device)
    fixed, moving = check_images(fixed, moving)
    if needs_labels and labels is None:
        raise ValueError(
            "the metric needs label images: pass labels=(moving_labels, fixed_labels) or "
            "choose a metric without labels"
        )
    pyramid = build_pyramid(
        fixed,
        moving,
        config.levels,
        labels=labels if needs_labels else None,
        init=init,
        mask=mask,
        device=device,
    )
    metric.to(device)
    return _Run(pyramid, metric, config, stop, device).run()


def optimise_pair(
    fixed: ArrayLike,
    moving: ArrayLike,
    metric: nn.Module,
    config: OptimiseConfig | None = None,
    **options: object,
) -> OptimiseResult:
    """Run :func:`optimise` to the end, ignoring its events.

    Parameters
    ----------
    fixed, moving, metric, config
        As for :func:`optimise`.
    **options
        Its keyword options (``needs_labels``, ``labels``, ``init``, ``mask``, ``stop``,
        ``device``).

    Returns
    -------
    OptimiseResult
        The transformation found.
    """
    events = optimise(fixed, moving, metric, config, **options)
    while True:
        try:
            next(events)
        except StopIteration as done:
            return done.value


class _Run:
    """One optimisation: the pyramid, the parameters and the loop shared by both stages."""

    def __init__(
        self,
        pyramid: list[Level],
        metric: nn.Module,
        config: OptimiseConfig,
        stop: Callable[[], bool] | None,
        device: torch.device,
    ) -> None:
        self.pyramid = pyramid
        self.metric = metric
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
            residual = integrate_velocity(residual, self.config.integration_steps)
        if level.init is None:
            return residual
        if residual is None:
            return level.init
        return compose(level.init, residual) if self.config.diffeomorphic else level.init + residual

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

    def loss(self, level: Level, disp: Tensor, u: Tensor | None) -> tuple[Tensor, dict[str, float]]:
        """Similarity of the warped moving image plus the weighted regulariser of ``u``."""
        warped, fixed = warp(level.moving, disp), level.fixed
        extra = {}
        if level.moving_labels is not None:
            warped_labels = warp(level.moving_labels, disp)
            if level.mask is not None:
                warped_labels = torch.lerp(level.fixed_labels, warped_labels, level.mask)
            extra = {"warped_labels": warped_labels, "fixed_labels": level.fixed_labels}
        if level.mask is not None:
            warped = torch.lerp(fixed, warped, level.mask)
        similarity = self.metric(warped, fixed, **extra)
        regularisation = self.regulariser(u) if u is not None else similarity.new_zeros(())
        total = similarity + self.config.lam * regularisation
        return total, {"similarity": similarity.item(), "regularisation": regularisation.item()}

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
                initial_loss, _ = self.loss(self.full, initial_disp, initial_u)
            if self.config.affine is not None:
                for index, level in enumerate(self.pyramid):
                    if self.stopped:
                        break
                    yield from self._affine_level(index, level)
            for index, level in enumerate(self.pyramid):
                if self.stopped or self.config.transform == "none":
                    break
                yield from self._deformable_level(index, level)
            return self._result(float(initial_loss))

    def _affine_level(self, index: int, level: Level) -> Generator[OptimiseEvent, None, None]:
        u = self.deformable(level, None)
        u = None if u is None else u.detach()

        def objective() -> tuple[Tensor, dict[str, float]]:
            return self.loss(level, self.displacement(level, u, self.linear_part(level)), u)

        params = [self.linear, self.shift]
        optimiser = torch.optim.Adam(params, lr=self.config.affine_lr)
        yield from self._loop(
            "affine", index, params, objective, optimiser, self.config.affine_iterations
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

        def objective() -> tuple[Tensor, dict[str, float]]:
            u = self.deformable(level, residual())
            return self.loss(level, self.displacement(level, u, linear), u)

        if config.optimiser == "lbfgs":
            optimiser = torch.optim.LBFGS(
                [param], lr=1.0, max_iter=1, history_size=10, line_search_fn="strong_wolfe"
            )
        else:
            optimiser = torch.optim.Adam([param], lr=config.lr)
        iterations = config.level_iterations()[index]
        yield from self._loop("deformable", index, [param], objective, optimiser, iterations)
        with torch.no_grad():
            self.residual = residual().detach()

    def _loop(
        self,
        stage: str,
        index: int,
        params: list[Tensor],
        objective: Objective,
        optimiser: torch.optim.Optimizer,
        iterations: int,
    ) -> Generator[OptimiseEvent, None, None]:
        """Iterate one level, keeping the best parameters; restore them at the end."""
        config = self.config
        best_loss = float("inf")
        best = [p.detach().clone() for p in params]
        waited = 0
        for iteration in range(1, iterations + 1):
            if self.stop is not None and self.stop():
                self.stopped = True
                break
            before = [p.detach().clone() for p in params]
            record: dict[str, float] = {}

            def closure(record: dict[str, float] = record) -> Tensor:
                optimiser.zero_grad(set_to_none=True)
                loss, terms = objective()
                loss.backward()
                if not record:
                    record.update(terms, loss=loss.item())
                return loss

            optimiser.step(closure)
            value = record.pop("loss")
            if not math.isfinite(value):
                break  # a non-finite loss: keep the best parameters found so far
            if value < best_loss:
                improved = value < best_loss - config.tolerance * abs(best_loss)
                waited = 0 if improved or best_loss == float("inf") else waited + 1
                best_loss, best = value, before
            else:
                waited += 1
            self.iterations += 1
            seconds = time.perf_counter() - self.start
            yield OptimiseEvent(stage, index, iteration, value, record, seconds)
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
            loss, terms = self.loss(full, disp, u)
            matrix, translation = self.matrix()
            if float(loss) > initial_loss:  # the start was better: return it
                u = self.deformable(full, None)
                disp = u if u is not None else torch.zeros_like(disp)
                loss, terms = self.loss(full, disp, u)
                matrix, translation = torch.eye(self.ndim), torch.zeros(self.ndim)
        affine = None
        if self.config.affine is not None:
            affine = homogeneous_matrix(
                matrix.detach().cpu().double(), translation.detach().cpu().double(), full.shape
            )
        return OptimiseResult(
            displacement=disp.detach().float().cpu().contiguous(),
            affine=affine,
            loss=float(loss),
            initial_loss=initial_loss,
            terms=terms,
            iterations=self.iterations,
            seconds=time.perf_counter() - self.start,
            stopped=self.stopped,
        )
