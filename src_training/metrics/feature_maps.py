"""DeepSim on feature maps: extract-then-warp, local distances, PCA, an intensity term.

:class:`FeatureMaps` turns the encoder stages of a frozen feature extractor into one
stack of channels on a chosen grid (a pyramid level of the optimisation, or the image's
own): every chosen stage resampled onto that grid, the raw image stacked in, each channel
normalised over space (zero mean, unit standard deviation), optionally reduced by a PCA
computed jointly from both images. Its distance is the mean cosine over channels (as
DeepSim), the mean squared difference, or local NCC per channel; with an intensity metric
the loss is ``intensity(raw) + weight * distance(features)``. The optimiser computes the
maps once per pyramid level and warps the moving maps (``static``); called as a loss on
two images it computes both images' maps (warp-then-extract).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.metrics._common import _check_pair, check_weight
from src_training.metrics.feature_pca import (
    PCA_POSITIONS,
    check_positions,
    level_factor,
    normalise,
    onto_grid,
    projected_pair,
)
from src_training.metrics.features import DeepSim, feature_cosine_loss
from src_training.metrics.intensity import MSE, NCC, local_ncc

DISTANCES = ("cosine", "mse", "ncc")
"""Distances between feature stacks (see :class:`FeatureMaps`)."""

DEFAULT_PCA = 4
"""Principal components kept when none are asked for.

