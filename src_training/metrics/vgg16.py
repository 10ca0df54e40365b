"""The first three blocks of VGG16 (up to ``relu3_3``), loadable from torchvision weights.

The layers are laid out exactly as ``torchvision.models.vgg16().features[:16]``, so the
parameter names are ``features.{0,2,5,7,10,12,14}.{weight,bias}`` and a full torchvision
VGG16 state dict loads (its deeper ``features.*`` and ``classifier.*`` entries are
ignored). Weights are never downloaded: they are read from a local file.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

#: Output channels of the conv layers (``None`` marks a max-pool), torchvision order.
_LAYOUT: tuple[int | None, ...] = (64, 64, None, 128, 128, None, 256, 256, 256)

#: Indices in ``features`` whose outputs are relu1_2, relu2_2 and relu3_3.
_TAPS: tuple[int, ...] = (3, 8, 15)

#: ImageNet normalisation the pretrained weights expect, for RGB inputs in ``[0, 1]``.
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_HOW_TO_GET = (
    "save torchvision's VGG16_Weights.IMAGENET1K_V1 state dict on a machine with "
    "torchvision: `torch.save(torchvision.models.vgg16(weights='IMAGENET1K_V1')"
    ".state_dict(), 'vgg16.pth')` and pass --vgg-weights vgg16.pth"
)


class VGG16Features(nn.Module):
    """VGG16 convolutions up to ``relu3_3`` with torchvision's parameter names.

    The network expects ImageNet-normalised RGB images ``(B, 3, H, W)``; see
    :data:`IMAGENET_MEAN` and :data:`IMAGENET_STD`.
    """

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = 3
        for out in _LAYOUT:
            if out is None:
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            else:
                layers += [nn.Conv2d(channels, out, kernel_size=3, padding=1), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Return the relu1_2, relu2_2 and relu3_3 activations.

        Parameters
        ----------
        x : Tensor
            ``(B, 3, H, W)`` ImageNet-normalised images.

        Returns
        -------
        list of Tensor
            Three maps at full, 1/2 and 1/4 resolution with 64, 128 and 256 channels.
        """
        taps = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in _TAPS:
                taps.append(x)
        return taps


def _read_state_dict(path: Path) -> dict[str, Tensor]:
    """Read a tensor dictionary from a ``torch.save`` or ``.safetensors`` file."""
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as err:
            raise ValueError(
                f"{path} is a .safetensors file but the safetensors package is not "
                "installed: `pip install safetensors`, or save the weights with torch.save"
            ) from err
        return load_file(str(path), device="cpu")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(
            f"{path} is not a readable torch state dict ({err}); {_HOW_TO_GET}"
        ) from err
    if not isinstance(loaded, dict):
        raise ValueError(f"{path} holds a {type(loaded).__name__}, not a state dict; {_HOW_TO_GET}")
    return loaded


def load_vgg16_weights(path: str | Path) -> VGG16Features:
    """Build :class:`VGG16Features` from a local copy of torchvision's VGG16 weights.

    Parameters
    ----------
    path : str or Path
        A file written with ``torch.save(state_dict)`` or a ``.safetensors`` file
        (needs the ``safetensors`` package) with torchvision's key names. Keys that
        the first three blocks do not use are ignored.

    Returns
    -------
    VGG16Features
        The network in eval mode with gradients disabled for its parameters.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist; the message says how to obtain the weights.
    ValueError
        If the file is unreadable, lacks required keys or has wrongly shaped tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"VGG16 weights not found at {path}: {_HOW_TO_GET}")
    state = _read_state_dict(path)
    net = VGG16Features()
    expected = net.state_dict()
    missing = [key for key in expected if key not in state]
    if missing:
        raise ValueError(
            f"{path} is not a torchvision VGG16 state dict: it lacks {', '.join(missing[:2])}"
            f"{' and more' if len(missing) > 2 else ''}; {_HOW_TO_GET}"
        )
    wrong = [
        f"{key} {tuple(state[key].shape)} (expected {tuple(value.shape)})"
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if wrong:
        raise ValueError(f"{path} has tensors of the wrong shape: {', '.join(wrong)}")
    net.load_state_dict({key: state[key] for key in expected})
    return net.eval().requires_grad_(False)
