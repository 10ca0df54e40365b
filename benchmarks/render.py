"""Render ``docs/benchmarks.md`` from the recorded results in ``benchmarks/results/``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from benchmarks import (
    bench_bigstack_layer,
    bench_bigstacks,
    bench_gui_gap,
    bench_memory3d,
    bench_ncc,
    bench_registration,
    bench_scaling,
    bench_series,
    bench_train_path,
    bench_train_step,
    sections,
)
from benchmarks.common import RESULTS, ROOT, table
from benchmarks.sections import loads

PAGE = ROOT / "docs" / "benchmarks.md"
OPTIMISATION = """
## 7. Instance optimisation: time against Dice

Per-pair optimisation (no network, or refining a built-in model) beside identity,
elastix (red star) and the built-in models on the held-out ISBI pairs, every method a
point; the tables, the noisy pairs and T98G are in [optimisation.md](optimisation.md),
written by `scripts/optimise_study.py` (it runs `deepsim evaluate`, not this module).

![seconds per pair against Dice, clean](optimisation/time_vs_dice_noise0.png)
"""
AFTER_OPTIMISATION = {"train_path"}  # section 8 follows the optimisation's section 7
BENCHMARKS = {
    "ncc": bench_ncc,
    "train_step": bench_train_step,
    "registration": bench_registration,
    "series": bench_series,
    "memory3d": bench_memory3d,
    "scaling": bench_scaling,
    "train_path": bench_train_path,
    "gui_gap": bench_gui_gap,
    "bigstacks": bench_bigstacks,
    "bigstack_layer": bench_bigstack_layer,
}


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _machine(records: dict[str, dict[str, Any]]) -> str:
    rows = []
    for name, record in records.items():
        m = record["machine"]
        rows.append(
            {
                "benchmark": name,
                "date": m["date"],
                "cpu": m["cpu"],
                "cores": m["cores"],
                "ram": f"{m['ram_gib']} GiB",
                "torch": m["torch"],
                "threads": m["threads"],
                "gpu": m["gpu"],
                "commit": m["commit"],
                "load": loads(record),
            }
        )
    columns = [
        ("benchmark", "benchmark"),
        ("date", "date (UTC)"),
        ("cpu", "CPU"),
        ("cores", "cores"),
        ("ram", "RAM"),
        ("torch", "torch"),
        ("threads", "torch threads"),
        ("gpu", "GPU"),
        ("commit", "commit"),
        ("load", "load average (1 min)"),
    ]
    return table(rows, columns)


def render() -> Path:
    """Write ``docs/benchmarks.md`` from the recorded results; return its path."""
    writers = {
        "ncc": sections.ncc,
        "train_step": sections.train_step,
        "registration": sections.registration,
        "series": sections.series,
        "memory3d": sections.memory3d,
        "scaling": sections.scaling,
        "train_path": sections.train_path,
        "gui_gap": bench_gui_gap.section,
        "bigstacks": bench_bigstacks.section,
        "bigstack_layer": bench_bigstack_layer.section,
    }
    records = {name: record for name in BENCHMARKS if (record := _load(name)) is not None}
    texts, later, targets = [], [], []
    for name, record in records.items():
        text, target = writers[name](record)
        (later if name in AFTER_OPTIMISATION else texts).append(text)
        targets += target
    run = _load("run")
    duration = ""
    if run is not None:
        total = sum(r["seconds"] for r in run["rows"])
        parts = ", ".join(f"{r['benchmark']} {r['seconds'] / 60:.1f}" for r in run["rows"])
        duration = f" The last run took {total / 60:.1f} minutes ({parts})."
    target_columns = [
        ("benchmark", "benchmark"),
        ("target", "target"),
        ("measured", "measured"),
        ("verdict", "verdict"),
    ]
    page = f"""# Benchmarks

Every benchmark runs from one command, in the repository root, with the `bench` extra
installed (`pip install -e .[bench]`: MONAI, itk-elastix, matplotlib):

```
.venv/bin/python -m benchmarks
```

It prints each table against its anchor as it goes, records the results with the
machine's description in `benchmarks/results/*.json` (appending to
`results/history.jsonl`) and writes this page from them (`--only NAME` reruns some,
`--render` only rewrites the page).{duration} Data: `../shared/data` (never copied
into the repository); trained models: `../runs`.

## How it measures

- **Time**: `time.perf_counter` around the call after warm-up, median of the repeats
  (the repeats column says how many; the largest 3D cases run once, to keep the whole
  run near 20 minutes).
- **Memory on the CPU**: `tracemalloc` does not see torch's allocations. Each memory
  measurement runs in a fresh Python process. Just before the measured work it resets
  the kernel's peak resident set size (writing 5 to `/proc/self/clear_refs`); after
  the work, "peak RSS" is that peak (`VmHWM`, the counter `getrusage`'s `ru_maxrss`
  reports, but without the transient peaks of loading the data) and "added" is the
  peak minus the resident size just before the work, which already holds Python,
  torch, the model and the data. A warm-up on a tiny input first starts the
  libraries, so that "added" is the work's own memory.
- **Load**: the 1-minute load average is recorded with every result. The benchmark's
  own two torch threads make it about 2; with more runnable processes than the two
  cores (other jobs), torch's OpenMP threads wait for each other and timings can
  double. The recorded run had the machine to itself. The rows of one table were
  measured in the same run.
- **GPU**: none on this machine; no GPU number was measured. The GPU check is prepared:
  `python -m benchmarks.gpu` on a machine with one GPU (about 6 minutes) records
  inference, series, 3D training memory, the data wait and a time-boxed training with
  the device's name in `benchmarks/results/gpu.json`; `--smoke` runs it at tiny sizes
  on any device (the test suite does).

## Machine

{_machine(records)}

## Targets

{table(targets, target_columns)}

{chr(10).join(texts)}
{OPTIMISATION}
{chr(10).join(later)}"""
    PAGE.write_text(page)
    return PAGE
