"""The registration network and the feature extractor, built on the U-Net.

Both record the constructor arguments that rebuild them once, through
:class:`Configured`, so a model file can rebuild the network without pickling it.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from src_training.metrics.dice import soft_dice_loss
from src_training.networks.unet import UNet
from src_training.spatial.transforms import integrate_velocity, one_hot, spatial_ndim

FEATURE_KINDS = ("segmentation", "autoencoder")


def _plain(value: Any) -> Any:
    """Return a constructor argument as a JSON value (sequences become lists)."""
    if isinstance(value, Sequence) and not isinstance(value, str):
        return [_plain(v) for v in value]
    return value


class Configured(nn.Module):
    """A module that records the constructor arguments that rebuild it.

    Every subclass's ``__init__`` is wrapped so that, once it has run, the bound
    arguments (defaults included) are kept; :meth:`config` returns them.
    Arguments that do not change the architecture are listed in ``not_recorded``.
    """

    not_recorded: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__init__
        signature = inspect.signature(init)

        @functools.wraps(init)
        def recording_init(self: Configured, *args: Any, **kw: Any) -> None:
            bound = signature.bind(self, *args, **kw)
            bound.apply_defaults()
            init(self, *args, **kw)
            arguments = list(bound.arguments.items())[1:]
            self._config = {k: _plain(v) for k, v in arguments if k not in cls.not_recorded}

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments that rebuild this network."""
        return dict(self._config)


class RegistrationNet(Configured):
    """Predicts the displacement that warps ``moving`` onto ``fixed``.

    The U-Net sees the concatenated pair and predicts a displacement (or, with
    ``diffeomorphic=True``, a stationary velocity integrated by scaling and
    squaring). The head starts with weights of standard deviation 1e-5 and zero
    bias, so training starts at the identity transform.

    Parameters
    ----------
    ndim : int
        2 or 3.
    in_channels : int
        Channels of each image of the pair.
    channels : sequence of int
        Encoder channels of the U-Net.
    diffeomorphic : bool
        Predict a velocity field and integrate it.
    int_steps : int
        Scaling-and-squaring steps when ``diffeomorphic``.
    batch_norm, dropout
        Passed to :class:`UNet`.
    activation_checkpointing : bool
        Passed to :class:`UNet`: a way to train on less memory, not part of the
        architecture, so :meth:`config` does not record it.
    """

    not_recorded: ClassVar[frozenset[str]] = frozenset({"activation_checkpointing"})

    def __init__(
        self,
        ndim: int,
        in_channels: int = 1,
        channels: Sequence[int] = (64, 128, 256),
        diffeomorphic: bool = False,
        int_steps: int = 7,
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.ndim = ndim
        self.in_channels = in_channels
        self.diffeomorphic = diffeomorphic
        self.int_steps = int_steps
        self.unet = UNet(
            ndim,
            2 * in_channels,
            ndim,
            channels,
            True,
            batch_norm,
            dropout,
            activation_checkpointing,
        )
        nn.init.normal_(self.unet.head.weight, std=1e-5)
        nn.init.zeros_(self.unet.head.bias)

    def forward(self, moving: Tensor, fixed: Tensor) -> Tensor:
        """Displacement ``(B, ndim, *spatial)`` in voxels that pulls ``moving`` onto ``fixed``."""
        if moving.shape != fixed.shape:
            raise ValueError(
                f"moving {tuple(moving.shape)} and fixed {tuple(fixed.shape)} must have one shape"
            )
        if moving.shape[1] != self.in_channels:
            raise ValueError(
                f"the model expects {self.in_channels}-channel images, got {moving.shape[1]}"
            )
        out = self.unet(torch.cat([moving, fixed], dim=1))
        if self.diffeomorphic:
            return integrate_velocity(out, self.int_steps)
        return out


def segmentation_loss(logits: Tensor, labels: Tensor, dice_weight: float = 0.0) -> Tensor:
    """Cross-entropy plus an optional soft Dice term.

    Parameters
    ----------
    logits : Tensor
        ``(B, K, *spatial)`` class scores.
    labels : Tensor
        ``(B, 1, *spatial)`` integer class ids in ``0..K-1``.
    dice_weight : float
        Weight of :func:`~src_training.metrics.dice.soft_dice_loss` of the softmax.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    target = labels[:, 0].long()
    loss = F.cross_entropy(logits, target)
    if dice_weight > 0:
        probs = logits.softmax(dim=1)
        loss = loss + dice_weight * soft_dice_loss(probs, one_hot(labels, logits.shape[1]))
    return loss


class FeatureExtractor(Configured):
    """The network whose frozen encoder features define DeepSim.

    ``kind="segmentation"``: a U-Net with skip connections and a class head,
    trained with :func:`segmentation_loss`. ``kind="autoencoder"``: the same
    backbone without skip connections reconstructing its input (MSE), so every
    piece of information has to pass through the encoder features.

    Parameters
    ----------
    ndim : int
        2 or 3.
    in_channels : int
        Image channels.
    num_classes : int
        Segmentation classes (ignored by the autoencoder).
    channels : sequence of int
        Encoder channels; one DeepSim feature map per stage.
    kind : {"segmentation", "autoencoder"}
        Training task.
    dice_weight : float
        Weight of the soft Dice term of the segmentation loss.
    batch_norm, dropout
        Passed to :class:`UNet`.
    activation_checkpointing : bool
        Passed to :class:`UNet`; not recorded (as for :class:`RegistrationNet`).
    """

    not_recorded: ClassVar[frozenset[str]] = frozenset({"activation_checkpointing"})

    def __init__(
        self,
        ndim: int,
        in_channels: int = 1,
        num_classes: int = 2,
        channels: Sequence[int] = (64, 128, 256),
        kind: str = "segmentation",
        dice_weight: float = 0.0,
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
        if kind == "segmentation" and num_classes < 2:
            raise ValueError(f"a segmentation extractor needs >= 2 classes, got {num_classes}")
        self.ndim = ndim
        self.in_channels = in_channels
        self.kind = kind
        self.dice_weight = dice_weight
        out = num_classes if kind == "segmentation" else in_channels
        skip = kind == "segmentation"
        self.unet = UNet(
            ndim, in_channels, out, channels, skip, batch_norm, dropout, activation_checkpointing
        )

    def forward(self, x: Tensor) -> Tensor:
        """Class logits (segmentation) or the reconstruction (autoencoder)."""
        return self.unet(x)

    def features(self, x: Tensor) -> list[Tensor]:
        """Encoder-stage feature maps compared by DeepSim (1/2, 1/4, 1/8, ... resolution)."""
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"the feature extractor expects {self.in_channels}-channel images, got {x.shape[1]}"
            )
        if spatial_ndim(x) != self.ndim:
            raise ValueError(
                f"the feature extractor is {self.ndim}D but the images are {spatial_ndim(x)}D"
            )
        return self.unet.encode(x)

    def training_loss(self, image: Tensor, labels: Tensor | None = None) -> Tensor:
        """Loss of the extractor's own task on a batch.

        Parameters
        ----------
        image : Tensor
            ``(B, C, *spatial)`` images.
        labels : Tensor, optional
            ``(B, 1, *spatial)`` class ids; required for segmentation.

        Returns
        -------
        Tensor
            Scalar loss.
        """
        out = self(image)
        if self.kind == "autoencoder":
            return F.mse_loss(out, image)
        if labels is None:
            raise ValueError("a segmentation feature extractor needs labels to train")
        return segmentation_loss(out, labels, self.dice_weight)
