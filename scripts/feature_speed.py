"""Seconds and Dice of DeepSim optimisation against intensity optimisation, interleaved.

The rows of :mod:`feature_study` ran one after the other, so a change of the machine's
load between rows (other jobs on a shared CPU) showed up in their ratio of seconds. Here
every row optimises pair 1, then every row pair 2, and so on, in one process with one
torch thread, so the load's drift falls on all rows alike. The schedule is
:mod:`feature_study`'s (an affine stage, then a B-spline grid, 4 levels of 100/50/25/5
Adam steps, each metric at its own λ); ``deepsim+ncc`` with no options is the default
DeepSim optimisation (what ``--optimise deepsim`` and napari run). Prints a markdown
table (× time and Δ Dice against the first row) with the machine and its load, and
keeps the per-pair scores in ``--out``. Usage::

    .venv/bin/python scripts/feature_speed.py --data isbi --noise 0.3
    .venv/bin/python scripts/feature_speed.py --data t98g --rows "opt-ncc;deepsim+ncc lam=2"

A row is a metric, optionally followed by ``FeatureOptions`` fields, ``lam`` and
``levels`` (the encoder stages compared) as ``key=value`` (e.g. ``deepsim+ncc pca=16
positions=none``, ``deepsim+ncc levels=2,3``); ``opt-`` names an intensity metric.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from reproduction_plan import ROOT, SPLITS

BUILTIN = {"isbi": "em-2d", "t98g": "phase-contrast-2d"}
LAMBDA = {"mse": 0.25, "ncc": 1.0, "deepsim+mse": 0.25}  # feature_study's; others 1
DEFAULT_ROWS = "opt-ncc;opt-mse;deepsim+ncc"


def parse_row(row: str) -> tuple[str, dict[str, object], float]:
    """Return a row's metric, its feature options and λ."""
    name, *pairs = row.split()
    metric = name.removeprefix("opt-")
    options: dict[str, object] = {}
    for pair in pairs:
        key, _, text = pair.partition("=")
        options[key] = (
            None
            if text == "none"
            else text
            if key in ("distance", "stages")
            else [int(n) for n in text.split(",")]
            if key == "levels"
            else float(text)
            if key in ("weight", "lam")
            else int(text)
        )
    lam = float(options.pop("lam", LAMBDA.get(metric, 1.0)))
    return metric, options, lam


def build_method(row: str, extractor: object) -> object:
    """Return the evaluation method that optimises each pair with a row's metric."""
    from src_training.engine.optimisation import Optimisation, optimisation_method
    from src_training.metrics.feature_maps import FeatureOptions
    from src_training.metrics.registry import MetricInputs, build_metric, metric_spec
    from src_training.optimisation import OptimiseConfig

    metric, options, lam = parse_row(row)
    inputs = MetricInputs()
    if metric_spec(metric).extractor_kind is not None:
        levels = options.pop("levels", None)
        given = FeatureOptions(**options) if options else None
        inputs = MetricInputs(extractor, feature_levels=levels, feature_options=given)
    optimisation = Optimisation(
        build_metric(metric, inputs), OptimiseConfig(affine="affine", lam=lam)
    )
    return optimisation_method(optimisation)


def summary(rows: list[str], scores: dict[str, list[dict[str, float]]]) -> str:
    """Markdown table: Δ, p and × time against the best intensity row; × time the first."""
    import numpy as np

    from src_training.evaluation.stats import wilcoxon_p

    def mean(row: str, key: str) -> float:
        return float(np.mean([s[key] for s in scores[row]]))

    intensity = [row for row in rows if row.startswith("opt-")] or rows[:1]
    best = max(intensity, key=lambda row: mean(row, "dice"))
    lines = [
        f"| method | λ | Dice ± sd | Δ Dice | p | folding % | s/pair | × time | × {rows[0]} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        dice = [s["dice"] for s in scores[row]]
        delta = p = "–"
        if row != best:
            delta = f"{mean(row, 'dice') - mean(best, 'dice'):+.3f}"
            p = f"{wilcoxon_p(dice, [s['dice'] for s in scores[best]]):.3f}"
        lines.append(
            f"| {row} | {parse_row(row)[2]:g} | {np.mean(dice):.3f} ± {np.std(dice, ddof=1):.3f} "
            f"| {delta} | {p} | {mean(row, 'folding_percent'):.2f} | {mean(row, 'seconds'):.2f} "
            f"| {mean(row, 'seconds') / mean(best, 'seconds'):.2f} "
            f"| {mean(row, 'seconds') / mean(rows[0], 'seconds'):.2f} |"
        )
    return "\n".join(lines) + f"\n\nΔ, p and × time against {best}, the best intensity row."


def render(path: Path) -> str:
    """Return the markdown of a run kept in ``path`` (and write it beside, as ``.md``)."""
    kept = json.loads(path.read_text())
    text = f"### {kept['title']}\n\n{summary(list(kept['scores']), kept['scores'])}\n\n"
    text += f"{kept['machine']}\n"
    path.with_suffix(".md").write_text(text)
    return text


def main() -> None:
    """Score every row on every pair, row after row within a pair; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", choices=[s.key for s in SPLITS], default="isbi")
    parser.add_argument("--frames", help="default: the split's test frames")
    parser.add_argument("--noise", type=float, default=0.0)
    parser.add_argument("--rows", default=DEFAULT_ROWS, help="rows separated by ';'")
    parser.add_argument("--shared", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "feature-speed")
    parser.add_argument("--render-only", action="store_true", help="re-render the runs in --out")
    args = parser.parse_args()
    if args.render_only:
        print("\n".join(render(path) for path in sorted(args.out.glob("*.json"))))
        return
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    from src_training.data.datasets import load_dataset, parse_frames
    from src_training.engine.evaluation import evaluation_pairs
    from src_training.engine.metrics import load_extractor
    from src_training.evaluation.scoring import add_noise, score_pairs

    torch.set_num_threads(1)
    split = next(s for s in SPLITS if s.key == args.data)
    frames = args.frames or split.test
    labels = "foreground" if split.labels else "classes"
    data = load_dataset(args.shared / split.folder, frames=parse_frames(frames), labels=labels)
    extractor = load_extractor(BUILTIN[split.key], "deepsim", data.ndim, 1)
    images = add_noise(data.images, args.noise, 0)
    rows = [row.strip() for row in args.rows.split(";") if row.strip()]
    methods = {row: build_method(row, extractor) for row in rows}
    scores: dict[str, list[dict[str, float]]] = {row: [] for row in rows}
    load_start, started = os.getloadavg()[0], time.time()
    for pair in evaluation_pairs(data):
        for row in rows:
            scored = score_pairs(images, data.labels, [pair], methods[row], data.class_values)
            result = scored.rows[0]  # a failed pair has no Dice: the row's mean is NaN
            scores[row].append({"dice": float("nan"), "seconds": 0.0, **result})
            brief = {
                key: result[key]
                for key in ("dice", "folding_percent", "seconds", "failed")
                if key in result
            }
            print(f"{pair} {row}: {brief}", flush=True)
    machine = (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch "
        f"{torch.__version__}, one thread; load (1 min) {load_start:.1f} at the start, "
        f"{os.getloadavg()[0]:.1f} at the end, {time.time() - started:.0f} s in all"
    )
    title = f"{split.folder} {frames}, {'clean' if args.noise == 0 else f'σ = {args.noise:g}'}"
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{split.key}-{frames.replace(':', '-')}-noise{args.noise:g}.json"
    path.write_text(json.dumps({"title": title, "machine": machine, "scores": scores}))
    print(render(path))


if __name__ == "__main__":
    main()
