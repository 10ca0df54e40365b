"""Networks: a 2D/3D U-Net, the registration network and the feature extractor.

The encoder stage follows the DeepSim reference: a strided convolution (kernel 4,
stride 2) halves the resolution, then a kernel-3 convolution refines; each is
followed by LeakyReLU(0.2), with optional batch norm and dropout. The U-Net pads
its input on the far side of each axis to a multiple of ``2**depth`` (replicating
the edge) and crops the output back, so any image size works.

Memory: the activations overwrite the convolution outputs in place (a convolution's
backward pass needs its input, not its output), so training keeps one map per
convolution instead of two; ``activation_checkpointing=True`` keeps only the stages'
inputs and recomputes each stage in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from src_training.spatial import integrate_velocity, spatial_ndim

FEATURE_KINDS = ("segmentation", "autoencoder")


def _conv(ndim: int) -> type[nn.Module]:
    if ndim not in (2, 3):
        raise ValueError(f"ndim must be 2 or 3, got {ndim}")
    return nn.Conv2d if ndim == 2 else nn.Conv3d


def _norm(ndim: int, channels: int) -> nn.Module:
    return nn.BatchNorm2d(channels) if ndim == 2 else nn.BatchNorm3d(channels)


def _dropout(ndim: int, p: float) -> nn.Module:
    return nn.Dropout2d(p) if ndim == 2 else nn.Dropout3d(p)


def _conv_act(
    ndim: int, cin: int, cout: int, kernel: int, stride: int, batch_norm: bool
) -> list[nn.Module]:
    padding = 1  # kernel 4 / stride 2 halves exactly; kernel 3 / stride 1 keeps the size
    layers: list[nn.Module] = [_conv(ndim)(cin, cout, kernel, stride=stride, padding=padding)]
    if batch_norm:
        layers.append(_norm(ndim, cout))
    layers.append(nn.LeakyReLU(0.2, inplace=True))
    return layers


class EncoderStage(nn.Sequential):
    """Conv k4 s2 + LeakyReLU(0.2) + conv k3 + LeakyReLU(0.2): halves the resolution."""

    def __init__(
        self, ndim: int, cin: int, cout: int, batch_norm: bool = False, dropout: float = 0.0
    ) -> None:
        layers = _conv_act(ndim, cin, cout, 4, 2, batch_norm)
        layers += _conv_act(ndim, cout, cout, 3, 1, batch_norm)
        if dropout > 0:
            layers.append(_dropout(ndim, dropout))
        super().__init__(*layers)


class DecoderStage(nn.Module):
    """Upsample by 2, concatenate the skip connection (if any), two conv k3 + LeakyReLU."""

    def __init__(
        self, ndim: int, cin: int, cskip: int, cout: int, batch_norm: bool = False
    ) -> None:
        super().__init__()
        self.mode = "bilinear" if ndim == 2 else "trilinear"
        layers = _conv_act(ndim, cin + cskip, cout, 3, 1, batch_norm)
        layers += _conv_act(ndim, cout, cout, 3, 1, batch_norm)
        self.convs = nn.Sequential(*layers)

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        """Upsample ``x`` to the skip's (or twice its) size and convolve."""
        size = skip.shape[2:] if skip is not None else [2 * s for s in x.shape[2:]]
        x = F.interpolate(x, size=size, mode=self.mode, align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.convs(x)


class UNet(nn.Module):
    """U-Net for 2D or 3D images with the DeepSim reference encoder stages.

    Parameters
    ----------
    ndim : int
        2 or 3 spatial dimensions.
    in_channels, out_channels : int
        Input and output channels.
    channels : sequence of int
        Channels of the encoder stages, one per halving of the resolution
        (the reference uses ``(64, 128, 256)``: features at 1/2, 1/4 and 1/8).
    skip : bool
        Use skip connections; an autoencoder needs ``False`` so that its features
        must encode the image.
    batch_norm : bool
        Batch normalisation after each convolution.
    dropout : float
        Channel dropout probability after each encoder stage.
    activation_checkpointing : bool
        While gradients are recorded, keep only each stage's input and recompute the
        stage in the backward pass: less memory for about one more forward pass.
        Dropout draws the same mask when recomputed; batch norm statistics are updated
        twice per step.
    """

    def __init__(
        self,
        ndim: int,
        in_channels: int,
        out_channels: int,
        channels: Sequence[int] = (64, 128, 256),
        skip: bool = True,
        batch_norm: bool = False,
        dropout: float = 0.0,
        activation_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        channels = [int(c) for c in channels]
        if not channels or min(channels) < 1:
            raise ValueError(f"channels must be a non-empty list of positive ints, got {channels}")
        self.ndim = ndim
        self.depth = len(channels)
        self.skip = skip
        self.activation_checkpointing = activation_checkpointing
        cins = [in_channels, *channels[:-1]]
        self.encoder = nn.ModuleList(
            EncoderStage(ndim, ci, co, batch_norm, dropout)
            for ci, co in zip(cins, channels, strict=True)
        )
        # Decoder stage k brings resolution 1/2^(k+1) up to 1/2^k, concatenating the
        # encoder output at 1/2^k (the input image itself for k = 0).
        outs = [channels[0], *channels[:-1]]
        self.decoder = nn.ModuleList(
            DecoderStage(ndim, channels[k], cins[k] if skip else 0, outs[k], batch_norm)
            for k in reversed(range(self.depth))
        )
        self.head = _conv(ndim)(channels[0], out_channels, 3, padding=1)

    def _pad(self, x: Tensor) -> tuple[Tensor, tuple[int, ...]]:
        shape = tuple(x.shape[2:])
        multiple = 2**self.depth
        extra = [(-s) % multiple for s in shape]
        if any(extra):
            pad: list[int] = []
            for e in reversed(extra):  # F.pad lists the last axis first
                pad += [0, e]
            x = F.pad(x, pad, mode="replicate")
        return x, shape

    def _run(self, stage: Callable[..., Tensor], *inputs: Tensor | None) -> Tensor:
        """Apply a stage, through :func:`torch.utils.checkpoint.checkpoint` if asked to."""
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(stage, *inputs, use_reentrant=False)
        return stage(*inputs)

    def encode(self, x: Tensor) -> list[Tensor]:
        """Encoder-stage outputs (after activation), from the finest to the coarsest.

        Parameters
        ----------
        x : Tensor
            ``(B, in_channels, *spatial)`` input of any size.

        Returns
        -------
        list of Tensor
            One map per stage, at 1/2, 1/4, ... of the padded input size.
        """
        x, _ = self._pad(x)
        feats = []
        for stage in self.encoder:
            x = self._run(stage, x)
            feats.append(x)
        return feats

    def forward(self, x: Tensor) -> Tensor:
        """Run the U-Net; the output has the spatial size of the input."""
        if spatial_ndim(x) != self.ndim:
            raise ValueError(
                f"this is a {self.ndim}D network but the input is {spatial_ndim(x)}D "
                f"(shape {tuple(x.shape)})"
            )
        padded, shape = self._pad(x)
        skips = [padded]
        h = padded
        for stage in self.encoder:
            h = self._run(stage, h)
            skips.append(h)
        for k, stage in zip(reversed(range(self.depth)), self.decoder, strict=True):
            h = self._run(stage, h, skips[k] if self.skip else None)
        out = self.head(h)
        return out[(..., *[slice(0, s) for s in shape])]


class RegistrationNet(nn.Module):
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
        self._config = {
            "ndim": ndim,
            "in_channels": in_channels,
            "channels": [int(c) for c in channels],
            "diffeomorphic": diffeomorphic,
            "int_steps": int_steps,
            "batch_norm": batch_norm,
            "dropout": dropout,
        }
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

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments that rebuild this network."""
        return dict(self._config)

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
        Weight of ``1 - mean soft Dice`` over the classes.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    target = labels[:, 0].long()
    loss = F.cross_entropy(logits, target)
    if dice_weight > 0:
        probs = logits.softmax(dim=1)
        onehot = F.one_hot(target, logits.shape[1]).movedim(-1, 1).to(probs.dtype)
        dims = tuple(range(2, logits.dim()))
        inter = (probs * onehot).sum(dims)
        total = probs.sum(dims) + onehot.sum(dims)
        dice = (2 * inter + 1e-5) / (total + 1e-5)
        loss = loss + dice_weight * (1 - dice.mean())
    return loss


class FeatureExtractor(nn.Module):
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
    """

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
    ) -> None:
        super().__init__()
        if kind not in FEATURE_KINDS:
            raise ValueError(f"kind must be one of {FEATURE_KINDS}, got {kind!r}")
        if kind == "segmentation" and num_classes < 2:
            raise ValueError(f"a segmentation extractor needs >= 2 classes, got {num_classes}")
        self._config = {
            "ndim": ndim,
            "in_channels": in_channels,
            "num_classes": num_classes,
            "channels": [int(c) for c in channels],
            "kind": kind,
            "dice_weight": dice_weight,
            "batch_norm": batch_norm,
            "dropout": dropout,
        }
        self.ndim = ndim
        self.in_channels = in_channels
        self.kind = kind
        self.dice_weight = dice_weight
        out = num_classes if kind == "segmentation" else in_channels
        self.unet = UNet(
            ndim, in_channels, out, channels, kind == "segmentation", batch_norm, dropout
        )

    def config(self) -> dict[str, Any]:
        """Return the constructor arguments that rebuild this network."""
        return dict(self._config)

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
