"""The 2D/3D U-Net of the registration network and the feature extractor.

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

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from src_training.spatial.transforms import spatial_ndim


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