On the ISBI validation pairs 20:25 ``deepsim+ncc`` reached Dice 0.830 with 4, 0.829 with
16 and 0.825 with 2 (at σ = 0.3 0.813 with 4, 0.807 with 2, for 5-10 % less time); on
the test pairs of docs/optimisation.md 4 gave 0.001-0.002 more than 16 and saved 7-11 %
of the time.
"""

STAGE_CHOICES = ("all", "coarse")
"""Which encoder stages a pyramid level compares: all, or those no finer than the level."""


@dataclass(frozen=True)
class FeatureOptions:
    """How :class:`FeatureMaps` compares feature stacks (the defaults were measured best).

    Attributes
    ----------
    distance : {"cosine", "mse", "ncc"}
        The distance between the normalised feature channels.
    stages : {"all", "coarse"}
        Every encoder stage at every pyramid level, or only the stages no finer than it.
    pca : int or None
        Principal components kept, computed jointly from both images; None:
        :data:`DEFAULT_PCA`, or every channel when there are fewer.
    weight : float or None
        Weight of the feature term; None: :data:`DEFAULT_WEIGHT` of the metric.
    static : bool
        Extract-then-warp (features once per pyramid level) rather than warp-then-extract.
    positions : int or None
        Positions per image of a level from which extract-then-warp computes the channel
        statistics and the components (:data:`PCA_POSITIONS`); None: all of them.
    """

    distance: str = "mse"
    stages: str = "all"
    pca: int | None = None
    weight: float | None = None
    static: bool = True
    positions: int | None = PCA_POSITIONS

    def kwargs(self) -> dict[str, object]:
        """Return the options as keyword arguments of :class:`FeatureMaps`.

        Returns
        -------
        dict
            Field names to values.
        """
        return asdict(self)


class FeatureMaps(DeepSim):
    """Distance between stacks of normalised feature maps, plus an optional intensity term.

    Parameters
    ----------
    extractor : nn.Module
        A segmentation feature extractor (``features(x) -> list[Tensor]``).
    distance : {"cosine", "mse", "ncc"}
        ``1 -`` the mean over positions of the cosine across channels; the mean squared
        difference of the normalised channels; or ``1 -`` the mean local squared NCC
        (window ``window``) of each channel.
    stages : {"all", "coarse"}
        Every chosen encoder stage at every grid, or at a grid of ``f`` times fewer voxels
        per axis than the image only the stages of ``f`` or more (deep stages at coarse
        pyramid levels, every stage at full resolution).
    pca : int, optional
        Reduce the normalised channels to this many principal components, computed
        jointly from both images (the fixed and the moving maps) on each grid; when
        omitted :data:`DEFAULT_PCA`, or none when the channels are no more than that.
    intensity : nn.Module, optional
        A metric on the raw images added to the feature term.
    weight : float
        Weight of the feature term (> 0 unless ``intensity`` is given, then >= 0).
    static : bool
        Whether an optimiser computes the maps once per level and warps the moving ones
        (extract-then-warp) rather than extracting from the warped image.
    levels : sequence of int, optional
        Encoder stages used (1 = half resolution); all when omitted.
    window : int
        Side of the local NCC window.
    positions : int or None
        Positions per image of a level from which :meth:`level_pair` computes the channel
        statistics and the components; None: all (:meth:`reduce` of :meth:`level_maps`).
    """

    def __init__(
        self,
        extractor: nn.Module | None = None,
        *,
        distance: str = "mse",
        stages: str = "all",
        pca: int | None = None,
        intensity: nn.Module | None = None,
        weight: float = 1.0,
        static: bool = True,
        levels: Sequence[int] | None = None,
        window: int = 9,
        positions: int | None = PCA_POSITIONS,
    ) -> None:
        super().__init__(extractor, levels=levels)
        _check_options(distance, stages, pca, weight, intensity is not None)
        check_positions(positions)
        self.distance, self.stages, self.positions = distance, stages, positions
        self.intensity, self.weight, self.static, self.window = intensity, weight, static, window
        self.channels = int(getattr(extractor, "in_channels", 1))
        self.pca = _check_pca(pca, self.channels, extractor, self.levels)

    # --- the maps --------------------------------------------------------------------------
    def stage_maps(self, image: Tensor) -> list[Tensor]:
        """Return the chosen encoder stages of ``image``, computed without gradients.

        Parameters
        ----------
        image : Tensor
            ``(B, C, *spatial)`` image.

        Returns
        -------
        list of Tensor
            The stage maps, finest first.
        """
        with torch.no_grad():
            return self._select(self.network.features(image))

    def level_maps(self, stages: list[Tensor], raw: Tensor, full_shape: tuple[int, ...]) -> Tensor:
        """Stack the raw image and the stages on the raw image's grid, features normalised.

        Parameters
        ----------
        stages : list of Tensor
            From :meth:`stage_maps` of the full-resolution image.
        raw : Tensor
            ``(B, C, *shape)`` the image on the target grid (a pyramid level).
        full_shape : tuple of int
            The full-resolution spatial shape the stages were computed from.

        Returns
        -------
        Tensor
            ``(B, C + C + K, *shape)``: the raw channels, then the normalised raw channels
            and the ``K`` normalised feature channels.
        """
        shape = tuple(raw.shape[2:])
        factor = level_factor(full_shape, shape)
        resampled = [
            onto_grid(stage, number, full_shape, shape)
            for number, stage in self._compared(stages, factor)
        ]
        features = normalise(torch.cat([raw, *resampled], dim=1))
        return torch.cat([raw, features], dim=1)

    def level_pair(
        self,
        stages: tuple[list[Tensor], list[Tensor]],
        raws: tuple[Tensor, Tensor],
        full_shape: tuple[int, ...],
    ) -> tuple[Tensor, Tensor]:
        """Return :meth:`reduce` of both :meth:`level_maps`, from ``positions`` positions.

        Parameters
        ----------
        stages : tuple of list of Tensor
            :meth:`stage_maps` of the full-resolution fixed and moving images.
        raws : tuple of Tensor
            ``(B, C, *shape)`` the fixed and the moving image on the level's grid.
        full_shape : tuple of int
            The full-resolution spatial shape.

        Returns
        -------
        tuple of Tensor
            The fixed and the moving stack: the raw channels, then the components scaled
            to a mean standard deviation of 1 (or every normalised channel without PCA);
            with a PCA the full stacks are never built (:func:`projected_pair`).
        """
        if self.pca is None:
            return tuple(
                self.level_maps(own, raw, full_shape) for own, raw in zip(stages, raws, strict=True)
            )
        compared = [
            self._compared(own, level_factor(full_shape, raws[0].shape[2:])) for own in stages
        ]
        numbers = [number for number, _ in compared[0]]
        chosen = tuple([stage for _, stage in pairs] for pairs in compared)
        fixed, moving = projected_pair(chosen, raws, numbers, full_shape, self.pca, self.positions)
        scale = fixed.flatten(2).std(dim=2).mean().clamp(min=1e-6)
        return torch.cat([raws[0], fixed / scale], 1), torch.cat([raws[1], moving / scale], 1)

    def _compared(self, stages: list[Tensor], factor: int) -> list[tuple[int, Tensor]]:
        """Return the stages a level of ``factor`` compares, with their stage numbers."""
        numbers = self.levels if self.levels is not None else range(1, len(stages) + 1)
        return [
            (number, stage)
            for number, stage in zip(numbers, stages, strict=True)
            if self.stages == "all" or factor == 1 or 2**number >= factor
        ]

    def reduce(self, fixed: Tensor, moving: Tensor) -> tuple[Tensor, Tensor]:
        """Apply the joint PCA (if any) to the feature channels of two stacks.

        Parameters
        ----------
        fixed, moving : Tensor
            Stacks from :meth:`level_maps` of the same grid.

        Returns
        -------
        tuple of Tensor
            The stacks with their feature channels projected on ``pca`` components
            (all of them where fewer), scaled to a mean standard deviation of 1.
        """
        if self.pca is None:
            return fixed, moving
        raw = self.channels
        a, b = fixed[:, raw:], moving[:, raw:]
        keep = min(self.pca, a.shape[1])  # a coarse level may compare fewer stages
        with torch.no_grad():
            both = torch.cat([a, b]).transpose(0, 1).flatten(1)  # (K, N)
            centred = both - both.mean(dim=1, keepdim=True)
            _, vectors = torch.linalg.eigh(centred @ centred.T / centred.shape[1])
            basis = vectors[:, -keep:].T.contiguous()  # (k, K)
        pa = torch.einsum("kc,bc...->bk...", basis, a)
        pb = torch.einsum("kc,bc...->bk...", basis, b)
        scale = pa.detach().flatten(2).std(dim=2).mean().clamp(min=1e-6)
        return (
            torch.cat([fixed[:, :raw], pa / scale], 1),
            torch.cat([moving[:, :raw], pb / scale], 1),
        )

    # --- the loss --------------------------------------------------------------------------
    def compare(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the loss of two stacks from :meth:`level_maps` (or :meth:`reduce`).

        Parameters
        ----------
        warped, fixed : Tensor
            Stacks of equal shape.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        raw = self.channels
        a, b = warped[:, raw:], fixed[:, raw:]
        if self.distance == "cosine":
            term = feature_cosine_loss([a], [b], self.eps)
        elif self.distance == "mse":
            term = F.mse_loss(a, b)
        else:
            term = 1.0 - local_ncc(a, b, self.window).mean()
        if self.intensity is None:
            return self.weight * term
        return self.intensity(warped[:, :raw], fixed[:, :raw]) + self.weight * term

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the loss of two images, extracting the features of both (warp-then-extract).

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        _check_pair(warped, fixed)
        shape = tuple(fixed.shape[2:])
        fixed_maps = self.level_maps(self.stage_maps(fixed), fixed, shape)
        warped_maps = self.level_maps(self._select(self.network.features(warped)), warped, shape)
        fixed_maps, warped_maps = self.reduce(fixed_maps, warped_maps)
        return self.compare(warped_maps, fixed_maps)


def _check_pca(
    pca: int | None, channels: int, extractor: nn.Module, levels: list[int] | None
) -> int | None:
    """Return the components kept, refusing more than the extractor's stages and image give."""
    config = getattr(extractor, "config", None)
    if not callable(config):
        return pca
    stages = list(config()["channels"])
    chosen = levels if levels is not None else range(1, len(stages) + 1)
    available = channels + sum(stages[number - 1] for number in chosen)
    if pca is None:
        return DEFAULT_PCA if available > DEFAULT_PCA else None
    if pca > available:
        raise ValueError(
            f"--pca {pca} asks for more components than the {available} feature channels "
            f"(image and encoder stages); use --pca {available} or fewer"
        )
    return pca


