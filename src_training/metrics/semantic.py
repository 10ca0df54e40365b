"""DeepSim on a segmentation network's output: the distance between its class probabilities.

DeepSim compares a segmentation network's encoder features. Across modalities (an MR and
an ultrasound of one prostate) those features still carry each modality's texture: the
first stages respond to intensities that differ between the two. The network's output,
the probability of each class, is what it was trained to make the same in both: the
gland is the gland whatever scanner showed it. :class:`SegmentationSimilarity` compares
the softmax of both images' predictions by their mean squared difference over classes
and positions. An optimiser computes both images' probabilities once, at full
resolution, and warps the moving ones at every pyramid level (extract-then-warp: the
network never sees a downsampled image it was not trained on); called as a loss on two
images (training a model) it predicts through the warped image, the fixed image's
prediction without gradients. A second network (``moving_extractor``) may segment the
moving image instead: one network per modality, each trained on its own, with the same
classes. With an intensity metric (``deepsim-seg+ncc``) the loss is
``intensity(raw) + weight * distance(probabilities)``: the probabilities carry what the
network was trained to see, the raw images the detail inside each class.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
from torch import Tensor, nn

from src_training.metrics._common import _check_pair, check_weight
from src_training.metrics.feature_maps import INTENSITY_TERMS
from src_training.metrics.feature_pca import onto_grid
from src_training.metrics.features import DeepSim

SEGMENTATION_WEIGHT = 9.0
"""Weight of the class-probability term when an intensity term is added (``deepsim-seg+ncc``).

Chosen on the ISBI validation pairs 20:25 (docs/optimisation.md): with NCC at λ 1, Dice
0.824 / 0.831 / 0.838 / 0.843 / 0.844 for weights 0.3 / 1 / 3 / 10 / 30 clean (0.807 / 0.817
/ 0.825 / 0.826 / 0.822 at σ = 0.3), folding rising to 0.34-0.46 % at 10 and 1.2 % at 30;
weight 9 at λ 2 (the default λ) reached 0.841 / 0.825 with 0.11 / 0.07 % folding. MSE in
place of NCC (weight 3, λ 0.25) reached 0.843 / 0.822 with 0.57-0.59 % folding, so only
``deepsim-seg+ncc`` is offered.
"""


class SegmentationSimilarity(DeepSim):
    """Mean squared difference of the class probabilities of a frozen segmentation network.

    ``sum_k mean_p (P_k(warped)_p - P_k(fixed)_p)^2 / 2``, in ``[0, 1]``: 0 where the two
    images are segmented alike, 1 where every position changes class with certainty.

    Parameters
    ----------
    extractor : nn.Module
        A segmentation feature extractor (``forward`` gives the class logits).
    eps : float
        Unused here; kept for the DeepSim signature.
    levels : sequence of int, optional
        Refused: the output has no encoder stages to choose.
    moving_extractor : nn.Module, optional
        A segmentation extractor with the same classes for the moving image (the warped
        image when called as a loss); ``extractor`` then segments the fixed image only.
    intensity : nn.Module, optional
        A metric on the raw images added to the class-probability term.
    weight : float
        Weight of the class-probability term (> 0; >= 0 with ``intensity``).
    """

    metric_name: ClassVar[str] = "deepsim-seg"
    required_kind: ClassVar[str] = "segmentation"
    static: ClassVar[bool] = True

    def __init__(
        self,
        extractor: nn.Module | None = None,
        eps: float = 1e-6,
        levels: Sequence[int] | None = None,
        moving_extractor: nn.Module | None = None,
        intensity: nn.Module | None = None,
        weight: float = 1.0,
    ) -> None:
        check_weight(weight, intensity is not None)
        if levels is not None:
            raise ValueError(
                "deepsim-seg compares the network's output, not encoder stages; "
                "leave out --feature-levels"
            )
        super().__init__(extractor, eps)
        self.moving_network = None
        if moving_extractor is not None:
            classes = [_classes(network) for network in (extractor, moving_extractor)]
            if classes[0] != classes[1]:
                raise ValueError(
                    f"the two extractors of deepsim-seg segment {classes[0]} and {classes[1]} "
                    "classes; train both on the same labels"
                )
            self._freeze(moving_extractor, "moving_network")
        self.intensity, self.weight = intensity, weight
        self.channels = int(getattr(extractor, "in_channels", 1))

    def probabilities(self, image: Tensor, moving: bool = False) -> Tensor:
        """Return the network's class probabilities of ``image``.

        Parameters
        ----------
        image : Tensor
            ``(B, C, *spatial)`` image.
        moving : bool
            The image is the moving one: segment it with the moving image's extractor,
            if there is one.

        Returns
        -------
        Tensor
            ``(B, K, *spatial)`` softmax over the ``K`` classes, in float32.
        """
        network = self.network
        if moving and self.moving_network is not None:
            network = self.moving_network
        return torch.softmax(network(image).float(), dim=1)

    def stage_maps(self, image: Tensor) -> list[Tensor]:
        """Return the class probabilities of a full-resolution image, without gradients.

        Parameters
        ----------
        image : Tensor
            ``(B, C, *spatial)`` image.

        Returns
        -------
        list of Tensor
            One ``(B, K, *spatial)`` map.
        """
        with torch.no_grad():
            return [self.probabilities(image)]

    def moving_stage_maps(self, image: Tensor) -> list[Tensor]:
        """Return :meth:`stage_maps` of the moving image (its own extractor, if any)."""
        with torch.no_grad():
            return [self.probabilities(image, moving=True)]

    def level_pair(
        self,
        stages: tuple[list[Tensor], list[Tensor]],
        raws: tuple[Tensor, Tensor],
        full_shape: tuple[int, ...],
    ) -> tuple[Tensor, Tensor]:
        """Return both images' probabilities on a pyramid level's grid (block averages).

        Parameters
        ----------
        stages : tuple of list of Tensor
            :meth:`stage_maps` of the full-resolution fixed and moving images.
        raws : tuple of Tensor
            The fixed and the moving image on the level's grid (their shape is used).
        full_shape : tuple of int
            The full-resolution spatial shape.

        Returns
        -------
        tuple of Tensor
            The fixed and the moving probabilities on the level's grid, after the raw
            images where the metric has an intensity term.
        """
        shape = tuple(raws[0].shape[2:])
        fixed, moving = (onto_grid(own[0], 0, full_shape, shape) for own in stages)
        if self.intensity is None:
            return fixed, moving
        return torch.cat([raws[0], fixed], 1), torch.cat([raws[1], moving], 1)

    def compare(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the loss of two probability maps of one grid.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, K, *spatial)`` probabilities, after the raw images where the metric has
            an intensity term.

        Returns
        -------
        Tensor
            Scalar loss (in ``[0, 1]`` without an intensity term).
        """
        if self.intensity is None:
            return self._loss(None, (warped, fixed))
        raw = self.channels
        images = (warped[:, :raw], fixed[:, :raw])
        return self._loss(images, (warped[:, raw:], fixed[:, raw:]))

    def forward(self, warped: Tensor, fixed: Tensor) -> Tensor:
        """Return the loss.

        Parameters
        ----------
        warped, fixed : Tensor
            ``(B, C, *spatial)`` images of equal shape, prepared as the extractor expects.

        Returns
        -------
        Tensor
            Scalar loss (in ``[0, 1]`` without an intensity term).
        """
        _check_pair(warped, fixed)
        with torch.no_grad():
            target = self.probabilities(fixed)
        return self._loss((warped, fixed), (self.probabilities(warped, moving=True), target))

    def _loss(
        self, images: tuple[Tensor, Tensor] | None, probabilities: tuple[Tensor, Tensor]
    ) -> Tensor:
        """Return the weighted probability term, plus the images' intensity term if any.

        ``images`` (the warped and the fixed raw images) is read only with an intensity term.
        """
        term = self.weight * _distance(*probabilities)
        if self.intensity is None:
            return term
        assert images is not None
        return self.intensity(*images) + term


