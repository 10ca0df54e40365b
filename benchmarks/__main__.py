"""Run every benchmark and write ``docs/benchmarks.md``: ``python -m benchmarks``.

Each benchmark prints its table as it finishes and records its results with the
machine's description in ``benchmarks/results/<name>.json`` (and appends them to
``results/history.jsonl``); the page is then rendered from those files. ``--only``
runs some benchmarks and renders the page from their new results and the others'
recorded ones; ``--render`` only renders. Set ``OMP_NUM_THREADS`` to change torch's
thread count (recorded with the results).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import render
from benchmarks.common import load, save


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    names = list(render.BENCHMARKS)
    parser.add_argument("--only", nargs="+", choices=names, help="run only these benchmarks")
    parser.add_argument("--render", action="store_true", help="only render docs/benchmarks.md")
    parser.add_argument("--isbi-model", type=Path, help="default ../runs/isbi/deepsim.pt")
    parser.add_argument("--t98g-model", type=Path, help="default ../runs/t98g/deepsim.pt")
    args = parser.parse_args()
    runs = {name: module.run for name, module in render.BENCHMARKS.items()}
    runs["registration"] = lambda: render.bench_registration.run(args.isbi_model, args.t98g_model)
    runs["series"] = lambda: render.bench_series.run(args.t98g_model)
    start = time.perf_counter()
    durations = {}
    for name in [] if args.render else args.only or names:
        print(f"\n## {name} (load average {load()})", flush=True)
        began = time.perf_counter()
        runs[name]()
        durations[name] = time.perf_counter() - began
        print(f"{name}: {durations[name]:.0f} s", flush=True)
    if durations:
        save("run", [{"benchmark": k, "seconds": v} for k, v in durations.items()])
    print(f"\nall: {time.perf_counter() - start:.0f} s; wrote {render.render()}")


if __name__ == "__main__":
    main()
