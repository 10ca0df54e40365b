"""Time-series throughput: the 24-frame 1022x1024 t98g_phase stack registered to frame 0.

``registration.register_series`` with the trained t98g model: every frame goes through
the network against the reference frame (batched ``batch_size`` frames per forward
pass, under ``torch.inference_mode``), then all frames are warped. Each batch size runs
in a fresh process (for its peak memory), after a warm-up pair of frames.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.common import RUNS, load, run_isolated, save, start_peak, table

BATCH_SIZES = (1, 8)  # 8: the CLI default of --batch-size


def series(model: str, batch_size: int) -> dict:
    """Register the whole stack to frame 0 with one batch size (run in a fresh process)."""
    from benchmarks import data
    from src_training.networks.modelio import load_model
    from src_training.registration.inference import register_series

    frames = data.t98g().images
    network = load_model(model).network
    register_series(network, frames[:2], 0, batch_size=batch_size)  # warm-up
    rss_before = start_peak()
    start = time.perf_counter()
    register_series(network, frames, 0, batch_size=batch_size)
    seconds = time.perf_counter() - start
    return {
        "frames": int(frames.shape[0]),
        "seconds": seconds,
        "frames_per_s": frames.shape[0] / seconds,
        "load": load(),
        "rss_before_mib": rss_before,
    }


def run(model: Path | None = None) -> dict:
    path = str(model or RUNS / "t98g" / "deepsim.pt")
    target = "benchmarks.bench_series:series"
    rows = [
        {"batch_size": b, **run_isolated(target, model=path, batch_size=b)} for b in BATCH_SIZES
    ]
    record = save("series", rows, model=path)
    print(table(rows, COLUMNS))
    return record


COLUMNS = [
    ("batch_size", "frames per forward pass"),
    ("frames", "frames"),
    ("seconds", "s for the stack"),
    ("frames_per_s", "frames/s"),
    ("added_mib", "memory added, MiB"),
    ("peak_rss_mib", "peak RSS, MiB"),
    ("load", "load"),
]

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="default ../runs/t98g/deepsim.pt")
    run(parser.parse_args().model)
