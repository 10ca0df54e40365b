"""The built-in models shipped inside the package: their registry, files and cards.

A built-in model is a pair of model files in this folder, a registration model and
the feature extractor it was trained with (``NAME.pt`` and ``NAME.features.pt``, with
16-bit weights that loading restores to float32), or a feature extractor alone, made
for optimising a pair with one metric (``metric`` in the registry, such as
``deepsim-seg``: ``--optimise --metric deepsim-seg:NAME``); each is listed in ``registry.json`` with
their SHA-256, what data they are for, their held-out scores and the intensity
profile of their training data, and described by a model card ``NAME.md``.
``scripts/train-builtin.py`` writes all of them; nothing is downloaded at run time.

Every option that takes a model file (``--model``, ``--models``, ``--features``,
``--init`` and the widgets' model pickers) also takes a built-in name, and
:func:`resolve` is the one place that turns a name into its file, refusing a file
whose SHA-256 differs from the registry's. A string that is a built-in name means the
built-in model; write ``./em-2d`` for a file of that name. ``$DEEPSIM_BUILTIN_MODELS``
names another folder holding a ``registry.json`` and its files instead of this one.
This module imports neither torch nor any other part of the project.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ENV = "DEEPSIM_BUILTIN_MODELS"
REGISTRY = "registry.json"
REINSTALL = "pip install --force-reinstall napari-deepsim"
PARTS = ("registration", "features")


@dataclass(frozen=True)
class BuiltinModel:
    """One built-in model as the registry describes it.

    Attributes
    ----------
    name : str
        What every option accepts, such as ``em-2d``.
    modality : str
        The kind of images it was trained on.
    summary : str
        One line on what it is for.
    ndim, channels : int
        Spatial dimensionality and image channels it registers.
    network : list of int
        The U-Net encoder channels of both networks (``--channels``).
    files : dict
        Per part (``registration``, ``features``): ``file``, ``sha256`` and ``bytes``.
    card : str
        File name of the model card.
    heldout : dict
        Scores on held-out pairs: ``data``, ``pairs``, and per method (``model``,
        ``identity``, ``elastix``) ``dice``, ``dice_sd``, ``folding_percent``,
        ``seconds_per_pair``; for a feature extractor alone, ``model`` is the
        optimisation with its metric.
    folder : Path
        Where the files are.
    metric : str
        For a feature extractor alone: the metric it is made for; empty otherwise.
    """

    name: str
    modality: str
    summary: str
    ndim: int
    channels: int
    network: list[int]
    files: dict[str, dict[str, Any]]
    card: str
    heldout: dict[str, Any]
    folder: Path
    metric: str = ""

    @property
    def registers(self) -> bool:
        """Whether it has a registration model (else it is a feature extractor alone)."""
        return "registration" in self.files

    @property
    def use(self) -> str:
        """How a feature extractor alone is used on the command line."""
        return f"deepsim register FIXED MOVING --optimise --metric {self.metric}:{self.name}"

    @property
    def size_bytes(self) -> int:
        """Bytes of both files together."""
        return sum(int(entry["bytes"]) for entry in self.files.values())

    @property
    def heldout_dice(self) -> float | None:
        """Mean Dice of the model on its held-out pairs (None before evaluation)."""
        value = self.heldout.get("model", {}).get("dice")
        return None if value is None else float(value)

    def description(self) -> str:
        """Return one line for pickers: name, modality, dimensionality and held-out Dice."""
        dice = self.heldout_dice
        scored = "" if dice is None else f", held-out Dice {dice:.3f}"
        kind = "" if self.registers else f" extractor for {self.metric}"
        return f"{self.name}: {self.modality}, {self.ndim}D{kind} (built-in{scored})"


def models_folder() -> Path:
    """Return the folder of the built-in models (``$DEEPSIM_BUILTIN_MODELS`` if set)."""
    override = os.environ.get(ENV)
    return Path(override) if override else Path(__file__).resolve().parent


def builtin_models() -> dict[str, BuiltinModel]:
    """Return the built-in models by name, in the registry's order.

    Returns
    -------
    dict of str to BuiltinModel
        Empty when the folder holds no registry.
    """
    folder = models_folder()
    path = folder / REGISTRY
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text())["models"]
        return {
            name: BuiltinModel(name=name, folder=folder, **entry) for name, entry in entries.items()
        }
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"the registry of built-in models {path} is damaged ({err}); reinstall the package "
            f"with `{REINSTALL}`"
        ) from None


def is_builtin(source: object) -> bool:
    """Whether ``source`` is the name of a built-in model (a string, not a ``Path``)."""
    return isinstance(source, str) and source in builtin_models()


def builtin_model(name: str) -> BuiltinModel:
    """Return a built-in model by name, refusing an unknown name with the known ones.

    Parameters
    ----------
    name : str
        A built-in name.

    Returns
    -------
    BuiltinModel
        Its registry entry.
    """
    models = builtin_models()
    if name not in models:
        known = ", ".join(models) or "none are installed"
        raise ValueError(
            f"{name!r} is not a built-in model (built-in: {known}); see `deepsim models`"
        )
    return models[name]


def sha256_of(path: Path) -> str:
    """Return the SHA-256 of a file, hex-encoded."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def builtin_file(name: str, part: str = "registration") -> Path:
    """Return one file of a built-in model after checking its SHA-256.

    Parameters
    ----------
    name : str
        A built-in name.
    part : {"registration", "features"}
        The registration model or its feature extractor.

    Returns
    -------
    Path
        The file, whose SHA-256 matches the registry.
    """
    if part not in PARTS:
        raise ValueError(f"a built-in model has the parts {', '.join(PARTS)}, not {part!r}")
    model = builtin_model(name)
    if part not in model.files:
        raise ValueError(
            f"{name} is a built-in feature extractor, not a registration model; register by "
            f"optimisation with it instead: `{model.use}`"
        )
    entry = model.files[part]
    path = model.folder / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"the built-in model file {path} is missing; reinstall the package with `{REINSTALL}`"
        )
    if sha256_of(path) != entry["sha256"]:
        raise ValueError(
            f"the built-in model file {path} is damaged (its SHA-256 differs from the "
            f"registry's); reinstall the package with `{REINSTALL}`"
        )
    return path


def resolve(source: str | Path, part: str = "registration") -> Path:
    """Turn a model option's value into a file: a built-in name (checked) or a path.

    Parameters
    ----------
    source : str or Path
        A built-in name or a model file.
    part : {"registration", "features"}
        Which file of a built-in model is wanted.

    Returns
    -------
    Path
        The file to load.
    """
    if is_builtin(source):
        return builtin_file(source, part)
    path = Path(source)
    if isinstance(source, str) and not path.exists() and path.name == source and not path.suffix:
        known = ", ".join(builtin_models()) or "none are installed"
        raise FileNotFoundError(
            f"{source} is neither a model file nor a built-in model (built-in: {known}); "
            "check the name with `deepsim models` or the path"
        )
    return path


def card_text(name: str) -> str:
    """Return the model card of a built-in model (Markdown).

    Parameters
    ----------
    name : str
        A built-in name.

    Returns
    -------
    str
        The card's text.
    """
    model = builtin_model(name)
    path = model.folder / model.card
    if not path.is_file():
        raise FileNotFoundError(
            f"the model card {path} is missing; reinstall the package with `{REINSTALL}`"
        )
    return path.read_text()
