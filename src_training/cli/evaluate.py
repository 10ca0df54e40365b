"""``deepsim evaluate``: the engine's evaluation written as CSV tables and figures."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from src_training.cli.common import (
    dataset,
    non_negative,
    optimisation,
    optimisation_flags_used,
    own_refiner,
    write_csv,
)
from src_training.data.pairs import read_pairs_csv
from src_training.data.writing import prepare_output_dir
from src_training.engine.evaluation import (
    check_reference,
    evaluate_methods,
    evaluation_methods,
    evaluation_pairs,
    landmark_ids,
    median_identity_pair,
)
from src_training.engine.optimisation import Optimisation
from src_training.engine.options import OWN
from src_training.evaluation.baselines import elastix_version
from src_training.evaluation.figures import (
    Panel,
    dice_boxes,
    dice_boxplot,
    field_2d,
    jacobian_figure,
    parse_zoom,
    qualitative_figure,
    require_matplotlib,
    view_2d,
)
from src_training.evaluation.scoring import Registered
from src_training.networks.modelio import ModelFile
from src_training.registration.inference import warp_array
from src_training.runtime.devices import resolve_device

FIGURES = ("dice_boxplot.png", "qualitative.png", "jacobian.png")


def evaluate(args: argparse.Namespace) -> None:
    """``deepsim evaluate``: scores per pair and model, statistics, CSV tables, figures."""
    if not args.models and not args.baseline and not args.optimise:
        raise ValueError(
            "nothing to evaluate: pass --models R.pt ..., --optimise METRIC and/or "
            "--baseline identity"
        )
    non_negative(args.noise, "--noise")
    _check_ants_flags(args)
    if args.zoom and not args.figures:
        raise ValueError("--zoom marks a region of the figures; pass --figures too")
    if args.figures:
        require_matplotlib()
    data = dataset(args, args.frames)
    explicit = (
        read_pairs_csv(args.pairs, data.names) if args.pairs and data.labels is not None else None
    )
    pairs = evaluation_pairs(data, explicit, args.data)
    device = resolve_device(args.device)
    if args.refine and not args.models:
        raise ValueError(
            "--refine refines the prediction of each --models entry; pass --models R.pt ..."
        )
    if not (args.optimise or args.refine) and optimisation_flags_used(args):
        flag = optimisation_flags_used(args)[0]
        raise ValueError(
            f"{flag} applies to --optimise and --refine rows; pass one of them, or remove {flag}"
        )
    shape = tuple(data.images.shape[2:])
    named = [spec for spec in args.refine if spec != OWN]
    optimisations, refinements = (
        [optimisation(args, spec, data.ndim, data.channels, shape, refine) for spec in specs]
        for specs, refine in ((args.optimise, False), (named, True))
    )

    def own(model: ModelFile) -> Optimisation:
        return own_refiner(args, model, data.ndim, data.channels, shape)

    methods = evaluation_methods(
        args.baseline,
        args.models,
        data,
        device,
        args.data,
        optimisations,
        refinements,
        own if OWN in args.refine else None,
        precision=args.precision,
        ants_metric=args.ants_metric,
        seeds=args.seeds,
    )
    if "elastix" in args.baseline:
        print(f"elastix baseline: itk-elastix {elastix_version()}, default B-spline map")
    if "elastix-mi" in args.baseline:
        print(f"elastix-mi baseline: itk-elastix {elastix_version()}, affine then B-spline, MI")
    for entry in methods:
        if entry.description and not entry.name.startswith("elastix"):
            print(f"{entry.name} baseline: {entry.description}")
    check_reference(methods, args.reference)
    landmarks = _landmarks(args.landmarks)
    landmark_ids(data, landmarks)
    zoom = parse_zoom(args.zoom, view_2d(data.images[0]).shape) if args.zoom else None
    names = ["pairs.csv", "summary.csv", *(FIGURES if args.figures else ())]
    out = prepare_output_dir(args.out, names, args.overwrite)
    assert data.labels is not None
    shown = median_identity_pair(data.labels, pairs) if args.figures else None
    result = evaluate_methods(
        data,
        pairs,
        methods,
        hd95=args.hd95,
        noise=args.noise,
        seed=args.seed,
        reference=args.reference,
        keep=shown,
        landmarks=landmarks,
    )
    pair_rows, summary_rows = result.pair_rows, result.summary_rows
    write_csv(out / "pairs.csv", pair_rows, ["model", "metric", "moving_name", "fixed_name"])
    write_csv(out / "summary.csv", summary_rows, ["model", "metric"])
    if shown is not None:
        assert result.images is not None
        _write_figures(
            out,
            result.images,
            shown,
            result.kept,
            pair_rows,
            result.statistics,
            args,
            zoom,
            data.names,
        )
    _print_summary(summary_rows)
    for row in pair_rows:
        if "failed" in row:
            print(
                f"{row['model']} failed on {row['moving_name']} -> {row['fixed_name']}: "
                f"{row['failed']}"
            )
    written = ", ".join(str(out / n) for n in names)
    print(f"{len(pairs)} pairs{f', noise {args.noise:g}' if args.noise else ''}; wrote {written}")


def _check_ants_flags(args: argparse.Namespace) -> None:
    """Refuse ANTs settings without the ANTs row."""
    for flag, used in (("--ants-metric", args.ants_metric != "cc"), ("--seeds", args.seeds > 1)):
        if used and "ants" not in args.baseline:
            raise ValueError(f"{flag} sets the --baseline ants row; pass --baseline ants too")


def _write_figures(
    out: Path,
    images: np.ndarray,
    shown: tuple[int, int],
    kept: dict[str, Registered],
    pair_rows: list[dict[str, Any]],
    statistics: dict[str, dict[str, Any]] | None,
    args: argparse.Namespace,
    zoom: tuple[int, int, int, int] | None,
    frame_names: list[str],
) -> None:
    noise = f", noise σ={args.noise:g}" if args.noise else ""
    boxes = dice_boxes(pair_rows, args.reference, statistics)
    reference = f", stars: {args.reference} better (Wilcoxon)" if args.reference else ""
    dice_boxplot(out / FIGURES[0], boxes, f"{len(boxes[0].values)} test pairs{noise}{reference}")
    moving, fixed = shown
    panels = [
        Panel(name, view_2d(warp_array(images[moving], result.disp)), field_2d(result.disp))
        for name, result in kept.items()
    ]
    title = f"moving {frame_names[moving]} → fixed {frame_names[fixed]}{noise}"
    qualitative_figure(
        out / FIGURES[1],
        view_2d(images[fixed]),
        view_2d(images[moving]),
        panels,
        spacing=args.grid_spacing,
        zoom=zoom,
        title=title,
    )
    jacobian_figure(out / FIGURES[2], {name: r.disp for name, r in kept.items()}, title)


def _landmarks(text: str | None) -> list[int]:
    try:
        return [] if text is None else [int(value) for value in text.split(",")]
    except ValueError:
        raise ValueError(
            f"--landmarks takes label values separated by commas, e.g. 2,3; got {text!r}"
        ) from None


def _print_summary(rows: list[dict[str, Any]]) -> None:
    hd95 = "hd95" in rows[0]
    tre = "tre" in rows[0]
    tested = any("p_value" in r for r in rows)
    header = ("model", "metric", "dice", "sd", "fold%", "sdlogj", "s/pair")
    print(
        "{:<24} {:<10} {:>7} {:>6} {:>7} {:>7} {:>7}".format(*header)
        + (f" {'hd95':>7}" if hd95 else "")
        + (f" {'tre':>7}" if tre else "")
        + (f" {'p':>8} {'d':>6}" if tested else "")
    )
    for r in rows:
        sd = r.get("dice_sd", r.get("dice_seed_sd"))
        line = (
            f"{r['model']:<24} {r['metric']:<10} {r['dice']:>7.4f} {sd:>6.4f} "
            f"{r['folding_percent']:>7.3f} {r['sdlogj']:>7.3f} {r['seconds_per_pair']:>7.3f}"
        )
        if hd95:
            line += f" {r.get('hd95', float('nan')):>7.2f}"
        if tre:
            line += f" {r.get('tre', float('nan')):>7.2f}"
        if "p_value" in r:
            line += f" {r['p_value']:>8.4f} {r['cohens_d']:>6.2f} {r['stars']}"
        print(line)
        if "seeds" in r:
            print(f"  ({r['model']}: mean over {r['seeds']} seeds, sd = spread between seeds)")
