"""How many steps fine-tuning a built-in model needs to match training from scratch.

On ``t98g_phase`` (cell foreground; train frames 0:16, validation frames 16:20), which
``em-2d`` never saw, with the built-in recipe's settings:

1. a segmentation feature extractor from scratch, and one fine-tuned from ``em-2d``'s
   (``deepsim train-features --init em-2d``);
2. a DeepSim registration model from scratch, and one fine-tuned from ``em-2d``
   (``deepsim train --init em-2d``), both with the extractor trained from scratch.

Each pair of runs is compared at the same validation Dice, the highest both reached
(the lower of their two bests): the first validation step at which each run reached
it. Runs that reached their last step are not redone. Usage::

    .venv/bin/python scripts/finetune-steps.py [--runs runs/finetune] [--threads 1]
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEEPSIM = [sys.executable, "-m", "src_training.cli"]
COMMON = ["--channels", "16,32,64", "--crop", "128", "--batch-size", "4", "--lr", "1e-3"]
DATA = ["--labels", "foreground", "--frames", "0:16", "--val-frames", "16:20", "--device", "cpu"]
RUNS = (  # name, command, steps, validation every, starts from
    ("features-scratch", "train-features", 800, 50, None),
    ("features-init", "train-features", 200, 10, "em-2d"),
    ("registration-scratch", "train", 1000, 50, None),
    ("registration-init", "train", 200, 10, "em-2d"),
)


def curve(path: Path) -> list[tuple[int, float]]:
    """Return ``(step, validation Dice)`` of a training CSV."""
    with path.open() as handle:
        return [
            (int(r["step"]), float(r["val_dice"])) for r in csv.DictReader(handle) if r["val_dice"]
        ]


def train(
    name: str, command: str, steps: int, every: int, init: str | None, args: argparse.Namespace
) -> None:
    """Run one training unless its CSV reached the last step."""
    out = args.runs / f"{name}.pt"
    done = out.with_suffix(".csv").is_file() and curve(out.with_suffix(".csv"))[-1][0] >= steps
    if done:
        return
    options = [str(args.data / "t98g_phase"), *DATA, *COMMON, "--steps", str(steps)]
    options += ["--val-every", str(every), "--out", str(out), "--overwrite"]
    if init is not None:
        options += ["--init", init]
    if command == "train":
        options += [
            "--metric",
            "deepsim",
            "--lam",
            "1",
            "--features",
            str(args.runs / "features-scratch.pt"),
        ]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    print("$ deepsim", command, " ".join(options), flush=True)
    subprocess.run(
        [*DEEPSIM, command, *options], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL
    )


def first_reaching(rows: list[tuple[int, float]], dice: float) -> int | None:
    """Return the first step whose validation Dice is at least ``dice``."""
    return next((step for step, value in rows if value >= dice), None)


def compare(kind: str, scratch: Path, tuned: Path) -> str:
    """Return one table row: the steps each run needed to reach the same validation Dice.

    The Dice compared is the highest both runs reached: the lower of their two bests.
    """
    base, tuned_rows = curve(scratch), curve(tuned)
    best = max(value for _, value in base)
    top = max(value for _, value in tuned_rows)
    level = min(best, top)
    scratch_step, tuned_step = first_reaching(base, level), first_reaching(tuned_rows, level)
    assert scratch_step is not None and tuned_step is not None
    return (
        f"| {kind} | {level:.4f} | {scratch_step} | {tuned_step} | "
        f"{scratch_step / tuned_step:.1f}× | {best:.4f} / {top:.4f} |"
    )


def main() -> None:
    """Train the four runs and print the comparison table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "finetune")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only-scratch", action="store_true", help="skip the fine-tuned runs")
    args = parser.parse_args()
    args.runs.mkdir(parents=True, exist_ok=True)
    for name, command, steps, every, init in RUNS:
        if init is None or not args.only_scratch:
            train(name, command, steps, every, init, args)
    if args.only_scratch:
        return
    print(
        "| network | validation Dice | steps from scratch | steps fine-tuned | fewer steps "
        "| best: scratch / fine-tuned |"
    )
    print("|---|---|---|---|---|---|")
    for kind in ("features", "registration"):
        runs = (args.runs / f"{kind}-scratch.csv", args.runs / f"{kind}-init.csv")
        print(compare(kind, *runs))


if __name__ == "__main__":
    main()
