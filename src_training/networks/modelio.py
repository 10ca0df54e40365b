"""Model files: safe to open, checked for damage, complete enough to rebuild the model.

A model file is written by :func:`torch.save` but holds only tensors, numbers and
strings: ``{"format": FORMAT, "format_version": int, "metadata": JSON string,
"state_dict": {name: tensor}, "training_state": {...}, "checksum": hex}``. It is read
with ``torch.load(weights_only=True)``, which refuses to unpickle anything else, so
opening a file never runs code from it. Files are written atomically (to a
temporary file in the same folder, then renamed), so a crash while saving leaves
the previous file intact.

Damage from storage or copying (flipped bytes, a file cut short) is refused, never
used: ``checksum`` is the SHA-256 of the content (:func:`content_checksum`), checked
after reading, and the zip's comment holds a seal, the SHA-256 of every byte before
it, checked before anything is unpickled; it also covers bytes no reader uses (zip
padding), since damage there means the copy is failing. Files saved before these
checks load with an :class:`UncheckedModelWarning`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import platform
import tempfile
import warnings
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
SEAL_PREFIX = b"napari-deepsim sha256:"
SEAL_SIZE = len(SEAL_PREFIX) + 64  # the prefix and a hex SHA-256
_END_RECORD = b"PK\x05\x06"  # a zip's end of central directory record (22 bytes)


class UncheckedModelWarning(UserWarning):
    """A model file saved before files carried checksums: damage to it goes unnoticed."""


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


def content_checksum(payload: dict[str, Any]) -> str:
    """SHA-256 of a model file's content, independent of how it is serialised.

    Parameters
    ----------
    payload : dict
        ``format``, ``format_version``, ``metadata``, ``state_dict`` and
        ``training_state`` as :func:`save_model` stores them (other keys are ignored).

    Returns
    -------
    str
        Hex digest over those entries in this order; within them, dictionaries in
        the order of their keys' ``repr``, every tensor as dtype, shape and bytes.

    Raises
    ------
    TypeError
        If the content holds a value a model file cannot (anything but tensors,
        dicts, lists, tuples, strings, numbers, booleans and None).
    """
    digest = hashlib.sha256()
    for key in ("format", "format_version", "metadata", "state_dict", "training_state"):
        _feed(digest, key)
        _feed(digest, payload.get(key))
    return digest.hexdigest()


def _feed(digest: Any, value: object) -> None:
    """Add one value to a digest, tagged with its type and length so that none is ambiguous."""
    if isinstance(value, torch.Tensor):
        flat = value.detach().cpu().contiguous().reshape(-1)
        digest.update(f"T{value.dtype}{list(value.shape)};".encode())
        digest.update(flat.view(torch.uint8).numpy())
    elif isinstance(value, dict):
        digest.update(f"D{len(value)};".encode())
        for key in sorted(value, key=repr):
            _feed(digest, key)
            _feed(digest, value[key])
    elif isinstance(value, list | tuple):
        digest.update(f"L{len(value)};".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, str):
        data = value.encode()
        digest.update(f"S{len(data)};".encode() + data)
    elif value is None or isinstance(value, bool | int | float):
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"a model file cannot hold a {type(value).__name__}")


def _sealed(data: bytes) -> bytes:
    """Torch's zip ``data`` with the SHA-256 of all its bytes appended as the zip comment."""
    if data[-22:-18] != _END_RECORD or data[-2:] != b"\0\0":
        raise RuntimeError("torch.save wrote a zip with a comment or without an end record")
    head = data[:-2] + SEAL_SIZE.to_bytes(2, "little")  # the end record's comment length
    return head + SEAL_PREFIX + hashlib.sha256(head).hexdigest().encode()


def _damaged(path: Path, what: str) -> ValueError:
    return ValueError(
        f"model file {path} is damaged ({what}); restore an intact copy or train it again"
    )


