"""Model files: safe to open, and complete enough to rebuild and use the model.

A model file is written by :func:`torch.save` but holds only tensors, numbers and
strings: ``{"format": FORMAT, "format_version": int, "metadata": JSON string,
"state_dict": {name: tensor}, "training_state": {...}}``. It is read with
``torch.load(weights_only=True)``, which refuses to unpickle anything else, so
opening a file never runs code from it. Files are written atomically (to a
temporary file in the same folder, then renamed), so a crash while saving leaves
the previous file intact.
"""

from __future__ import annotations

import json
import os
import pickle
import platform
import tempfile
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from src_training import __version__
from src_training.networks.models import FeatureExtractor, RegistrationNet

FORMAT = "napari-deepsim-model"
FORMAT_VERSION = 1
KINDS = {"registration": RegistrationNet, "features": FeatureExtractor}


@dataclass
class ModelFile:
    """A loaded model and what its file says about it.

    Attributes
    ----------
    network : nn.Module
        The rebuilt network in eval mode on the CPU.
    metadata : dict
        ``kind``, ``network`` (constructor arguments), ``ndim``, and what training
        recorded: metric, lambda, normalisation, classes, data, versions, steps.
    training_state : dict
        Optimiser state and progress, present in checkpoints made to resume.
    """

    network: nn.Module
    metadata: dict[str, Any]
    training_state: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """``registration`` or ``features``."""
        return str(self.metadata["kind"])

    @property
    def ndim(self) -> int:
        """Spatial dimensionality the network works on."""
        return int(self.metadata["network"]["ndim"])


def describe_environment() -> dict[str, str]:
    """Versions worth recording in a model file."""
    return {
        "package_version": __version__,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def model_kind(network: nn.Module) -> str:
    """Return the model-file kind of a network (``registration`` or ``features``)."""
    for kind, cls in KINDS.items():
        if isinstance(network, cls):
            return kind
    raise TypeError(f"cannot save a {type(network).__name__}; expected one of {list(KINDS)}")


def save_model(
    path: str | Path,
    network: RegistrationNet | FeatureExtractor,
    metadata: dict[str, Any],
    training_state: dict[str, Any] | None = None,
) -> Path:
    """Write a model file atomically.

    Parameters
    ----------
    path : str or Path
        Destination; its folder must exist.
    network : RegistrationNet or FeatureExtractor
        The network; its ``config()`` is recorded so it can be rebuilt.
    metadata : dict
        JSON-serialisable facts (metric, lambda, classes, data, ...).
    training_state : dict, optional
        Tensors and numbers needed to resume training (optimiser state, step).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    meta = {
        **metadata,
        "kind": model_kind(network),
        "network": network.config(),
        **describe_environment(),
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": json.dumps(meta),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "training_state": training_state or {},
    }
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"the output folder {folder} does not exist; create it first")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_payload(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a model file; pass the .pt file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist; check the path")
    if path.stat().st_size == 0:
        raise ValueError(
            f"model file {path} is empty (it was not written completely); copy or train it again"
        )
    with open(path, "rb") as handle:
        head = handle.read(2)
    if head != b"PK" and head[:1] != b"\x80":  # starts neither torch's zip nor a pickle
        raise ValueError(
            f"{path} is not a napari-deepsim model file; train one with `deepsim train` or "
            "`deepsim train-features`"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"refusing to load {path}: it holds Python objects other than tensors and numbers, "
            "and loading it could run code; use a model file made by `deepsim train` or "
            "`deepsim train-features`"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError):
        raise ValueError(
            f"could not read model file {path}: it is truncated or not a model file; copy or "
            "train it again"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a napari-deepsim model file; train one with `deepsim train` or "
            "`deepsim train-features`"
        )
    return payload


def load_model(path: str | Path) -> ModelFile:
    """Open a model file safely and rebuild its network.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_model`.

    Returns
    -------
    ModelFile
        The network (CPU, eval mode), its metadata and any training state.
    """
    path = Path(path)
    payload = _read_payload(path)
    version = int(payload.get("format_version", 0))
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer napari-deepsim (model format {version}, this "
            f"version {__version__} reads up to {FORMAT_VERSION}); upgrade napari-deepsim"
        )
    try:
        metadata = json.loads(payload["metadata"])
        cls = KINDS[metadata["kind"]]
        network = cls(**metadata["network"])
        network.load_state_dict(payload["state_dict"])
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ValueError(f"{path} is damaged or inconsistent: {err}") from None
    network.eval()
    return ModelFile(network, metadata, dict(payload.get("training_state") or {}))


def require_kind(model: ModelFile, kind: str, path: str | Path) -> None:
    """Raise a clear error when a model file holds the wrong kind of network."""
    if model.kind != kind:
        hint = {
            "registration": "a registration model made by `deepsim train`",
            "features": "a feature extractor made by `deepsim train-features`",
        }[kind]
        raise ValueError(f"{path} holds a {model.kind} model; pass {hint} instead")
