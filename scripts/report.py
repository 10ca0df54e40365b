"""Write docs/reproduction.md from the outputs of scripts/reproduce.py.

Everything in the report is read from the run folder: the λ grid from the tuning
runs' training curves, the test tables from ``summary.csv`` of ``deepsim evaluate``,
the figures it drew, the command times from ``commands.log``. The discussion at the end
is written for the recorded run; the tables above it are regenerated.
"""

from __future__ import annotations

import csv
import platform
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reproduction_commands import command_seconds  # scripts/reproduction_commands.py

PAPER = {
    "isbi": {
        "mse": 0.893,
        "ncc": 0.875,
        "ncc-sup": 0.888,
        "nmi": 0.889,
        "mind": 0.880,
        "deepsim-ae": 0.895,
        "deepsim": 0.895,
    },
    "t98g": {},
}
PAPER_NOTE = {
    "isbi": "Platelet-EM (paper, Figure 2); folding NCC 4.2 %, DeepSim 0.14 %",
    "t98g": "PhC-U373 (paper): every metric 0.965-0.969",
}
FIGURES = ("dice_boxplot.png", "qualitative.png", "jacobian.png")
TUNE_NAME = re.compile(r"^(?P<metric>.+)-lam(?P<lam>[0-9.e+-]+)\.csv$")


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def tuning_grid(folder: Path) -> dict[str, dict[float, float]]:
    """Best validation Dice per metric and λ, read from the tuning runs' curves."""
    grid: dict[str, dict[float, float]] = {}
    for path in sorted((folder / "tune").glob("*.csv")):
        match = TUNE_NAME.match(path.name)
        if not match:
            continue
        values = [float(r["val_dice"]) for r in _rows(path) if r["val_dice"]]
        grid.setdefault(match["metric"], {})[float(match["lam"])] = max(values)
    return grid


def _fmt(value: Any, digits: int = 3) -> str:
    try:
        return f"{float(value):.{digits}f}"
    except (TypeError, ValueError):
        return "–"


def _grid_table(grid: dict[str, dict[float, float]]) -> list[str]:
    lines = ["| metric | λ: validation Dice (chosen in bold) |", "|---|---|"]
    for metric, scores in grid.items():
        best = max(scores, key=lambda lam: scores[lam])
        cells = [
            f"**{lam:g}: {dice:.3f}**" if lam == best else f"{lam:g}: {dice:.3f}"
            for lam, dice in sorted(scores.items())
        ]
        lines.append(f"| {metric} | {', '.join(cells)} |")
    return lines


