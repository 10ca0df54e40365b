"""The small ``deepsim`` sub-commands: metrics, models, curves, fetch and info."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from src_training.data.writing import check_writable
from src_training.evaluation.curves import convergence_figure, read_validation_curve
from src_training.evaluation.figures import (
    require_matplotlib,
)
from src_training.metrics.registry import METRICS
from src_training.models import builtin_file, builtin_models, card_text, is_builtin
from src_training.networks.modelio import load_model


def metrics(args: argparse.Namespace) -> None:
    """``deepsim metrics``: list the registered metrics, their default lambda and needs."""
    width = max(len(name) for name in METRICS)
    print(f"{'name':<{width}}  {'lambda':>6}  needs       description")
    for spec in METRICS.values():
        flags = (
            ("labels", spec.needs_labels),
            ("features", spec.needs_extractor),
            ("weights", spec.needs_weights),
        )
        needs = ",".join(word for word, flag in flags if flag) or "-"
        print(f"{spec.name:<{width}}  {spec.default_lambda:>6g}  {needs:<10}  {spec.description}")


def models(args: argparse.Namespace) -> None:
    """``deepsim models``: list the built-in models, their data and held-out Dice."""
    found = builtin_models()
    if not found:
        print("no built-in models are installed; reinstall napari-deepsim to get them")
        return
    rows = [("name", "modality", "ndim", "parts", "size", "held-out Dice")]
    for model in found.values():
        dice = model.heldout_dice
        data = model.heldout.get("data", "")
        scored = "-" if dice is None else f"{dice:.3f} ({data})"
        size = f"{model.size_bytes / 1e6:.2f} MB"
        parts = "model+extractor" if model.registers else "extractor"
        rows.append((model.name, model.modality, f"{model.ndim}D", parts, size, scored))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    print("use a name wherever a model file goes: --model, --models, --features, --init;")
    print("`deepsim info NAME` shows a model's card")
    for model in found.values():
        if not model.registers:
            print(f"{model.name} is a feature extractor alone: `{model.use}`")


def curves(args: argparse.Namespace) -> None:
    """``deepsim curves``: validation Dice of training runs against step and wall time."""
    names = args.names or [Path(path).stem for path in args.logs]
    if len(names) != len(args.logs):
        raise ValueError(
            f"--names gives {len(names)} name(s) for {len(args.logs)} training log(s); "
            "give one name per CSV"
        )
    out = Path(args.out)
    if out.suffix.lower() != ".png":
        raise ValueError(f"--out must name a .png file, got {out}")
    require_matplotlib()
    for path in args.logs:
        if not Path(path).is_file():
            raise FileNotFoundError(f"no such file: {path}; check the path")
    runs = [read_validation_curve(path, name) for path, name in zip(args.logs, names, strict=True)]
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} already exists; choose another --out or pass --overwrite")
    if not out.parent.is_dir():
        raise FileNotFoundError(
            f"the folder of --out ({out.parent}) does not exist; create it or choose another --out"
        )
    check_writable(out.parent)
    convergence_figure(out, runs)
    print(f"plotted the validation Dice of {len(runs)} run(s); wrote {out}")


def fetch(args: argparse.Namespace) -> None:
    """``deepsim fetch``: download a public dataset into the cache and list its sequences."""
    from src_training.data.ctc import fetch as fetch_dataset
    from src_training.data.ctc import is_sequence

    folder = fetch_dataset(
        args.name, download=True, cache=args.cache, sha256=args.sha256, report=print
    )
    sequences = sorted(path for path in folder.iterdir() if is_sequence(path))
    print(f"{args.name} is in {folder}; its sequences are datasets for every command:")
    for path in sequences:
        print(f"  {path}")
    if sequences:
        print(f"e.g. deepsim train-features {sequences[0]} --labels foreground --out features.pt")


def info(args: argparse.Namespace) -> None:
    """``deepsim info``: print a built-in model's card, or what a model file holds."""
    if is_builtin(args.model):
        for part in builtin_models()[args.model].files:
            builtin_file(args.model, part)  # refuses a damaged file before showing the card
        print(card_text(args.model).rstrip())
        return
    model = load_model(args.model)
    params = sum(p.numel() for p in model.network.parameters())
    print(f"{args.model}: {model.kind} model, {model.ndim}D, {params:,} parameters")
    for key, value in model.metadata.items():
        shown = json.dumps(value) if isinstance(value, dict | list) else value
        print(f"  {key}: {shown}")
    if model.training_state:
        print(f"  resumable checkpoint at step {model.training_state.get('step')}")


def export_field(args: argparse.Namespace) -> None:
    """``deepsim export-field``: a saved field as an ITK displacement field transform."""
    from src_training.engine.fields import export_itk
    from src_training.spatial.fieldio import load_field

    out = Path(args.out)
    if out.exists() and not args.overwrite:
        raise ValueError(f"{out} already exists; choose another OUT or pass --overwrite")
    field_file = load_field(args.field)
    written = export_itk(field_file, out)
    grid = " x ".join(str(n) for n in field_file.grid)
    print(
        f"wrote {written}: an ITK displacement field of {grid} voxels, spacing "
        f"{', '.join(f'{s:g}' for s in field_file.spacing)}"
    )
