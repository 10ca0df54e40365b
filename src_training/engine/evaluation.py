"""Evaluate registration methods on test pairs: identity, elastix, models, in one table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from src_training.data.datasets import Dataset
from src_training.data.pairs import consecutive_pairs
from src_training.engine.optimisation import Optimisation, optimisation_method
from src_training.engine.registration import load_registration_model
from src_training.evaluation.ants import AntsSyN
from src_training.evaluation.baselines import MULTIMODAL_STAGES, ElastixBSpline
from src_training.evaluation.scoring import (
    Method,
    Registered,
    add_noise,
    identity_method,
    network_method,
    score_pairs,
    summarise,
)
from src_training.evaluation.stats import against_reference
from src_training.metrics.dice import mean_dice
from src_training.networks.modelio import ModelFile
from src_training.registration.inference import check_model_fits
from src_training.runtime.precision import resolve_precision

BASELINES = ("identity", "elastix", "elastix-mi", "ants")


@dataclass(frozen=True)
class EvaluatedMethod:
    """One row of the evaluation table.

    Attributes
    ----------
    name : str
        The row's name (a model's file stem).
    metric : str
        The metric it was trained with (or the baseline's kind).
    method : Method
        The registration callable.
    description : str
        How a report states the row (a baseline's tool, version, settings, seed, threads).
    """

    name: str
    metric: str
    method: Method
    description: str = ""


@dataclass
class Evaluation:
    """Scores of every method on every pair.

    Attributes
    ----------
    pair_rows : list of dict
        One row per method and pair (Dice, per-class Dice, HD95, folding, time).
    summary_rows : list of dict
        One row per method: means, spreads and, with a reference, the statistics.
    kept : dict
        Per method, the :class:`Registered` result of the kept pair (for figures).
    statistics : dict or None
        Per method, the paired test against the reference.
    images : numpy.ndarray
        The images as scored (with the noise added).
    """

    pair_rows: list[dict[str, Any]] = field(default_factory=list)
    summary_rows: list[dict[str, Any]] = field(default_factory=list)
    kept: dict[str, Registered] = field(default_factory=dict)
    statistics: dict[str, dict[str, Any]] | None = None
    images: np.ndarray | None = None


def evaluation_pairs(
    data: Dataset, pairs: list[tuple[int, int]] | None = None, data_name: str = "the data"
) -> list[tuple[int, int]]:
    """Return the pairs to score: given ones, the data's own, or consecutive frames.

    Parameters
    ----------
    data : Dataset
        Labelled test data.
    pairs : list of (int, int), optional
        Explicit ``(moving, fixed)`` pairs.
    data_name : str
        How messages name the data.

    Returns
    -------
    list of (int, int)
        At least one pair.
    """
    if data.labels is None:
        raise ValueError(f"{data_name} has no label images; evaluation needs labels for Dice")
    if pairs is None:
        pairs = data.pairs if data.pairs is not None else consecutive_pairs(len(data))
    if not pairs:
        raise ValueError("the selected data holds no pair; select at least 2 frames")
    return pairs


def evaluation_methods(
    baselines: Sequence[str],
    models: Sequence[str | Path],
    data: Dataset,
    device: torch.device | str = "cpu",
    data_name: str = "the data",
    optimisations: Sequence[Optimisation] = (),
    refinements: Sequence[Optimisation] = (),
    own: Callable[[ModelFile], Optimisation] | None = None,
    precision: str = "auto",
    ants_metric: str = "cc",
    seeds: int = 1,
) -> list[EvaluatedMethod]:
    """Build every baseline and model row, checked against the data before any work.

    Parameters
    ----------
    baselines : sequence of str
        Any of :data:`BASELINES` (repeats ignored).
    models : sequence of str or Path
        Registration model files; a row's name is the file stem.
    data : Dataset
        The test data.
    device : torch.device or str
        Where the models run.
    data_name : str
        How messages name the data.
    optimisations : sequence of Optimisation
        Rows that optimise each pair from the identity (``opt-METRIC``).
    refinements : sequence of Optimisation
        Rows that refine each model's prediction (``MODEL+METRIC``), after its row.
    own : callable, optional
        Given a model, the optimisation that refines its prediction with the metric it
        was trained with (a ``MODEL+own`` row after its refinements); e.g.
        ``lambda model: Optimisation(training_metric(model, ...), config)``.
    precision : str
        Of the models: ``auto`` (bf16 on GPUs that support it), ``fp32``, ``bf16``, ``fp16``
        (also their predictions that refinements start from; optimisations run in float32).
    ants_metric : str
        SyN's similarity in the ``ants`` row: ``cc`` or ``mi`` (see :class:`AntsSyN`).
    seeds : int
        ANTs rows, one per random seed ``1..seeds`` (``ants-seed1``, ...; one ``ants`` row
        with seed 1 if 1); :func:`seed_spread` summarises them.

    Returns
    -------
    list of EvaluatedMethod
        Baselines, optimisations, then each model followed by its refinements.
    """
    precision = resolve_precision(precision, device)
    methods: list[EvaluatedMethod] = []
    for baseline in dict.fromkeys(baselines):
        if baseline == "identity":
            methods.append(EvaluatedMethod("identity", "identity", identity_method))
        elif baseline == "elastix":
            methods.append(EvaluatedMethod("elastix", "bspline", ElastixBSpline()))
        elif baseline == "elastix-mi":
            method = ElastixBSpline(MULTIMODAL_STAGES)
            methods.append(EvaluatedMethod("elastix-mi", "affine+bspline", method))
        elif baseline == "ants":
            methods += _ants_rows(ants_metric, seeds)
        else:
            raise ValueError(f"unknown baseline {baseline!r}; choose from {', '.join(BASELINES)}")
    for entry in optimisations:
        name = f"opt-{entry.name}"
        methods.append(EvaluatedMethod(name, entry.name, optimisation_method(entry, None, device)))
    for path in models:
        model = load_registration_model(path)
        check_model_fits(model, data.images[0], f"the data {data_name}")
        name = Path(path).stem
        if name in [m.name for m in methods]:
            raise ValueError(
                f"two evaluated models are named {name} (a row's name is its file stem); "
                "give the model files different names"
            )
        metric = model.metadata.get("metric", "?")
        method = network_method(model.network, device, precision)
        methods.append(EvaluatedMethod(name, metric, method))
        for entry in refinements:
            method = optimisation_method(entry, model, device, precision)
            methods.append(
                EvaluatedMethod(f"{name}+{entry.name}", f"{metric}+{entry.name}", method)
            )
        if own is not None:
            entry = own(model)
            method = optimisation_method(entry, model, device, precision)
            methods.append(EvaluatedMethod(f"{name}+own", f"{metric}+{entry.name}", method))
    names = [m.name for m in methods]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(
            f"two evaluated rows are named {repeated[0]}; give each --optimise or --refine "
            "metric once"
        )
    return methods


def _ants_rows(metric: str, seeds: int) -> list[EvaluatedMethod]:
    rows = []
    for seed in range(1, seeds + 1):
        method = AntsSyN(metric, seed)
        name = "ants" if seeds == 1 else f"ants-seed{seed}"
        rows.append(EvaluatedMethod(name, f"syn-{metric}", method, method.description))
    return rows


def seed_spread(summary_rows: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Combine the ANTs rows of several seeds: mean and spread of their mean Dice.

    Parameters
    ----------
    summary_rows : sequence of dict
        Summary rows; those named ``ants-seedN`` are combined.

    Returns
    -------
    dict or None
        Row ``ants-seeds`` with ``seeds``, ``dice`` (mean over seeds of the row's mean
        Dice), ``dice_seed_sd`` (their standard deviation), ``dice_seed_min`` and
        ``dice_seed_max``, and the means over seeds of the per-class ``dice_<value>``,
        ``hd95`` and the landmark errors ``tre`` and ``tre_<value>`` (over the seeds where
        they are defined), ``folding_percent``, ``sdlogj`` and ``seconds_per_pair``; None
        with fewer than two seeded rows.
    """
    rows = [r for r in summary_rows if str(r["model"]).startswith("ants-seed")]
    if len(rows) < 2:
        return None
    dice = np.array([r["dice"] for r in rows], dtype=float)
    distances = dict.fromkeys(k for r in rows for k in r if k == "hd95" or k.startswith("tre"))
    return {
        "model": "ants-seeds",
        "metric": rows[0]["metric"],
        "noise": rows[0]["noise"],
        "seeds": len(rows),
        "n_pairs": rows[0]["n_pairs"],
        "dice": float(dice.mean()),
        "dice_seed_sd": float(dice.std(ddof=1)),
        "dice_seed_min": float(dice.min()),
        "dice_seed_max": float(dice.max()),
        **{
            key: float(np.mean([r[key] for r in rows if key in r]))
            for key in dict.fromkeys(k for r in rows for k in r)
            if (key.startswith("dice_") and key != "dice_sd")
            or key in ("folding_percent", "sdlogj", "seconds_per_pair")
        },
        **{key: _finite_mean([r.get(key, np.nan) for r in rows]) for key in distances},
    }


def _finite_mean(values: Sequence[float]) -> float:
    """Mean of the finite values, NaN if none is."""
    finite = [float(v) for v in values if np.isfinite(v)]
    return float(np.mean(finite)) if finite else float("nan")


def check_reference(methods: Sequence[EvaluatedMethod], reference: str | None) -> None:
    """Refuse a reference row that is none of the evaluated methods."""
    names = [m.name for m in methods]
    if reference is not None and reference not in names:
        raise ValueError(
            f"--reference {reference} is none of the evaluated models; choose one of "
            f"{', '.join(names)} (a model's name is its file stem)"
        )


def median_identity_pair(labels: np.ndarray, pairs: list[tuple[int, int]]) -> tuple[int, int]:
    """Pick the pair whose unregistered Dice is the median (the lower one of an even count)."""
    ranked = sorted(pairs, key=lambda pair: mean_dice(labels[pair[0]], labels[pair[1]]))
    return ranked[(len(ranked) - 1) // 2]


def landmark_ids(data: Dataset, values: Sequence[int]) -> list[int]:
    """Return the class ids of landmark label values, refusing values the data lacks."""
    missing = [v for v in values if v not in data.class_values]
    if missing:
        known = ", ".join(str(v) for v in data.class_values) or "none"
        raise ValueError(
            f"--landmarks {missing[0]} is not a label value of the data (its values: {known}); "
            "pass label values of its landmark classes"
        )
    return [data.class_values.index(v) for v in values]


def evaluate_methods(
    data: Dataset,
    pairs: list[tuple[int, int]],
    methods: Sequence[EvaluatedMethod],
    *,
    hd95: bool = False,
    noise: float = 0.0,
    seed: int = 0,
    reference: str | None = None,
    keep: tuple[int, int] | None = None,
    landmarks: Sequence[int] = (),
) -> Evaluation:
    """Score every method on every pair, with optional noise and statistics.

    Parameters
    ----------
    data : Dataset
        Labelled test data.
    pairs : list of (int, int)
        ``(moving, fixed)`` indices.
    methods : sequence of EvaluatedMethod
        From :func:`evaluation_methods`.
    hd95 : bool
        Also score the 95th-percentile Hausdorff distance.
    noise : float
        Std of Gaussian noise added to both images of every pair.
    seed : int
        Seed of the noise.
    reference : str, optional
        Test every other row against this row (Wilcoxon, Cohen's d on per-pair Dice).
    keep : (int, int), optional
        The pair whose results are kept for figures.
    landmarks : sequence of int
        Label values (of ``data.class_values``) marking landmarks, scored also as the
        target registration error of their centroids (in the data's voxel size).

    Returns
    -------
    Evaluation
        Per-pair rows, summary rows, kept results and statistics.
    """
    names = [m.name for m in methods]
    check_reference(methods, reference)
    assert data.labels is not None
    marks = landmark_ids(data, landmarks)
    images = add_noise(data.images, noise, seed)
    result = Evaluation(images=images)
    for entry in methods:
        scored = score_pairs(
            images,
            data.labels,
            pairs,
            entry.method,
            data.class_values,
            hd95=hd95,
            keep=keep,
            landmarks=marks,
            spacing=data.spacing,
        )
        for row in scored.rows:
            row.update(
                model=entry.name,
                metric=entry.metric,
                noise=noise,
                moving_name=data.names[int(row["moving"])],
                fixed_name=data.names[int(row["fixed"])],
            )
        result.pair_rows += scored.rows
        summary = {"model": entry.name, "metric": entry.metric, "noise": noise}
        summary |= summarise(scored.rows)
        if entry.description:
            summary["description"] = entry.description
        result.summary_rows.append(summary)
        if scored.kept is not None:
            result.kept[entry.name] = scored.kept
    if reference is not None:
        result.statistics = _statistics(result.pair_rows, names, reference)
        for row in result.summary_rows:
            row.update(result.statistics.get(row["model"], {}))
    spread = seed_spread(result.summary_rows)
    if spread is not None:
        result.summary_rows.append(spread)
    return result


def _statistics(
    pair_rows: list[dict[str, Any]], names: list[str], reference: str
) -> dict[str, dict[str, Any]]:
    """Each row against the reference on the pairs both scored (a failed pair is left out)."""
    dice = {
        n: {
            (r["moving"], r["fixed"]): r["dice"]
            for r in pair_rows
            if r["model"] == n and "dice" in r
        }
        for n in names
    }
    statistics = {}
    for name in names:
        if name == reference:
            continue
        both = [pair for pair in dice[reference] if pair in dice[name]]
        paired = {n: [dice[n][pair] for pair in both] for n in (reference, name)}
        statistics[name] = against_reference(paired, reference)[name]
    return statistics