def segmentation_metric(
    extractor: nn.Module | None = None,
    levels: Sequence[int] | None = None,
    moving_extractor: nn.Module | None = None,
    intensity: str | None = None,
    weight: float | None = None,
) -> SegmentationSimilarity:
    """Build ``deepsim-seg`` or, with an ``intensity`` term, ``deepsim-seg+ncc``.

    Parameters
    ----------
    extractor : nn.Module
        A segmentation feature extractor.
    levels : sequence of int, optional
        Refused (see :class:`SegmentationSimilarity`).
    moving_extractor : nn.Module, optional
        The moving image's own extractor.
    intensity : {None, "mse", "ncc"}
        The intensity metric added to the class-probability term (``INTENSITY_TERMS``).
    weight : float, optional
        Weight of the class-probability term; None: 1 alone, else
        :data:`SEGMENTATION_WEIGHT`.

    Returns
    -------
    SegmentationSimilarity
        The metric.
    """
    term = None if intensity is None else INTENSITY_TERMS[intensity]()
    if weight is None:
        weight = 1.0 if intensity is None else SEGMENTATION_WEIGHT
    return SegmentationSimilarity(
        extractor, levels=levels, moving_extractor=moving_extractor, intensity=term, weight=weight
    )


def _distance(warped: Tensor, fixed: Tensor) -> Tensor:
    """Half the squared difference of two probability maps, summed over classes, averaged."""
    return (warped - fixed).pow(2).sum(dim=1).mean() / 2


def _classes(network: nn.Module | None) -> int | None:
    """Return the number of classes a segmentation network predicts, where it says."""
    config = getattr(network, "config", None)
    if callable(config):
        return config().get("num_classes")
    return getattr(network, "num_classes", None)