def _check_options(
    distance: str, stages: str, pca: int | None, weight: float, combined: bool
) -> None:
    if distance not in DISTANCES:
        raise ValueError(
            f"--feature-distance must be one of {', '.join(DISTANCES)}; got {distance!r}"
        )
    if stages not in STAGE_CHOICES:
        raise ValueError(
            f"--feature-stages must be one of {', '.join(STAGE_CHOICES)}; got {stages!r}"
        )
    if pca is not None and (isinstance(pca, bool) or not isinstance(pca, int) or pca < 1):
        raise ValueError(f"--pca must be a whole number of components >= 1, got {pca!r}")
    check_weight(weight, combined)


INTENSITY_TERMS = {"mse": MSE, "ncc": NCC}
"""The intensity metrics a combined metric (``deepsim+mse``, ``deepsim+ncc``) adds."""

DEFAULT_WEIGHT = {None: 1.0, "mse": 0.1, "ncc": 0.5}
"""Weight of the feature term per intensity term (None: the feature term alone).

Chosen on the ISBI validation pairs 20:25 (docs/optimisation.md): with ncc at its λ of 1,
weight 0.5 reached Dice 0.829 clean and 0.813 at σ = 0.3, against 0.827 and 0.811 for
the feature term alone; with mse at its λ of 0.25, 0.1 puts the feature term at about
the size of the intensity term.
"""


def feature_metric(
    extractor: nn.Module | None = None,
    levels: Sequence[int] | None = None,
    options: FeatureOptions | None = None,
    intensity: str | None = None,
) -> FeatureMaps:
    """Build ``deepsim-maps`` (the feature term alone) or, with ``intensity``, a combined metric.

    Parameters
    ----------
    extractor : nn.Module
        A segmentation feature extractor.
    levels : sequence of int, optional
        Encoder stages used; all when omitted.
    options : FeatureOptions, optional
        Distance, stages, PCA, weight and mode; the defaults when omitted.
    intensity : {None, "mse", "ncc"}
        The intensity metric added to the feature term (:data:`INTENSITY_TERMS`).

    Returns
    -------
    FeatureMaps
        The metric.
    """
    term = None if intensity is None else INTENSITY_TERMS[intensity]()
    kwargs = (options or FeatureOptions()).kwargs()
    if kwargs["weight"] is None:
        kwargs["weight"] = DEFAULT_WEIGHT[intensity]
    return FeatureMaps(extractor, levels=levels, intensity=term, **kwargs)
