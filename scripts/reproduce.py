"""Reproduce docs/reproduction.md: every metric on two real datasets, end to end.

Stages (each skips work whose outputs already exist, so an interrupted run continues):

1. ``features``: a segmentation and an autoencoder feature extractor per dataset;
2. ``tune`` (each dataset): per metric, short runs with λ ∈ {1/16, ¼, 1, 4} × the
   metric's default; the λ with the best validation Dice (frames held out from training
   and testing) wins (the paper also chose λ per dataset);
3. ``train`` (each dataset): per metric, the model: a run five times as long at the
   chosen λ;
4. ``evaluate``: held-out consecutive test pairs, all models plus identity, elastix, ANTs,
   instance optimisation from the identity (each intensity metric, DeepSim with the
   extractor alone) and every model refined with its own metric and with DeepSim,
   statistics against DeepSim, HD95, figures; again with Gaussian noise on both images
   (the optimisation rows at the largest σ only);
5. ``ablate`` (first dataset): why DeepSim wins or loses. DeepSim at its chosen λ with
   one encoder stage or two, with a weaker and a stronger feature extractor and with 2×
   larger crops, against the best other metric with the same larger crops; short runs
   like the λ grid's, scored by validation Dice;
6. ``report``: convergence plots and ``docs/reproduction.md``.

Every step is a ``deepsim`` command (printed as it runs). Usage::

    .venv/bin/python scripts/reproduce.py [--runs runs/reproduction] [--device auto]

The datasets can run side by side, one process each (as the recorded run did, with one
torch thread each on two cores); the last invocation, without ``--split``, reuses their
work and writes the report::

    OMP_NUM_THREADS=1 .venv/bin/python scripts/reproduce.py --split isbi &
    OMP_NUM_THREADS=1 .venv/bin/python scripts/reproduce.py --split t98g; wait
    .venv/bin/python scripts/reproduce.py
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path

from reproduction_commands import (  # scripts/reproduction_commands.py, beside this file
    best_val_dice,
    finished,
    run,
    run_training,
)
from reproduction_plan import (  # scripts/reproduction_plan.py, beside this file
    ABLATIONS,
    DEFAULT_LAMBDA,
    FEATURE_STEPS,
    FINAL_STEPS,
    FINAL_VAL_EVERY,
    LAMBDA_FACTORS,
    METRICS,
    NOISES,
    OPTIMISED,
    OPTIMISED_RUNS,
    ROOT,
    SPLITS,
    STEPS,
    VAL_EVERY,
    Split,
)


def vgg_weights() -> Path | None:
    """Return the user's torchvision VGG16 weights ($DEEPSIM_VGG16), if given."""
    path = os.environ.get("DEEPSIM_VGG16")
    return Path(path) if path and Path(path).is_file() else None


def metric_options(metric: str, folder: Path) -> list[str] | None:
    """Options a metric needs; None when it cannot run here (VGG without weights)."""
    if metric == "deepsim":
        return ["--features", str(folder / "features.pt")]
    if metric == "deepsim-ae":
        return ["--features", str(folder / "features-ae.pt")]
    if metric == "vgg":
        weights = vgg_weights()
        return None if weights is None else ["--vgg-weights", str(weights)]
    return []


def train_extractor(
    split: Split, data: Path, out: Path, kind: str, steps: int, device: list[str], log: Path
) -> None:
    """Train one feature extractor unless it exists."""
    if finished(out, steps):
        return
    run_training(
        [
            "train-features",
            str(data / split.folder),
            *split.labels,
            "--kind",
            kind,
            "--frames",
            split.features_train,
            "--val-frames",
            split.features_val,
        ],
        steps,
        out,
        device,
        log,
    )


def stage_features(split: Split, data: Path, folder: Path, device: list[str], log: Path) -> None:
    """Train the segmentation and autoencoder extractors of one dataset."""
    for kind, name in (("segmentation", "features.pt"), ("autoencoder", "features-ae.pt")):
        train_extractor(split, data, folder / name, kind, FEATURE_STEPS, device, log)


