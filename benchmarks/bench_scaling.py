"""Scaling: time and peak memory as the image grows, 2D 256² to 2048², 3D 64³ to 192³.

Registration network with channels 32,64,128 (the trained models' architecture), on the
t98g pair (2D) and the brain pair (3D) resampled to each size. Two workloads per size,
each in a fresh process: registering one pair (forward pass and warp; median of the
repeats after a small warm-up) and one training step with NCC, batch 1 (the first step
is the warm-up where two steps run; above 2 million voxels one step is timed alone).
Training stops at 1024² and 128³ to keep the run short; the 3D memory benchmark covers
a full-size 3D step.
"""

from __future__ import annotations

import math

from benchmarks.common import ROOT, run_isolated, save, table

CHANNELS = [32, 64, 128]
SIZES = {2: (256, 512, 1024, 2048), 3: (64, 96, 128, 160, 192)}
TRAIN_MAX = {2: 1024, 3: 128}
LARGE = 2_000_000  # voxels from which a single repeat is timed
PLOT = ROOT / "docs" / "benchmarks_scaling.png"


def _row(ndim: int, side: int, workload: str) -> dict:
    size = [side] * ndim
    voxels = math.prod(size)
    if workload == "inference":
        repeats = 1 if voxels >= LARGE else 3
        result = run_isolated(
            "benchmarks.workloads:inference",
            ndim=ndim,
            size=size,
            channels=CHANNELS,
            repeats=repeats,
        )
        seconds = result["median_s"]
    else:
        result = run_isolated(
            "benchmarks.workloads:training_step",
            metric="ncc",
            ndim=ndim,
            batch=1,
            channels=CHANNELS,
            steps=1 if voxels >= LARGE else 2,
            size=size,
        )
        seconds = result["step_s"]
    return {
        "workload": f"{ndim}D {workload}",
        "size": "×".join(map(str, size)),
        "voxels": voxels,
        "seconds": seconds,
        "us_per_voxel": 1e6 * seconds / voxels,
        **{k: result[k] for k in ("peak_rss_mib", "added_mib", "load")},
    }


def run() -> dict:
    rows = []
    for ndim, sizes in SIZES.items():
        for side in sizes:
            rows.append(_row(ndim, side, "inference"))
            if side <= TRAIN_MAX[ndim]:
                rows.append(_row(ndim, side, "training step"))
            print(table(rows[-2:], COLUMNS), flush=True)
    record = save("scaling", rows)
    plot(rows)
    print(table(rows, COLUMNS))
    return record


def plot(rows: list[dict]) -> None:
    """Log-log plot of seconds and added memory against voxels, one line per workload."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for workload in dict.fromkeys(r["workload"] for r in rows):
        mine = [r for r in rows if r["workload"] == workload]
        voxels = [r["voxels"] for r in mine]
        style = "-o" if workload.startswith("2D") else "--s"
        axes[0].loglog(voxels, [r["seconds"] for r in mine], style, label=workload)
        axes[1].loglog(voxels, [r["added_mib"] for r in mine], style, label=workload)
    axes[0].set_ylabel("seconds")
    axes[1].set_ylabel("memory added by the work, MiB")
    for axis in axes:
        axis.set_xlabel("voxels")
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    figure.suptitle("Registration network (channels 32,64,128) on this CPU")
    PLOT.parent.mkdir(exist_ok=True)
    figure.savefig(PLOT, dpi=100)


COLUMNS = [
    ("workload", "workload"),
    ("size", "size"),
    ("voxels", "voxels"),
    ("seconds", "seconds"),
    ("us_per_voxel", "µs per voxel"),
    ("added_mib", "added, MiB"),
    ("peak_rss_mib", "peak RSS, MiB"),
    ("load", "load"),
]

if __name__ == "__main__":
    run()