def _result_table(rows: list[dict[str, str]], chosen: dict[str, float]) -> list[str]:
    lines = [
        "| model | λ | Dice ± sd | HD95 (px) | folding % | sd log J | s/pair | p vs DeepSim | d |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in sorted(rows, key=lambda r: -float(r["dice"])):
        name = row["model"]
        lam = chosen.get(name)
        p_value = row.get("p_value", "")
        stars = row.get("stars", "")
        lines.append(
            f"| {name} | {'' if lam is None else f'{lam:g}'} | {_fmt(row['dice'])} ± "
            f"{_fmt(row.get('dice_sd'))} | {_fmt(row.get('hd95'), 2)} | "
            f"{_fmt(row.get('folding_percent'), 2)} | {_fmt(row.get('sdlogj'))} | "
            f"{_fmt(row.get('seconds_per_pair'))} | "
            f"{_fmt(p_value, 3) if p_value else '–'} {stars} | {_fmt(row.get('cohens_d'), 2)} |"
        )
    return lines


def _paper_table(key: str, rows: list[dict[str, str]]) -> list[str]:
    ours = {row["model"]: float(row["dice"]) for row in rows}
    order = sorted((m for m in ours if m in PAPER[key]), key=lambda m: -ours[m])
    paper_order = sorted(PAPER[key], key=lambda m: -PAPER[key][m])
    lines = ["| metric | our Dice | our rank | paper Dice | paper rank |", "|---|---|---|---|---|"]
    for metric in order:
        lines.append(
            f"| {metric} | {ours[metric]:.3f} | {order.index(metric) + 1} | "
            f"{PAPER[key][metric]:.3f} | {paper_order.index(metric) + 1} |"
        )
    return lines


def _best_and_seconds(csv_path: Path) -> tuple[float, float]:
    """Return the best validation Dice and the training seconds (last logged time)."""
    rows = _rows(csv_path)
    return max(float(r["val_dice"]) for r in rows if r["val_dice"]), float(rows[-1]["seconds"])


def _tuned_run(folder: Path, metric: str, grid: dict[str, dict[float, float]]) -> Path:
    """Return the curves of a metric's λ-grid run at its chosen λ."""
    lam = max(grid[metric], key=lambda value: grid[metric][value])
    return folder / "tune" / f"{metric}-lam{lam:g}.csv"


def _length_table(folder: Path, grid: dict[str, dict[float, float]]) -> list[str]:
    """Tabulate each metric's validation Dice after the short and the long run."""
    from reproduction_plan import FINAL_STEPS, STEPS

    lines = [
        f"| metric | {STEPS} steps | {FINAL_STEPS} steps | gain | training s ({FINAL_STEPS}) |",
        "|---|---|---|---|---|",
    ]
    for metric in grid:
        short, _ = _best_and_seconds(_tuned_run(folder, metric, grid))
        long, seconds = _best_and_seconds(folder / f"{metric}.csv")
        lines.append(
            f"| {metric} | {short:.3f} | {long:.3f} | {long - short:+.3f} | {seconds:.0f} |"
        )
    return lines


def _ablation_table(
    folder: Path, ablation: dict[str, Any], grid: dict[str, dict[float, float]]
) -> list[str]:
    """Tabulate each ablation run's validation Dice next to its metric's tuned run."""
    from reproduction_plan import ABLATIONS, FEATURE_STEPS, STEPS

    other = ablation["other"]
    base = {m: _best_and_seconds(_tuned_run(folder, m, grid)) for m in ("deepsim", other)}
    lines = [
        "| metric | change | validation Dice | vs the λ-grid run | training s |",
        "|---|---|---|---|---|",
        *(
            f"| {m} | none: the λ-grid run at the chosen λ ({STEPS} steps, crop 96, all "
            f"stages) | {base[m][0]:.3f} | – | {base[m][1]:.0f} |"
            for m in base
        ),
    ]
    extractor, _ = _best_and_seconds(folder / "features.csv")
    for variant in ABLATIONS:
        metric = "deepsim" if variant.deepsim else other
        dice, seconds = _best_and_seconds(ablation["runs"][variant.name])
        change = variant.change
        if variant.feature_steps != FEATURE_STEPS:
            weaker, _ = _best_and_seconds(
                folder / "ablate" / f"features-{variant.feature_steps}.csv"
            )
            change += f" (its segmentation Dice {weaker:.3f}, the default's {extractor:.3f})"
        lines.append(
            f"| {metric} | {change} | {dice:.3f} | {dice - base[metric][0]:+.3f} | {seconds:.0f} |"
        )
    return lines


def _copy_figures(sources: dict[str, Path], target: Path) -> None:
    """Replace ``target``'s figures by ``sources`` as 256-colour PNGs (a third the size)."""
    from PIL import Image

    target.mkdir(parents=True, exist_ok=True)
    for stale in target.glob("*.png"):
        stale.unlink()
    for name, source in sources.items():
        with Image.open(source) as image:
            image.convert("RGB").quantize(256).save(target / name, optimize=True)


def _machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip()
            for line in cpuinfo.read_text().splitlines()
            if line.startswith("model name")
        ]
        model = f"{names[0]}, {len(names)} logical cores" if names else model
    import torch

    return f"{model}; Python {platform.python_version()}, torch {torch.__version__}, no GPU"