def train_one(
    split: Split,
    data: Path,
    folder: Path,
    metric: str,
    lam: float,
    steps: int,
    out: Path,
    device: list[str],
    log: Path,
    extra: Sequence[str] = (),
    val_every: int = VAL_EVERY,
) -> bool:
    """Train one registration model unless it exists; False when the metric cannot run.

    ``extra`` options come after the common ones and override them (``--crop``) or add
    to them (``--feature-levels``, ``--features``).
    """
    options = metric_options(metric, folder)
    if options is None:
        return False
    if not finished(out, steps):
        run_training(
            [
                "train",
                str(data / split.folder),
                *split.labels,
                "--metric",
                metric,
                *options,
                "--lam",
                f"{lam:g}",
                "--frames",
                split.train,
                "--val-frames",
                split.val,
                "--val-every",
                str(val_every),
            ],
            steps,
            out,
            device,
            log,
            extra,
        )
    return True


def stage_tune(
    split: Split, data: Path, folder: Path, device: list[str], log: Path
) -> dict[str, dict[float, float]]:
    """Train every metric at each λ briefly; return the best validation Dice per λ."""
    grid: dict[str, dict[float, float]] = {}
    (folder / "tune").mkdir(exist_ok=True)
    for metric in METRICS:
        for factor in LAMBDA_FACTORS:
            lam = DEFAULT_LAMBDA[metric] * factor
            out = folder / "tune" / f"{metric}-lam{lam:g}.pt"
            if train_one(split, data, folder, metric, lam, STEPS, out, device, log):
                grid.setdefault(metric, {})[lam] = best_val_dice(out.with_suffix(".csv"))
    return grid


def stage_train(
    split: Split,
    data: Path,
    folder: Path,
    grid: dict[str, dict[float, float]],
    device: list[str],
    log: Path,
) -> list[Path]:
    """Train each metric's model at its chosen λ for FINAL_STEPS; return the model files."""
    models = []
    for metric, scores in grid.items():
        out = folder / f"{metric}.pt"
        lam = chosen_lambda(scores)
        train_one(
            split, data, folder, metric, lam, FINAL_STEPS, out, device, log, (), FINAL_VAL_EVERY
        )
        models.append(out)
    return models


def chosen_lambda(scores: dict[float, float]) -> float:
    """Return the λ with the best validation Dice."""
    return max(scores, key=lambda value: scores[value])


def stage_ablate(
    split: Split,
    data: Path,
    folder: Path,
    grid: dict[str, dict[float, float]],
    device: list[str],
    log: Path,
) -> dict[str, object]:
    """Train the ablation variants; return the other metric and each run's CSV."""
    other = max(
        (m for m in grid if not m.startswith("deepsim")), key=lambda m: max(grid[m].values())
    )
    (folder / "ablate").mkdir(exist_ok=True)
    runs = {}
    for variant in ABLATIONS:
        metric = "deepsim" if variant.deepsim else other
        extra = list(variant.extra)
        if variant.feature_steps != FEATURE_STEPS:
            extractor = folder / "ablate" / f"features-{variant.feature_steps}.pt"
            train_extractor(
                split, data, extractor, "segmentation", variant.feature_steps, device, log
            )
            extra += ["--features", str(extractor)]
        out = folder / "ablate" / f"{variant.name}.pt"
        lam = chosen_lambda(grid[metric])
        train_one(split, data, folder, metric, lam, STEPS, out, device, log, extra)
        runs[variant.name] = out.with_suffix(".csv")
    return {"other": other, "runs": runs}


