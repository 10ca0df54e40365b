"""The README's results table, generated from a results file so the page cannot drift.

``collect`` picks, from the ``summary.csv`` of ``deepsim evaluate`` runs on the held-out
pairs, the rows the front page shows per dataset and noise level: the identity, elastix,
ANTs SyN, the best training-free optimisation (``opt-*``), the built-in model and its best
refinement (``MODEL+*``). It writes them to ``docs/results/heldout.csv``. ``render``
rewrites the block between the ``results`` markers of README.md from that file;
``tests/project/test_front_page.py`` checks that the README holds exactly what ``render`` makes.
Usage::

    .venv/bin/python scripts/front_page.py collect isbi:0:runs/a/summary.csv ...
    .venv/bin/python scripts/front_page.py render
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results" / "heldout.csv"
README = ROOT / "README.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"
BUILTIN = {"isbi": "em-2d", "t98g": "phase-contrast-2d"}
DATASETS = {
    "isbi": "ISBI 2012 EM, pairs 25:30 (512²)",
    "t98g": "T98G phase contrast, pairs 20:24 (1022×1024)",
}
KINDS = ("identity", "elastix", "ANTs SyN", "best training-free", "built-in model", "refined")
FIELDS = ("dataset", "noise", "kind", "method", "dice", "dice_sd", "folding", "seconds")


def _pick(rows: list[dict[str, str]], dataset: str) -> dict[str, dict[str, str]]:
    """Pick the row of each kind among one evaluation's summary rows (absent kinds left out)."""
    builtin = BUILTIN[dataset]

    def best(names: list[str]) -> dict[str, str] | None:
        chosen = [r for r in rows if r["model"] in names]
        return max(chosen, key=lambda r: float(r["dice"])) if chosen else None

    names = [r["model"] for r in rows]
    found = {
        "identity": best(["identity"]),
        "elastix": best([n for n in names if n.startswith("elastix")]),
        "ANTs SyN": best([n for n in names if n.startswith("ants")]),
        "best training-free": best([n for n in names if n.startswith("opt-")]),
        "built-in model": best([builtin]),
        "refined": best([n for n in names if n.startswith(f"{builtin}+")]),
    }
    return {kind: row for kind, row in found.items() if row is not None}


def collect(sources: list[str]) -> None:
    """Write the front page's rows from ``DATASET:NOISE:SUMMARY.csv`` sources."""
    picked: dict[tuple[str, str], dict[str, dict[str, str]]] = {}
    for source in sources:
        dataset, noise, path = source.split(":", 2)
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
        picked.setdefault((dataset, noise), {}).update(_pick(rows, dataset))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for (dataset, noise), kinds in picked.items():
            for kind in KINDS:
                if kind in kinds:
                    row = kinds[kind]
                    values = ("model", "dice", "dice_sd", "folding_percent", "seconds_per_pair")
                    writer.writerow([dataset, noise, kind, *(row[key] for key in values)])


def render_table(rows: list[dict[str, str]]) -> str:
    """Format the front page's rows as a Markdown table, one block per dataset and noise."""
    lines = [
        "| data (held-out pairs) | noise σ | row | method | Dice ± sd | folding % | s/pair |",
        "|---|---|---|---|---|---|---|",
    ]
    previous = None
    for row in rows:
        group = (row["dataset"], row["noise"])
        data = f"{DATASETS[row['dataset']]}" if group != previous else ""
        noise = row["noise"] if group != previous else ""
        previous = group
        dice = f"{float(row['dice']):.3f} ± {float(row['dice_sd']):.3f}"
        lines.append(
            f"| {data} | {noise} | {row['kind']} | `{row['method']}` | {dice} | "
            f"{float(row['folding']):.2f} | {float(row['seconds']):.1f} |"
        )
    return "\n".join(lines)


def rendered_readme(readme: str, rows: list[dict[str, str]]) -> str:
    """Return the README with its results block replaced by :func:`render_table` of ``rows``."""
    head, _, rest = readme.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{render_table(rows)}\n{END}{tail}"


def read_results(path: Path = RESULTS) -> list[dict[str, str]]:
    """Read the rows of the results file."""
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def main() -> None:
    """Parse the command line and run ``collect`` or ``render``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("collect").add_argument("sources", nargs="+", metavar="DATASET:NOISE:CSV")
    sub.add_parser("render")
    args = parser.parse_args()
    if args.command == "collect":
        collect(args.sources)
    README.write_text(rendered_readme(README.read_text(), read_results()))


if __name__ == "__main__":
    main()
