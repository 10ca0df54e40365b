"""What scripts/reproduce.py runs and scripts/report.py describes: data, steps, λ, ablations."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEEPSIM = [sys.executable, "-m", "src_training.cli"]
METRICS = ("mse", "ncc", "ncc-sup", "nmi", "mind", "vgg", "deepsim", "deepsim-ae")
DEFAULT_LAMBDA = {
    "mse": 0.02,
    "ncc": 0.5,
    "ncc-sup": 0.5,
    "nmi": 0.5,
    "mind": 0.5,
    "vgg": 1.0,
    "deepsim": 1.0,
    "deepsim-ae": 1.0,
}
LAMBDA_FACTORS = (0.0625, 0.25, 1.0, 4.0)
COMMON = ["--channels", "16,32,64", "--crop", "96", "--batch-size", "4", "--lr", "1e-3"]
FEATURE_STEPS = 600
STEPS = 300  # λ grid and ablations
VAL_EVERY = 50
FINAL_STEPS = 1500  # the evaluated models
FINAL_VAL_EVERY = 100
NOISES = (0.1, 0.3)  # σ of the Gaussian noise added to both normalised images
OPTIMISED = ("mse", "ncc", "nmi", "mind")  # optimised per pair from the identity (evaluate)
OPTIMISED_RUNS = ("eval", f"eval-noise{max(NOISES):g}")  # evaluations with those rows


@dataclass(frozen=True)
class Split:
    """A dataset of ../shared/data and its frame ranges."""

    key: str
    folder: str
    labels: list[str]
    features_train: str
    features_val: str
    train: str
    val: str
    test: str
    zoom: str
    stands_in_for: str


SPLITS = (
    Split(
        "isbi",
        "isbi2012_em",
        [],
        "0:20",
        "20:25",
        "0:20",
        "20:25",
        "25:30",
        "300,100,396,196",
        "Platelet-EM",
    ),
    Split(
        "t98g",
        "t98g_phase",
        ["--labels", "foreground"],
        "0:16",
        "16:20",
        "0:16",
        "16:20",
        "20:24",
        "520,560,680,720",
        "PhC-U373",
    ),
)


@dataclass(frozen=True)
class Variant:
    """One ablation run: a metric trained with some settings changed."""

    name: str
    change: str
    deepsim: bool = True
    extra: tuple[str, ...] = ()
    feature_steps: int = FEATURE_STEPS


ABLATIONS = (
    Variant(
        "levels-1",
        "DeepSim on encoder stage 1 only (1/2 resolution)",
        extra=("--feature-levels", "1"),
    ),
    Variant("levels-2", "stage 2 only (1/4)", extra=("--feature-levels", "2")),
    Variant("levels-3", "stage 3 only (1/8)", extra=("--feature-levels", "3")),
    Variant("levels-12", "stages 1 and 2", extra=("--feature-levels", "1,2")),
    Variant("extractor-150", "extractor trained 150 instead of 600 steps", feature_steps=150),
    Variant("extractor-2400", "extractor trained 2400 instead of 600 steps", feature_steps=2400),
    Variant("crop-192", "crops of 192 instead of 96 pixels", extra=("--crop", "192")),
    Variant(
        "other-crop-192",
        "crops of 192 instead of 96 pixels",
        deepsim=False,
        extra=("--crop", "192"),
    ),
)