def stage_evaluate(
    split: Split, data: Path, folder: Path, models: list[Path], device: list[str], log: Path
) -> None:
    """Evaluate on the test pairs, clean and with noise.

    Beside the models and the baselines (identity, elastix, ANTs SyN with local
    cross-correlation: docs/baselines.md), one table holds instance optimisation (issue 13;
    docs/optimisation.md): each intensity metric of :data:`OPTIMISED` optimised from the
    identity, DeepSim optimised from the identity with the dataset's segmentation
    extractor alone, and every model refined with its own metric (``MODEL+own``) and
    with DeepSim (``MODEL+deepsim``), each with an affine stage first. These rows are
    computed on the clean pairs and at the largest σ only (:data:`OPTIMISED_RUNS`);
    at the intermediate σ the table holds the models and the baselines.
    """
    newest = max(model.stat().st_mtime for model in models)
    runs = [("eval", [])] + [(f"eval-noise{s:g}", ["--noise", f"{s:g}"]) for s in NOISES]
    features = folder / "features.pt"
    optimisation = [f"--optimise={metric}" for metric in OPTIMISED]
    optimisation += [
        f"--optimise=deepsim:{features}",
        "--refine=own",
        f"--refine=deepsim:{features}",
        "--affine",
    ]
    for name, extra in runs:
        optimised = optimisation if name in OPTIMISED_RUNS else []
        summary = folder / name / "summary.csv"
        if (
            summary.is_file()
            and summary.stat().st_mtime > newest
            and _has_rows(summary, bool(optimised))
        ):
            continue
        run(
            [
                "evaluate",
                str(data / split.folder),
                *split.labels,
                "--frames",
                split.test,
                "--models",
                *map(str, models),
                "--baseline",
                "identity",
                "--baseline",
                "elastix",
                "--baseline",
                "ants",
                *optimised,
                "--reference",
                "deepsim",
                "--hd95",
                "--figures",
                "--zoom",
                split.zoom,
                *extra,
                *device,
                "--out",
                str(folder / name),
                "--overwrite",
            ],
            log,
        )


def _has_rows(summary: Path, optimised: bool) -> bool:
    """Whether a table holds the ANTs row, and the optimisation rows exactly when it should."""
    with summary.open() as stream:
        names = {row["model"] for row in csv.DictReader(stream)}
    optimisation = all((f"opt-{metric}" in names) == optimised for metric in OPTIMISED)
    return optimisation and "ants" in names


def stage_curves(folder: Path, models: list[Path], log: Path) -> None:
    """Plot validation Dice against steps and wall time."""
    csvs = [str(model.with_suffix(".csv")) for model in models]
    names = [model.stem for model in models]
    run(
        [
            "curves",
            *csvs,
            "--names",
            *names,
            "--out",
            str(folder / "convergence.png"),
            "--overwrite",
        ],
        log,
    )


def main() -> None:
    """Run every stage on both datasets, then write the report."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "reproduction")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--stop-after", choices=("train", "evaluate", "report"), default="report")
    parser.add_argument(
        "--split",
        choices=[split.key for split in SPLITS],
        help="run one dataset's stages only (run each in its own process, then once "
        "without --split for the report: finished work is skipped)",
    )
    args = parser.parse_args()
    splits = [split for split in SPLITS if args.split in (None, split.key)]
    device = ["--device", args.device]
    args.runs.mkdir(parents=True, exist_ok=True)
    log = args.runs / "commands.log"
    start = time.perf_counter()
    results = {}
    for split in splits:
        folder = args.runs / split.key
        folder.mkdir(exist_ok=True)
        stage_features(split, args.data, folder, device, log)
        grid = stage_tune(split, args.data, folder, device, log)
        results[split.key] = (grid, stage_train(split, args.data, folder, grid, device, log))
    if args.stop_after == "train":
        return
    for split in splits:
        grid, models = results[split.key]
        folder = args.runs / split.key
        stage_evaluate(split, args.data, folder, models, device, log)
        stage_curves(folder, models, log)
    first = SPLITS[0]
    if first not in splits:
        return
    ablation = stage_ablate(
        first, args.data, args.runs / first.key, results[first.key][0], device, log
    )
    if args.stop_after == "evaluate" or args.split:
        return
    from report import write_report  # scripts/report.py, beside this file

    write_report(args.runs, SPLITS, results, ablation, time.perf_counter() - start, ROOT / "docs")
    shutil.copy(log, ROOT / "docs" / "reproduction" / "commands.log")


if __name__ == "__main__":
    main()
