"""Train, evaluate and package the built-in models shipped in ``src_training/models/``.

For each built-in model (``em-2d``, ``phase-contrast-2d``, and the feature extractor
alone ``prostate-mr-us-3d``, whose registration step is left out and whose held-out
row is the optimisation with its metric):

1. ``train``: a segmentation feature extractor, then a DeepSim registration model with
   that extractor at the chosen λ, on the training frames only (``deepsim
   train-features`` and ``deepsim train``, seeded, on the CPU with a fixed number of
   threads, so a rerun gives the same weights);
2. ``package``: both networks written with 16-bit weights (restored to float32 on
   load) into ``src_training/models/`` with their SHA-256 in ``registry.json``, and
   the training data's intensity statistics (the guard rail's reference);
3. ``evaluate``: the shipped files on the held-out consecutive pairs against identity
   and elastix (``deepsim evaluate --baseline identity --baseline elastix``);
4. ``cards``: the model cards (data, licence, citation, splits, this command, the
   held-out table) and the held-out Dice in the registry.

Training skips a model whose run already reached its last step, so an interrupted
run continues. Usage::

    .venv/bin/python scripts/train-builtin.py [--runs runs/builtin] [--threads 1]
        [--only em-2d] [--stop-after train]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from builtin_cards import card, extractor_card  # noqa: E402  (scripts/builtin_cards.py, beside this file)
from builtin_recipe import RECIPES, Recipe  # noqa: E402
from reproduction_commands import finished  # noqa: E402  (scripts/reproduction_commands.py)

from src_training.data.datasets import load_dataset, load_image_file, parse_frames  # noqa: E402
from src_training.data.profile import intensity_profile  # noqa: E402
from src_training.data.reading import read_image  # noqa: E402
from src_training.models import REGISTRY, models_folder, sha256_of  # noqa: E402
from src_training.networks.modelio import ModelFile, load_model, save_model  # noqa: E402
from src_training.registration.inference import predict  # noqa: E402

DEEPSIM = [sys.executable, "-m", "src_training.cli"]
MODELS = models_folder()
DROPPED = ("kind", "network", "created", "val_data", "best_validation")


def run(args: list[str], log: Path, threads: int) -> float:
    """Run one deepsim command with ``threads`` CPU threads; return its wall time."""
    shown = "deepsim " + shlex.join(args)
    print(f"$ {shown}", flush=True)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
        "PYTHONPATH": str(ROOT),
    }
    start = time.perf_counter()
    with log.open("a") as stream:
        stream.write(f"$ {shown}\n")
        stream.flush()
        result = subprocess.run(
            [*DEEPSIM, *args], cwd=ROOT, env=env, stdout=stream, stderr=subprocess.STDOUT
        )
        seconds = time.perf_counter() - start
        stream.write(f"# {seconds:.1f} s, exit {result.returncode}\n")
    if result.returncode != 0:
        raise SystemExit(f"failed ({result.returncode}): {shown}; see {log}")
    return seconds


def train(recipe: Recipe, data: Path, folder: Path, log: Path, threads: int) -> None:
    """Train the extractor, then the registration model, unless finished."""
    source = [str(data / recipe.folder), *recipe.label_options, "--frames", recipe.train_frames]
    if recipe.val_frames:
        source += ["--val-frames", recipe.val_frames]
    common = [*recipe.common, "--device", "cpu", "--seed", str(recipe.seed), "--overwrite"]
    features = folder / "features.pt"
    if not finished(features, recipe.feature_steps):
        command = ["train-features", *source, "--steps", str(recipe.feature_steps), *common]
        run([*command, "--out", str(features)], log, threads)
    registration = folder / "registration.pt"
    if not recipe.metric and not finished(registration, recipe.steps):
        command = [
            "train",
            *source,
            "--metric",
            "deepsim",
            "--features",
            str(features),
            "--lam",
            f"{recipe.lam:g}",
            "--steps",
            str(recipe.steps),
            *common,
        ]
        run([*command, "--out", str(registration)], log, threads)


def training_seconds(model: Path) -> float:
    """Wall time of a training run, from the last row of its CSV."""
    with model.with_suffix(".csv").open() as handle:
        return float(list(csv.DictReader(handle))[-1]["seconds"])


def write_compact(model: ModelFile, path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Write a model with 16-bit weights and return its registry entry (file, SHA, bytes)."""
    metadata = {k: v for k, v in model.metadata.items() if k not in DROPPED}
    save_model(path, copy.deepcopy(model.network).half(), {**metadata, **extra})
    return {"file": path.name, "sha256": sha256_of(path), "bytes": path.stat().st_size}


