"""The main job on the built-in default: what each way of registering gives, clean and noisy.

On the synthetic noisy cell sequence it compares, on the held-out pairs 6 -> 5 and
7 -> 6 and at increasing noise: the identity; training-free optimisation with NCC, MSE
and DeepSim (the built-in ``phase-contrast-2d`` feature extractor, in the variant a user
gets when picking DeepSim to optimise); the built-in model ``phase-contrast-2d`` and the
same model refined with its own metric; and the paper's
two steps in short (a feature extractor trained to segment frames 0-5, then registration
models trained with NCC and with DeepSim). It returns the table, the results of one pair
for a figure, and one sentence computed from the numbers.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from src_training.data.augment import NO_AUGMENTATION
from src_training.data.datasets import Dataset
from src_training.data.normalise import normalise_intensity
from src_training.data.samples import CLASS_NAMES, noisy_cell_sequence
from src_training.engine.evaluation import EvaluatedMethod, evaluate_methods, evaluation_methods
from src_training.engine.metrics import registration_metric
from src_training.engine.optimisation import (
    optimisation_config,
    own_refinement,
    user_optimisation,
)
from src_training.engine.training import (
    features_trainer,
    registration_trainer,
)
from src_training.evaluation.overview import MethodPanel, overview_figure
from src_training.evaluation.scoring import network_method
from src_training.registration.inference import warp_array
from src_training.runtime.devices import resolve_device
from src_training.training.trainer import StepEvent, TrainConfig

TRAIN_FRAMES = list(range(6))
TEST_PAIRS = [(6, 5), (7, 6)]  # (moving, fixed): frames 6 and 7 are never trained on
DEMO_CHANNELS = (16, 32, 64)
NOISE_LEVELS = (0.0, 0.15, 0.3)
BUILTIN = "phase-contrast-2d"
INTENSITY_METRICS = ("ncc", "mse")

Progress = Callable[[str, int, int], None]
"""Receives ``(stage, done, total)`` after each step of a stage."""


def sample_dataset() -> Dataset:
    """Return the built-in noisy cell sequence as a :class:`Dataset` (8 frames, 3 classes)."""
    seq = noisy_cell_sequence()
    images = np.stack([normalise_intensity(f) for f in seq.images])[:, None]
    return Dataset(
        images=images,
        labels=seq.labels.astype(np.int64),
        names=[f"frame{t}" for t in range(len(images))],
        class_values=list(range(len(CLASS_NAMES))),
        pairs=None,
        source="built-in synthetic noisy cell sequence (seed 0)",
    )


@dataclass
class DemoResult:
    """What the main job found.

    Attributes
    ----------
    rows : list of dict
        One per method and noise level: ``method``, ``kind`` (training-free, built-in
        model, trained here), ``noise``, ``dice``, ``dice_sd``, ``folding_percent``,
        ``seconds_per_pair``.
    panels : list of MethodPanel
        Each method's result on the first test pair at the highest noise.
    pair : tuple of numpy.ndarray
        That pair's fixed and moving images, with the noise.
    conclusion : str
        One sentence computed from ``rows``.
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    panels: list[MethodPanel] = field(default_factory=list)
    pair: tuple[np.ndarray, np.ndarray] | None = None
    conclusion: str = ""


def _train(trainer: Any, stage: str, progress: Progress) -> None:
    for event in trainer.run():
        if isinstance(event, StepEvent):
            progress(stage, event.step, event.steps)


def _trained_methods(
    data: Dataset, steps: int, seed: int, device: Any, progress: Progress
) -> list[EvaluatedMethod]:
    """Run the paper's two steps in short: an extractor, then NCC and DeepSim models."""
    train = data.subset(TRAIN_FRAMES)
    features = features_trainer(
        train,
        None,
        TrainConfig(steps=steps, lr=1e-3, seed=seed),
        channels=DEMO_CHANNELS,
        device=device,
    )
    _train(features, "train a feature extractor (segmentation of frames 0-5)", progress)
    extractor = features.model_file()
    config = TrainConfig(steps=steps, lr=1e-3, seed=seed, augment=NO_AUGMENTATION)
    methods = []
    for name in ("ncc", "deepsim"):
        similarity = registration_metric(name, ndim=2, channels=1, features=extractor)
        trainer = registration_trainer(
            train, None, similarity, config, channels=DEMO_CHANNELS, device=device
        )
        _train(trainer, f"train a registration model with {name}", progress)
        methods.append(
            EvaluatedMethod(f"trained {name}", name, network_method(trainer.network, device))
        )
    return methods


def demo_methods(data: Dataset, device: Any) -> list[EvaluatedMethod]:
    """Build the training-free rows and the built-in model with its refinement."""
    metrics = [registration_metric(name, ndim=2, channels=1) for name in INTENSITY_METRICS]
    metrics.append(registration_metric("deepsim", ndim=2, channels=1, features=BUILTIN))
    optimisations = [user_optimisation(metric, optimisation_config()) for metric in metrics]

    own = partial(own_refinement, ndim=2, channels=1)
    return evaluation_methods(
        ["identity"], [BUILTIN], data, device, optimisations=optimisations, own=own
    )


