"""A napari layer larger than memory, registered by the Big stack dock's job into a store.

The layer is a napari ``Image`` over a dask array that makes each frame only when it is
read: ISBI 2012 section 0 scaled up to the frame size, warped by the frame's own smooth
displacement (two sine modes, up to 8 pixels). Materialised, the stack would take
``frames × size² × 4`` bytes. The job the dock runs in its worker
(:func:`napari_deepsim._jobs.bigstack.run_store`, the built-in ``em-2d`` model, every
frame onto frame 0, one frame per forward pass, one torch thread) registers it into an
OME-Zarr store in a fresh process, whose peak resident memory is measured: for the whole
layer and for its first 20 frames, so that what one frame costs (the network's
activations at full resolution) is told apart from what grows with the stack.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import DATA, load, run_isolated, save, start_peak, table

FRAMES, SIZE = 500, 2048
SHORT = 20  # the same layer cut short: what the resident memory owes to one frame
LIMIT_GIB = 2.0


def lazy_layer(frames: int, size: int) -> Any:
    """Return a napari Image layer whose dask data makes each frame when it is read."""
    import dask.array as da
    import torch
    from napari.layers import Image
    from PIL import Image as Picture

    from src_training.spatial.transforms import warp

    section = np.asarray(Picture.open(DATA / "isbi2012_em" / "images" / "00.png"), np.float32)
    base = torch.nn.functional.interpolate(
        torch.as_tensor(section)[None, None], size=(size, size), mode="bilinear"
    )
    grid = np.mgrid[0:size, 0:size] * (2 * np.pi / size)

    def frame(block_info: dict | None = None) -> np.ndarray:
        t = block_info[None]["chunk-location"][0]
        rng = np.random.default_rng(t)
        phase, amp = rng.uniform(0, 2 * np.pi, (2, 2)), rng.uniform(-8, 8, 2)
        disp = np.stack([amp[k] * np.sin(grid[k] + phase[k, 0] + grid[1 - k]) for k in (0, 1)])
        moved = warp(base, torch.as_tensor(disp, dtype=torch.float32)[None])
        return moved[0].numpy()

    chunks = ((1,) * frames, (size,), (size,))
    return Image(da.map_blocks(frame, chunks=chunks, dtype=np.float32), name="big stack")


def register_layer(frames: int = FRAMES, size: int = SIZE) -> dict[str, Any]:
    """Register the lazy layer into a store through the dock's job (in a fresh process)."""
    import torch

    from napari_deepsim._jobs.bigstack import StoreJob, run_store
    from src_training.engine.registration import run_to_end

    torch.set_num_threads(1)
    layer = lazy_layer(frames, size)
    with tempfile.TemporaryDirectory() as tmp:
        job = StoreJob(
            frames=layer.data,
            name=layer.name,
            model="em-2d",
            reference=0,
            out=Path(tmp) / "out.zarr",
            resume=False,
            cluster=None,
            device="cpu",
            batch_size=1,
            spacing=(1.0, 1.0),
        )
        rss_before = start_peak()
        began = time.perf_counter()
        result = run_to_end(run_store(job))
        seconds = time.perf_counter() - began
    return {
        "frames": frames,
        "size": size,
        "materialised_gib": frames * size * size * 4 / 2**30,
        "written": len(result.done),
        "seconds": seconds,
        "frames_per_s": frames / seconds,
        "load": load(),
        "rss_before_mib": rss_before,
    }


def run() -> dict:
    rows = [
        run_isolated(
            "benchmarks.bench_bigstack_layer:register_layer", timeout=4 * 3600, frames=frames
        )
        for frames in (SHORT, FRAMES)
    ]
    print(table(rows, COLUMNS), flush=True)
    return save("bigstack_layer", rows)


COLUMNS = [
    ("frames", "frames"),
    ("size", "frame side"),
    ("materialised_gib", "whole stack, GiB"),
    ("written", "frames written"),
    ("seconds", "s"),
    ("frames_per_s", "frames/s"),
    ("peak_rss_mib", "peak RSS, MiB"),
    ("load", "load"),
]


def section(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """The page's section on the napari layer, and its row of the targets' table."""
    row, first = record["rows"][-1], record["rows"][0]
    peak = row["peak_rss_mib"] / 1024
    growth = row["peak_rss_mib"] / first["peak_rss_mib"] - 1
    text = f"""## 11. A napari layer larger than memory

{__doc__.split(chr(10), 1)[1].strip()}

{table(record["rows"], COLUMNS)}

From {first["frames"]} to {row["frames"]} frames the peak grew by {growth:+.1%}: what the
process holds is one frame's work (the network's activations for a {row["size"]}² pair,
its field, Jacobian and warped frame), not the stack. The load column is the load when a
run ended; other jobs shared the CPU for most of the long run, so its seconds say little.
"""
    target = {
        "benchmark": "11. big napari layer",
        "target": f"{FRAMES} frames of {SIZE}² (dask layer) under {LIMIT_GIB:g} GiB resident",
        "measured": f"{peak:.2f} GiB for {row['frames']} frames of {row['size']}²",
        "verdict": "**met**"
        if peak < LIMIT_GIB and row["written"] == row["frames"] == FRAMES and row["size"] == SIZE
        else "**not met**",
    }
    return text, [target]


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    run()