def write_report(
    runs: Path,
    splits: Sequence[Any],
    results: dict[str, tuple[dict[str, dict[float, float]], list[Path]]],
    ablation: dict[str, Any],
    seconds: float,
    docs: Path,
) -> Path:
    """Render docs/reproduction.md and copy its figures into docs/reproduction/.

    Parameters
    ----------
    runs : Path
        The run folder of scripts/reproduce.py.
    splits : sequence
        Its ``Split`` records (dataset, frame ranges).
    results : dict
        Per dataset key, the λ grid and the final model files.
    ablation : dict
        ``other``: the metric DeepSim's ablation is compared with; ``runs``: each
        variant's training CSV (first dataset).
    seconds : float
        Wall time of this invocation (stages already done are skipped, so the per-command
        times of the log are what the report quotes).
    docs : Path
        The docs folder.

    Returns
    -------
    Path
        The written report.
    """
    from reproduction_plan import (
        COMMON,
        FEATURE_STEPS,
        FINAL_STEPS,
        FINAL_VAL_EVERY,
        LAMBDA_FACTORS,
        NOISES,
        OPTIMISED,
        STEPS,
        VAL_EVERY,
    )

    figures = docs / "reproduction"
    figures.mkdir(parents=True, exist_ok=True)
    times = command_seconds(runs / "commands.log")
    total = sum(times.values())
    lines = [
        "# Reproduction: every metric on two real datasets",
        "",
        "Regenerated end to end by `.venv/bin/python scripts/reproduce.py` (the commands and",
        "their times are in [commands.log](reproduction/commands.log)). Machine: "
        f"{_machine()}. Wall time of the logged commands: {total / 60:.0f} min ("
        + ", ".join(f"{k} {v / 60:.0f} min" for k, v in times.items())
        + "), summed over every invocation of the script, including runs that were "
        "interrupted and redone; part of it ran while other jobs shared the CPU.",
        "",
        "## Setup",
        "",
        "- Data from `../shared/data`: `isbi2012_em` (ISBI 2012 EM sections, membrane "
        "labels; stands in for Platelet-EM) and `t98g_phase` (T98G phase-contrast "
        "time-lapse, cell foreground; stands in for PhC-U373). Splits by frame: feature "
        "extractor train/validation, registration train, validation (λ choice), and "
        "held-out test frames whose consecutive pairs are the test pairs.",
        f"- Networks and training: U-Net `{' '.join(COMMON)}`; feature extractors "
        f"{FEATURE_STEPS} steps (segmentation, and an autoencoder for deepsim-ae); every "
        f"λ: a grid of {', '.join(f'{f:g}' for f in LAMBDA_FACTORS)} × the metric's default "
        f"on each dataset, runs of {STEPS} steps with validation Dice every {VAL_EVERY} "
        "steps, chosen by best validation Dice, as the paper chose λ per dataset; each "
        f"metric's model is then trained for {FINAL_STEPS} steps at its chosen λ (validation "
        f"every {FINAL_VAL_EVERY} steps; the best validation checkpoint is the model). "
        "One budget for every metric, sized for a 2-core CPU "
        "(the paper trained for hours on a GPU with channels 64-128-256); the README's "
        "example runs trained DeepSim and NCC for 2500 steps with channels 32-64-128.",
        "- VGG needs torchvision's VGG16 weights, which nothing downloads; it runs only "
        "when `DEEPSIM_VGG16` names a weights file"
        + (
            " and was run here."
            if any("vgg" in r[0] for r in results.values())
            else ". **VGG was not run** (no weights on this machine)."
        ),
        "- Baselines: identity (no registration), elastix (itk-elastix, B-spline, its "
        "default parameter map) and ANTs (ANTsPy's default `SyN` with local "
        "cross-correlation, random seed 1; [baselines.md](baselines.md)); each warps the "
        "labels with its own transform and nearest-neighbour interpolation.",
        "- Instance optimisation per test pair ([optimisation.md](optimisation.md)), no "
        "training: `opt-METRIC` optimises an affine stage and then a B-spline field "
        "(4 levels, 100/50/25/5 Adam iterations) from the identity with "
        f"{', '.join(m.upper() for m in OPTIMISED)}, and `opt-deepsim` with DeepSim and the "
        "dataset's segmentation extractor alone (no registration network). "
        "`MODEL+own` refines each model's field with the metric it was trained with "
        "(NCC-sup with NCC: test pairs have no labels), `MODEL+deepsim` with DeepSim (so "
        "`deepsim+own` is `deepsim+deepsim`, computed twice); a "
        "refinement is an affine stage and 3 levels of 20/10/5 iterations at 1.5 × the "
        "metric's λ. These rows are computed on the clean pairs and at σ = "
        f"{max(NOISES):g}; their s/pair is the whole optimisation, the model's prediction "
        "included.",
        f"- Statistics: one-sided Wilcoxon signed-rank test of DeepSim against each model on "
        f"per-pair Dice (stars: * p < .05, ** < .01, *** < .001) and paired Cohen's d; "
        "noise robustness: the same test pairs with Gaussian noise σ = "
        f"{' and '.join(f'{sigma:g}' for sigma in NOISES)} on both "
        "(normalised) images.",
        "",
    ]
    for split in splits:
        key = split.key
        folder = runs / key
        grid = tuning_grid(folder)
        chosen = {m: max(s, key=lambda lam, s=s: s[lam]) for m, s in grid.items()}
        clean = _rows(folder / "eval" / "summary.csv")
        sources = {name: folder / "eval" / name for name in FIGURES}
        sources["convergence.png"] = folder / "convergence.png"
        for sigma in NOISES:
            sources[f"noise{sigma:g}_dice_boxplot.png"] = (
                folder / f"eval-noise{sigma:g}" / "dice_boxplot.png"
            )
        noisiest = f"noise{max(NOISES):g}_qualitative.png"
        sources[noisiest] = folder / f"eval-noise{max(NOISES):g}" / "qualitative.png"
        _copy_figures(sources, figures / key)
        noisy = []
        for sigma in NOISES:
            noisy += [
                f"### With noise σ = {sigma:g}",
                "",
                *_result_table(_rows(folder / f"eval-noise{sigma:g}" / "summary.csv"), chosen),
                "",
                f"![Per-pair Dice with noise](reproduction/{key}/noise{sigma:g}_dice_boxplot.png)",
                "",
            ]
        noisy += [f"![Warped noisy images, σ = {max(NOISES):g}](reproduction/{key}/{noisiest})", ""]
        lines += [
            f"## {split.folder} (stands in for {split.stands_in_for})",
            "",
            f"Frames: features {split.features_train} (validation {split.features_val}), "
            f"registration {split.train}, λ validation {split.val}, test {split.test}.",
            "",
            "### λ on validation frames",
            "",
            *_grid_table(grid),
            "",
            "### Test pairs",
            "",
            *_result_table(clean, chosen),
            "",
            f"![Per-pair Dice](reproduction/{key}/dice_boxplot.png)",
            "",
            f"![Warped images and grids, with a zoom](reproduction/{key}/qualitative.png)",
            "",
            f"![Jacobian determinants](reproduction/{key}/jacobian.png)",
            "",
            *noisy,
            "### Convergence",
            "",
            f"![Validation Dice against steps and wall time](reproduction/{key}/convergence.png)",
            "",
            "Training length: best validation Dice of the λ-grid run at the chosen λ "
            "against the model's longer run.",
            "",
            *_length_table(folder, grid),
            "",
        ]
        if PAPER[key]:
            lines += [
                f"### Against the paper: {PAPER_NOTE[key]}",
                "",
                *_paper_table(key, clean),
                "",
            ]
        else:
            lines += [f"Paper: {PAPER_NOTE[key]}.", ""]
    first = splits[0]
    lines += [
        f"## Why: ablations on {first.folder} validation frames {first.val}",
        "",
        f"DeepSim at its chosen λ with one setting changed at a time, and {ablation['other']} "
        "(the best other metric on these frames) with the same larger "
        "crops. Scored like the λ grid: best validation Dice of the run. Training seconds "
        "are wall time; most λ-grid runs were timed while other jobs shared the CPU.",
        "",
        *_ablation_table(runs / first.key, ablation, results[first.key][0]),
        "",
    ]
    discussion = Path(__file__).with_name("reproduction-discussion.md")
    if discussion.is_file():
        lines += [discussion.read_text().rstrip(), ""]
    report = docs / "reproduction.md"
    report.write_text("\n".join(lines))
    print(f"wrote {report} ({seconds / 60:.0f} min this invocation)")
    return report