def _kind(name: str) -> str:
    if name.startswith("trained"):
        return "trained here"
    return "built-in model" if name.startswith(BUILTIN) else "training-free"


def run_demo(
    steps: int = 150,
    device: str = "auto",
    seed: int = 0,
    noise_levels: Sequence[float] = NOISE_LEVELS,
    progress: Progress = lambda _stage, _done, _total: None,
) -> DemoResult:
    """Compare every way of registering the sample's held-out pairs, clean and noisy.

    Parameters
    ----------
    steps : int
        Training steps of the feature extractor and of each registration model.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    seed : int
        Seed of the training and of the noise.
    noise_levels : sequence of float
        Std of the Gaussian noise added to both images of every pair (the images are
        normalised to about ``[0, 1]``); the last is the one shown in the figure.
    progress : callable
        Receives ``(stage, done, total)`` as each stage advances.

    Returns
    -------
    DemoResult
        The table, one pair's results and the conclusion.
    """
    TrainConfig(steps=steps)  # refuses a bad number of steps before any work
    dev = resolve_device(device)
    data = sample_dataset()
    methods = demo_methods(data, dev) + _trained_methods(data, steps, seed, dev, progress)
    result = DemoResult()
    for sigma in noise_levels:
        stage = f"register the held-out pairs at noise {sigma:g}"
        for done, method in enumerate(methods, start=1):
            scored = evaluate_methods(
                data, TEST_PAIRS, [method], noise=sigma, seed=seed, keep=TEST_PAIRS[0]
            )
            summary = scored.summary_rows[0]
            result.rows.append(
                {
                    "method": method.name,
                    "kind": _kind(method.name),
                    **{k: summary[k] for k in ("noise", "dice", "dice_sd", "folding_percent")},
                    "seconds_per_pair": summary["seconds_per_pair"],
                }
            )
            if sigma == noise_levels[-1]:
                result.panels.append(_panel(method.name, scored, summary["dice"]))
            progress(stage, done, len(methods))
    moving, fixed = TEST_PAIRS[0]
    assert scored.images is not None
    result.pair = (scored.images[fixed], scored.images[moving])
    result.conclusion = conclusion(result.rows)
    return result


def _panel(name: str, scored: Any, dice: float) -> MethodPanel:
    """Return a method's result on the kept pair: warped moving image, field, Dice."""
    kept = scored.kept[name]
    moving = scored.images[TEST_PAIRS[0][0]]
    return MethodPanel(name, warp_array(moving, kept.disp), kept.disp, dice)


def demo_figure(result: DemoResult, path: str | Path) -> Path:
    """Draw the demo's figure: the pair, each method's result, and Dice against noise.

    Parameters
    ----------
    result : DemoResult
        From :func:`run_demo`.
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path
        The written file.
    """
    assert result.pair is not None
    curves: dict[str, list[tuple[float, float]]] = {}
    for row in result.rows:
        curves.setdefault(row["method"], []).append((row["noise"], row["dice"]))
    moving, fixed = TEST_PAIRS[0]
    title = f"built-in noisy cell sample, held-out pair {moving} -> {fixed}, noise " + (
        f"{result.rows[-1]['noise']:g}\n" + textwrap.fill(result.conclusion, 110)
    )
    return overview_figure(path, *result.pair, result.panels, curves, title=title)


def conclusion(rows: Sequence[dict[str, Any]]) -> str:
    """One sentence on DeepSim against intensity metrics, computed from the table.

    Parameters
    ----------
    rows : sequence of dict
        :attr:`DemoResult.rows`.

    Returns
    -------
    str
        The best DeepSim-driven row against the best intensity-only row at the highest
        noise, and the same difference without noise.
    """
    levels = sorted({row["noise"] for row in rows})

    def best(sigma: float, semantic: bool) -> dict[str, Any]:
        chosen = [
            r
            for r in rows
            if r["noise"] == sigma
            and r["method"] != "identity"
            and ("deepsim" in r["method"] or r["method"].startswith(BUILTIN)) == semantic
        ]
        return max(chosen, key=lambda r: r["dice"])

    high, low = levels[-1], levels[0]
    deep, plain = best(high, True), best(high, False)
    lead = deep["dice"] - plain["dice"]
    clean = best(low, True)["dice"] - best(low, False)["dice"]
    verb = "leads" if lead > 0 else "trails"
    return (
        f"At noise {high:g} the best DeepSim-driven method, {deep['method']} "
        f"(Dice {deep['dice']:.3f}), {verb} the best intensity-only method, "
        f"{plain['method']} ({plain['dice']:.3f}), by {abs(lead):.3f}; at noise {low:g} "
        f"the difference is {clean:+.3f}."
    )