def float16_change(recipe: Recipe, data: Path, model: ModelFile, path: Path) -> float:
    """Largest displacement change (px) of the 16-bit file against the 32-bit weights."""
    test = load_dataset(
        data / recipe.folder, frames=parse_frames(recipe.test_frames), labels="none"
    )
    moving, fixed = test.images[1:2], test.images[0:1]
    before = predict(model.network, moving, fixed, "cpu")
    after = predict(load_model(path).network, moving, fixed, "cpu")
    return float((before - after).abs().max())


def probability_change(recipe: Recipe, data: Path, model: ModelFile, path: Path) -> float:
    """Largest class-probability change of the 16-bit file on a held-out volume."""
    first = sorted((data / recipe.test_folder / "moving_images").iterdir())[0]
    image = torch.from_numpy(load_image_file(first)[0][None])
    with torch.no_grad():
        before, after = (
            torch.softmax(network(image), dim=1)
            for network in (model.network, load_model(path).network)
        )
    return float((before - after).abs().max())


def registry_entry(
    recipe: Recipe, model: ModelFile, files: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    """Return a model's registry entry before evaluation (its held-out scores empty)."""
    entry = {
        "modality": recipe.modality,
        "summary": recipe.summary,
        "ndim": model.ndim,
        "channels": int(model.network.in_channels),
        "network": recipe.channels,
        "files": files,
        "card": f"{recipe.name}.md",
        "heldout": {},
    }
    return {**entry, "metric": recipe.metric} if recipe.metric else entry


def package_extractor(recipe: Recipe, data: Path, folder: Path, threads: int) -> dict[str, Any]:
    """Write a feature extractor alone with 16-bit weights; return its entry and facts."""
    features = load_model(folder / "features.pt")
    common = {"builtin": recipe.name, "train_data": f"{recipe.folder} cases {recipe.train_frames}"}
    target = MODELS / f"{recipe.name}.features.pt"
    entry = registry_entry(recipe, features, {"features": write_compact(features, target, common)})
    facts = {
        "threads": threads,
        "features_seconds": training_seconds(folder / "features.pt"),
        "best_step": int(features.metadata["steps_trained"]),
        "best_dice": float(features.metadata["best_validation"]),
        "float16_change": probability_change(recipe, data, features, target),
    }
    return {"entry": entry, "facts": facts}


def package(recipe: Recipe, data: Path, folder: Path, threads: int) -> dict[str, Any]:
    """Write both files with 16-bit weights; return the registry entry and card facts."""
    if recipe.metric:
        return package_extractor(recipe, data, folder, threads)
    frames = sorted((data / recipe.folder / "images").iterdir())[parse_frames(recipe.train_frames)]
    profile = intensity_profile(read_image(path)[0] for path in frames)
    common = {
        "builtin": recipe.name,
        "train_data": f"{recipe.folder} frames {recipe.train_frames}",
        "intensity_profile": profile,
    }
    features = load_model(folder / "features.pt")
    registration = load_model(folder / "registration.pt")
    target = MODELS / f"{recipe.name}.pt"
    files = {
        "registration": write_compact(registration, target, {**common, "features": recipe.name}),
        "features": write_compact(features, MODELS / f"{recipe.name}.features.pt", common),
    }
    entry = registry_entry(recipe, registration, files)
    facts = {
        "profile": profile,
        "threads": threads,
        "features_seconds": training_seconds(folder / "features.pt"),
        "seconds": training_seconds(folder / "registration.pt"),
        "float16_change": float16_change(recipe, data, registration, target),
    }
    return {"entry": entry, "facts": facts}


def write_registry(entries: dict[str, dict[str, Any]]) -> None:
    """Write registry.json, keeping the entries of models not rebuilt in this run."""
    path = MODELS / REGISTRY
    models = json.loads(path.read_text())["models"] if path.is_file() else {}
    models.update(entries)
    order = [r.name for r in RECIPES]
    ordered = {name: models[name] for name in sorted(models, key=order.index)}
    path.write_text(json.dumps({"format": 1, "models": ordered}, indent=2) + "\n")


def evaluate(recipe: Recipe, data: Path, folder: Path, log: Path, threads: int) -> dict[str, Any]:
    """Score the shipped model (by its name) against identity and elastix; return the table."""
    out = folder / "eval"
    if recipe.metric:
        method = ["--optimise", f"{recipe.metric}:{recipe.name}"]
        source = [str(data / recipe.test_folder), *method]
    else:
        source = [str(data / recipe.folder), *recipe.label_options, "--frames", recipe.test_frames]
        source += ["--models", recipe.name]
    command = ["evaluate", *source, *recipe.score, "--device", "cpu", "--out", str(out)]
    run([*command, "--overwrite"], log, threads)
    if recipe.metric:
        return gland_scores(recipe, out)
    with (out / "summary.csv").open() as handle:
        rows = {r["model"]: r for r in csv.DictReader(handle)}
    keys = ("dice", "dice_sd", "folding_percent", "seconds_per_pair")
    with (out / "pairs.csv").open() as handle:
        pairs = sum(1 for r in csv.DictReader(handle) if r["model"] == recipe.name)
    table = {
        ("model" if name == recipe.name else name): {k: round(float(row[k]), 4) for k in keys}
        for name, row in rows.items()
    }
    return {"data": f"{recipe.folder} {recipe.test_frames}", "pairs": pairs, **table}


def gland_scores(recipe: Recipe, out: Path) -> dict[str, Any]:
    """Return the held-out table of a feature extractor alone: gland Dice and TRE."""
    with (out / "pairs.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    table: dict[str, Any] = {"data": f"{recipe.test_folder}, gland"}
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        values = {k: [float(r[k]) for r in mine] for k in ("dice_1", "tre", "folding_percent")}
        values["seconds"] = [float(r["seconds"]) for r in mine]
        key = "model" if name == f"opt-{recipe.metric}" else name
        table[key] = {
            "dice": round(float(np.mean(values["dice_1"])), 4),
            "dice_sd": round(float(np.std(values["dice_1"])), 4),
            "tre_mm": round(float(np.mean(values["tre"])), 3),
            "folding_percent": round(float(np.mean(values["folding_percent"])), 4),
            "seconds_per_pair": round(float(np.mean(values["seconds"])), 4),
        }
        table["pairs"] = len(mine)
    return table


def main() -> None:
    """Run the stages for each selected built-in model."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "builtin")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--only", choices=[r.name for r in RECIPES], action="append")
    parser.add_argument("--stop-after", choices=("train", "cards"), default="cards")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    recipes = [r for r in RECIPES if not args.only or r.name in args.only]
    for recipe in recipes:
        folder = args.runs / recipe.name
        folder.mkdir(parents=True, exist_ok=True)
        train(recipe, args.data, folder, folder / "commands.log", args.threads)
    if args.stop_after == "train":
        return
    packed = {r.name: package(r, args.data, args.runs / r.name, args.threads) for r in recipes}
    write_registry({name: p["entry"] for name, p in packed.items()})
    for recipe in recipes:
        folder = args.runs / recipe.name
        entry = packed[recipe.name]["entry"]
        log = folder / "commands.log"
        threads = os.cpu_count() or 1
        entry["heldout"] = evaluate(recipe, args.data, folder, log, threads)
        facts = {**packed[recipe.name]["facts"], "eval_threads": threads}
        text = extractor_card(recipe, entry, facts) if recipe.metric else card(recipe, entry, facts)
        (MODELS / entry["card"]).write_text(text)
        print(f"{recipe.name}: held-out Dice {entry['heldout']['model']['dice']:.3f}")
    write_registry({name: p["entry"] for name, p in packed.items()})


if __name__ == "__main__":
    main()
