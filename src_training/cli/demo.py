"""``deepsim demo``: the main job on the built-in sample, as a table, a figure and a sentence."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from src_training.data.writing import check_writable
from src_training.evaluation.figures import require_matplotlib

FIGURE = "overview.png"


class StageBars:
    """One progress bar per stage on a terminal; one line per finished stage otherwise."""

    def __init__(self) -> None:
        self.live = sys.stderr.isatty()

    def __call__(self, stage: str, done: int, total: int) -> None:
        """Show that ``done`` of ``total`` steps of ``stage`` are finished."""
        if self.live:
            bar = "#" * (20 * done // total) + "." * (20 - 20 * done // total)
            end = "\n" if done == total else ""
            print(f"\r[{bar}] {stage} {done}/{total}\033[K", end=end, file=sys.stderr, flush=True)
        elif done == total:
            print(f"done: {stage}", file=sys.stderr, flush=True)


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Format the demo's rows as aligned text: Dice per noise level, folding, time."""
    levels = sorted({row["noise"] for row in rows})
    methods = list(dict.fromkeys(row["method"] for row in rows))
    cell = {(row["method"], row["noise"]): row for row in rows}
    header = ["method", "kind", *(f"Dice σ={s:g}" for s in levels), "folding %", "s/pair"]
    lines = [header]
    for name in methods:
        last = cell[name, levels[-1]]
        lines.append(
            [
                name,
                last["kind"],
                *(f"{cell[name, s]['dice']:.3f}" for s in levels),
                f"{last['folding_percent']:.2f}",
                f"{last['seconds_per_pair']:.2f}",
            ]
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    return ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)) for line in lines]


def demo(args: argparse.Namespace) -> None:
    """``deepsim demo``: compare every way of registering the sample, clean and noisy."""
    from src_training.engine.demo import TEST_PAIRS, demo_figure, run_demo

    require_matplotlib()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    check_writable(out)
    result = run_demo(steps=args.steps, device=args.device, seed=args.seed, progress=StageBars())
    high = result.rows[-1]["noise"]
    print(f"held-out pairs {TEST_PAIRS} (moving, fixed) of the built-in noisy cell sample:")
    print("mean Dice (background, cytoplasm, nucleus) by the noise σ added to both images;")
    print(f"folding and seconds per pair at σ = {high:g}")
    for line in table(result.rows):
        print("  " + line)
    print(result.conclusion)
    path = demo_figure(result, out / FIGURE)
    print(f"wrote {path} (replaced on every run)")
