"""What several ``deepsim`` sub-commands share: datasets, numbers, CSV, optimisation options."""

from __future__ import annotations

import argparse
import csv
from dataclasses import replace
from pathlib import Path
from typing import Any

from src_training.data.atlas import with_atlas
from src_training.data.datasets import Dataset, load_dataset, parse_frames
from src_training.engine.metrics import registration_metric
from src_training.engine.optimisation import (
    Optimisation,
    OptimiseConfig,
    check_levels,
    optimisation_config,
    own_refinement,
    user_optimisation,
)
from src_training.metrics.feature_maps import FeatureOptions
from src_training.metrics.registry import Similarity
from src_training.networks.modelio import ModelFile


def non_negative(value: float, option: str) -> float:
    """Return ``value``, refusing a negative or infinite number for ``option``."""
    if not 0 <= value < float("inf"):
        raise ValueError(f"{option} must be a finite number >= 0, got {value}")
    return value


def dataset(args: argparse.Namespace, frames: str | None) -> Dataset:
    """Read ``args.data`` (frames ``A:B``) with the data options, and the atlas if given."""
    data = load_dataset(
        args.data,
        frames=parse_frames(frames) if frames else None,
        labels=args.labels,
        ndim=args.ndim,
        label_file=args.label_file,
    )
    return with_atlas(data, args.atlas, args.atlas_labels, args.data)


def write_csv(path: Path, rows: list[dict[str, Any]], first: list[str]) -> None:
    """Write rows as CSV with the ``first`` columns first and every other key after."""
    fields = list(first)
    for row in rows:
        fields += [k for k in row if k not in fields]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)


OPTIMISATION_FLAGS = (
    ("iterations", "--iterations"),
    ("levels", "--levels"),
    ("linear", "--affine/--rigid/--no-linear"),
    ("lam", "--lam"),
    ("diffeomorphic", "--diffeomorphic"),
    ("feature_weight", "--feature-weight"),
    ("pca", "--pca"),
    ("feature_distance", "--feature-distance"),
    ("feature_stages", "--feature-stages"),
    ("warp_then_extract", "--warp-then-extract"),
)


def optimisation_flags_used(args: argparse.Namespace) -> list[str]:
    """Return the optimisation options given on the command line."""
    used = [
        flag for key, flag in OPTIMISATION_FLAGS if getattr(args, key, None) not in (None, False)
    ]
    if getattr(args, "transform", "bspline") != "bspline":
        used.append("--transform")
    return used


def optimisation(
    args: argparse.Namespace,
    spec: str,
    ndim: int,
    channels: int,
    shape: tuple[int, ...],
    refine: bool = False,
) -> Optimisation:
    """Build an optimisation from ``METRIC[:F.pt]`` and the optimisation options.

    Parameters
    ----------
    args : argparse.Namespace
        The options (``--iterations``, ``--levels``, ``--affine``/``--rigid``, ...).
    spec : str
        The metric, with its feature extractor after a colon for deepsim/deepsim-ae.
    ndim, channels : int
        The data the metric compares.
    shape : tuple of int
        Spatial shape of the images, to check ``--levels`` against.
    refine : bool
        Whether it refines a model's prediction (the refinement's default schedule and λ).

    Returns
    -------
    Optimisation
        Checked before any work.
    """
    name, _, features = spec.partition(":")
    fixed, moving = extractor_pair(features or getattr(args, "features", None))
    metric = registration_metric(
        name,
        ndim=ndim,
        channels=channels,
        features=fixed,
        moving_features=moving,
        vgg_weights=getattr(args, "vgg_weights", None),
        how_to_get_extractor=(
            "train one with `deepsim train-features` and give it as "
            f"{'--features F.pt' if hasattr(args, 'features') else name + ':F.pt'}"
        ),
        feature_options=feature_options(args),
    )
    return optimiser(args, metric, shape, refine)


def extractor_pair(text: str | None) -> tuple[str | None, str | None]:
    """Split ``F.pt`` or ``FIXED.pt,MOVING.pt`` (one extractor per image) into the two.

    Parameters
    ----------
    text : str or None
        What follows the metric's colon, or ``--features``.

    Returns
    -------
    tuple
        The fixed image's extractor (or the one for both) and the moving image's (None
        for one extractor).
    """
    if not text or "," not in text:
        return text or None, None
    parts = text.split(",")
    if len(parts) != 2 or not all(parts):
        raise ValueError(
            f"{text!r} is neither one extractor nor two separated by a comma; give F.pt, or "
            "FIXED.pt,MOVING.pt for one extractor per image"
        )
    return parts[0], parts[1]


def feature_options(args: argparse.Namespace) -> FeatureOptions | None:
    """Return the feature-map options typed (the defaults for those not typed), or None.

    Parameters
    ----------
    args : argparse.Namespace
        The options (``--feature-weight``, ``--pca``, ``--feature-distance``, ...).

    Returns
    -------
    FeatureOptions or None
        None when no feature-map option was given.
    """
    typed = {
        "weight": args.feature_weight,
        "pca": args.pca,
        "distance": args.feature_distance,
        "stages": args.feature_stages,
        "static": False if args.warp_then_extract else None,
    }
    given = {key: value for key, value in typed.items() if value is not None}
    return replace(FeatureOptions(), **given) if given else None


def optimiser(
    args: argparse.Namespace, metric: Similarity, shape: tuple[int, ...], refine: bool = False
) -> Optimisation:
    """Pair ``metric`` with the optimisation options, checked against the image shape.

    Parameters
    ----------
    args, shape, refine
        As for :func:`optimisation`.
    metric : Similarity
        The metric to optimise.

    Returns
    -------
    Optimisation
        Checked before any work.
    """
    result = user_optimisation(metric, _settings(args, refine), refine)
    check_levels(result, shape)
    return result


def own_refiner(
    args: argparse.Namespace, model: ModelFile, ndim: int, channels: int, shape: tuple[int, ...]
) -> Optimisation:
    """Return ``--refine own`` for one model: the engine's refinement with the options typed.

    Parameters
    ----------
    args, shape
        As for :func:`optimisation`.
    model : ModelFile
        The model whose prediction is refined with the metric it was trained with.
    ndim, channels : int
        The data the metric compares.

    Returns
    -------
    Optimisation
        Checked before any work.
    """
    vgg = getattr(args, "vgg_weights", None)
    config = _settings(args, refine=True)
    result = own_refinement(model, ndim=ndim, channels=channels, config=config, vgg_weights=vgg)
    check_levels(result, shape)
    return result


def _settings(args: argparse.Namespace, refine: bool) -> OptimiseConfig:
    """Return the optimiser's settings the options chose (a refinement's defaults)."""
    return optimisation_config(
        iterations=args.iterations,
        levels=args.levels,
        linear=args.linear,
        lam=args.lam,
        transform=args.transform,
        diffeomorphic=args.diffeomorphic,
        seed=args.seed,
        refine=refine,
    )
