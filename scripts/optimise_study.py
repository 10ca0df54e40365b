"""Instance optimisation against elastix, identity and the built-in models (docs/optimisation.md).

On the held-out pairs of docs/reproduction.md (ISBI 25:30, T98G 20:24), clean and with
Gaussian noise σ = 0.3 on both images, one ``deepsim evaluate`` per dataset and noise
scores in one table: identity, elastix, each intensity metric optimised from the
identity (affine then B-spline), DeepSim optimised from the identity with the built-in
feature extractor alone and the built-in DeepSim registration model; a second
evaluation per table refines that model with DeepSim and with NCC (the refinement's
default schedule), beside identity and elastix again. It writes docs/optimisation.md
with the tables and a time-against-Dice scatter plot per dataset and noise level.
Usage::

    .venv/bin/python scripts/optimise_study.py [--runs runs/optimisation] [--noises 0,0.3]
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
from pathlib import Path

from reproduction_commands import command_seconds, run  # scripts/reproduction_commands.py
from reproduction_plan import ROOT, SPLITS

INTENSITY = ("mse", "ncc", "nmi", "mind")
BUILTIN = {"isbi": "em-2d", "t98g": "phase-contrast-2d"}
REFINING = (
    "an affine stage, then the refinement's default schedule: 3 levels of 20/10/5 "
    "iterations at 1.5 × the metric's λ"
)
COLUMNS = ("model", "dice", "dice_sd", "hd95", "folding_percent", "sdlogj", "seconds_per_pair")


def evaluate(
    split: object, data: Path, out: Path, noise: float, log: Path, refine: bool = False
) -> Path:
    """Run one evaluation; return its summary.csv.

    Without ``refine``: every optimisation from the identity and the built-in model;
    with it: the built-in model refined with DeepSim and with NCC (the refinement's own
    default schedule). Identity and elastix are in both.
    """
    summary = out / "summary.csv"
    if summary.is_file():
        return summary
    model = BUILTIN[split.key]
    if refine:
        rows = ["--models", model, f"--refine=deepsim:{model}", "--refine=ncc"]
    else:
        rows = [f"--optimise={m}" for m in INTENSITY] + [f"--optimise=deepsim:{model}"]
        rows += ["--models", model]
    run(
        [
            "evaluate",
            str(data / split.folder),
            *split.labels,
            "--frames",
            split.test,
            "--baseline",
            "identity",
            "--baseline",
            "elastix",
            *rows,
            "--affine",
            "--hd95",
            "--noise",
            f"{noise:g}",
            "--device",
            "cpu",
            "--out",
            str(out),
            "--overwrite",
        ],
        log,
    )
    return summary


def read(summary: Path) -> list[dict[str, str]]:
    """Return the rows of a summary.csv."""
    with open(summary, newline="") as handle:
        return list(csv.DictReader(handle))


def markdown(rows: list[dict[str, str]]) -> str:
    """Return the rows as a markdown table, best Dice first after identity and elastix."""
    first = [r for r in rows if r["model"] in ("identity", "elastix")]
    rest = sorted((r for r in rows if r not in first), key=lambda r: -float(r["dice"]))
    lines = [
        "| method | Dice ± sd | HD95 (px) | folding % | sd log J | s/pair |",
        "|---|---|---|---|---|---|",
    ]
    for r in first + rest:
        lines.append(
            f"| {r['model']} | {float(r['dice']):.3f} ± {float(r['dice_sd']):.3f} | "
            f"{float(r['hd95']):.2f} | {float(r['folding_percent']):.2f} | "
            f"{float(r['sdlogj']):.3f} | {float(r['seconds_per_pair']):.2f} |"
        )
    return "\n".join(lines)


def scatter(tables: dict[str, list[dict[str, str]]], path: Path, title: str) -> None:
    """Seconds per pair against Dice, one point per method, elastix marked."""
    from src_training.evaluation.figures import new_figure, save_figure

    figure = new_figure(5.0 * len(tables), 4.0)
    axes = figure.subplots(1, len(tables), squeeze=False)[0]
    for ax, (name, rows) in zip(axes, tables.items(), strict=True):
        # labels alternate above and below in Dice order, so neighbours do not overlap;
        # elastix is drawn last, on top
        ordered = sorted(rows, key=lambda r: (r["model"] == "elastix", float(r["dice"])))
        for index, r in enumerate(ordered):
            seconds = max(float(r["seconds_per_pair"]), 1e-3)
            elastix = r["model"] == "elastix"
            marker, colour, size = ("*", "red", 160) if elastix else ("o", "tab:blue", 50)
            ax.scatter(seconds, float(r["dice"]), marker=marker, color=colour, s=size, zorder=3)
            offset = (-6, -13) if elastix else (4, 3 if index % 2 else -9)
            ax.annotate(r["model"], (seconds, float(r["dice"])), fontsize=7, xytext=offset,
                        textcoords="offset points", ha="right" if elastix else "left",
                        color=colour if elastix else "black")  # fmt: skip
        ax.set_xscale("log")
        ax.set_xlabel("seconds per pair (log)")
        ax.set_ylabel("mean Dice")
        ax.set_title(name, fontsize=9)
    figure.suptitle(title, fontsize=10)
    save_figure(figure, path)


def main() -> None:
    """Evaluate both datasets at every noise level and write docs/optimisation.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "optimisation")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--noises", default="0,0.3")
    parser.add_argument(
        "--render-only", action="store_true", help="write the page from the finished evaluations"
    )
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # the evaluations' torch threads
    args.runs.mkdir(parents=True, exist_ok=True)
    log = args.runs / "commands.log"
    figures = ROOT / "docs" / "optimisation"
    figures.mkdir(exist_ok=True)
    sections = []
    for noise in (float(n) for n in args.noises.split(",")):
        tables: dict[str, list[dict[str, str]]] = {}
        refined: dict[str, list[dict[str, str]]] = {}
        for split in SPLITS:
            out = args.runs / f"{split.key}-noise{noise:g}"
            if args.render_only and not (out / "summary.csv").is_file():
                continue
            name = f"{split.folder} {split.test}"
            # refinement rows come from their own run (an older main run may hold some)
            rows = read(evaluate(split, args.data, out, noise, log))
            tables[name] = [r for r in rows if "+" not in r["model"]]
            again = out.with_name(f"{out.name}-refine")
            if not args.render_only or (again / "summary.csv").is_file():
                refined[name] = read(evaluate(split, args.data, again, noise, log, refine=True))
        if not tables:
            continue
        label = "clean" if noise == 0 else f"noise σ = {noise:g}"
        plot = figures / f"time_vs_dice_noise{noise:g}.png"
        plotted = {
            name: rows + [r for r in refined.get(name, []) if "+" in r["model"]]
            for name, rows in tables.items()
        }
        scatter(plotted, plot, f"time against Dice, {label}")
        sections.append(f"## {label.capitalize()}\n")
        for name, rows in tables.items():
            sections.append(f"### {name}\n\n{markdown(rows)}\n")
            if name in refined:
                sections.append(
                    f"Refining the built-in model (a run of its own: {REFINING}):\n\n"
                    f"{markdown(refined[name])}\n"
                )
        sections.append(f"![seconds per pair against Dice, {label}](optimisation/{plot.name})\n")
    machine = f"{platform.processor() or platform.machine()}, Python {platform.python_version()}"
    minutes = sum(command_seconds(log).values()) / 60
    threads = os.environ["OMP_NUM_THREADS"]
    fragment = Path(__file__).parent / "optimisation-features.md"  # scripts/feature_study.py
    features = fragment.read_text() + "\n" if fragment.is_file() else ""
    page = f"""# Instance optimisation against elastix and the learned models

Regenerated by `.venv/bin/python scripts/optimise_study.py` (its evaluations took
{minutes:.0f} min, logged in `runs/optimisation/commands.log`; finished evaluations are
reused). Held-out pairs of [the reproduction](reproduction.md): ISBI 25:30 (4 pairs) and
T98G 20:24 (3 pairs), each scored in one `deepsim evaluate` with every row, with
{threads} torch thread(s) on a 2-core CPU ({machine}; elastix with ITK's default, every
core); other jobs may have shared the machine, so compare the seconds within a table.
Rows: `opt-METRIC` optimises each pair from the identity (an affine stage on the coarse
levels, then a B-spline grid every 8 pixels on 4 pyramid levels, 100/50/25/5 Adam
steps); `opt-deepsim` uses the built-in feature extractor alone (no registration
network; `--optimise deepsim` runs `deepsim-seg+ncc`, its row `opt-deepsim-seg+ncc`, while
`MODEL+deepsim` refines with the feature cosine of training); the built-in model is
`{BUILTIN["isbi"]}` / `{BUILTIN["t98g"]}`, and `MODEL+METRIC` refines its prediction
(in a second run per table, so its seconds compare with that run's elastix row; the
scatter plots put the refinement rows beside the first run's).

{chr(10).join(sections)}
{features}{(Path(__file__).parent / "optimisation-discussion.md").read_text()}"""
    (ROOT / "docs" / "optimisation.md").write_text(page)
    print(f"wrote {ROOT / 'docs' / 'optimisation.md'}")


if __name__ == "__main__":
    main()