def _unreadable(path: Path) -> ValueError:
    return ValueError(
        f"could not read model file {path}: it is truncated or not a model file; copy or "
        "train it again"
    )


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
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "metadata": json.dumps(meta),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "training_state": training_state or {},
    }
    payload["checksum"] = content_checksum(payload)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"the output folder {folder} does not exist; create it first")
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = _sealed(buffer.getvalue())
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _read_payload(path: Path) -> tuple[dict[str, Any], bool]:
    """Return the unpickled payload of a model file and whether the file carries a seal."""
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a model file; pass the .pt file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {path} does not exist; check the path")
    data = path.read_bytes()
    if not data:
        raise ValueError(
            f"model file {path} is empty (it was not written completely); copy or train it again"
        )
    if data[:2] != b"PK" and data[:1] != b"\x80":  # starts neither torch's zip nor a pickle
        raise ValueError(
            f"{path} is not a napari-deepsim model file; train one with `deepsim train` or "
            "`deepsim train-features`"
        )
    seal = data[-SEAL_SIZE:]
    sealed = seal.startswith(SEAL_PREFIX)
    if sealed and hashlib.sha256(data[:-SEAL_SIZE]).hexdigest().encode() != seal[-64:]:
        raise _damaged(path, "its bytes differ from those it was saved with")
    try:
        with warnings.catch_warnings():  # a damaged pickle can make torch warn about its
            warnings.simplefilter("ignore")  # own classes; the error below says what is wrong
            payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "GLOBAL" in str(err):  # names a class or function, which unpickling would call
            raise ValueError(
                f"refusing to load {path}: it holds Python objects other than tensors and "
                "numbers, and loading it could run code; use a model file made by "
                "`deepsim train` or `deepsim train-features`"
            ) from None
        raise _unreadable(path) from None
    except Exception:  # whatever damage or a foreign file makes torch's zip or unpickler raise
        raise _unreadable(path) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(
            f"{path} is not a napari-deepsim model file; train one with `deepsim train` or "
            "`deepsim train-features`"
        )
    return payload, sealed


def _verify(payload: dict[str, Any], sealed: bool, path: Path) -> bool:
    """Refuse content that differs from its checksum; False for a file saved without one."""
    stored = payload.get("checksum")
    if stored is None and not sealed:
        return False
    if stored is None or not sealed:
        what = "its checksum is missing" if sealed else "its end is cut off or altered"
        raise _damaged(path, what)
    try:
        matches = content_checksum(payload) == stored
    except TypeError as err:
        raise _damaged(path, str(err)) from None
    if not matches:
        raise _damaged(path, "its content differs from its checksum")
    return True


def load_model(path: str | Path) -> ModelFile:
    """Open a model file safely, check it for damage and rebuild its network.

    Parameters
    ----------
    path : str or Path
        A file written by :func:`save_model`.

    Returns
    -------
    ModelFile
        The network (CPU, eval mode), its metadata and any training state.

    Raises
    ------
    ValueError
        If the file is damaged, truncated, not a model file, or from a newer version:
        one sentence naming the file and what to do.

    Warns
    -----
    UncheckedModelWarning
        If the file was saved before model files carried checksums.
    """
    path = Path(path)
    payload, sealed = _read_payload(path)
    version = payload.get("format_version", 0)
    if not isinstance(version, int):
        raise _damaged(path, f"its format version is {version!r}")
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} was written by a newer napari-deepsim (model format {version}, this "
            f"version {__version__} reads up to {FORMAT_VERSION}); upgrade napari-deepsim"
        )
    checked = _verify(payload, sealed, path)
    try:
        metadata = json.loads(payload["metadata"])
        cls = KINDS[metadata["kind"]]
        network = cls(**metadata["network"])
        network.load_state_dict(payload["state_dict"])
        training_state = dict(payload.get("training_state") or {})
    except Exception as err:  # an unchecked file's damage can break any step of the rebuild
        cause = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"{path} is damaged or inconsistent ({cause}); restore an intact copy or train it again"
        ) from err
    if not checked:
        warnings.warn(
            UncheckedModelWarning(
                f"{path} carries no checksum (saved by an older napari-deepsim), so damage to "
                "it would go unnoticed; train it again to get a checked file"
            ),
            stacklevel=2,
        )
    network.eval()
    return ModelFile(network, metadata, training_state)


def require_kind(model: ModelFile, kind: str, path: str | Path) -> None:
    """Raise a clear error when a model file holds the wrong kind of network."""
    if model.kind != kind:
        hint = {
            "registration": "a registration model made by `deepsim train`",
            "features": "a feature extractor made by `deepsim train-features`",
        }[kind]
        raise ValueError(f"{path} holds a {model.kind} model; pass {hint} instead")
