"""Big stacks: a series registered into an OME-Zarr store, in one process and on Dask.

The stacks are made from a real frame by known deformations: the central 256² crop of
ISBI 2012 section 0, every frame warped by its own smooth displacement (two sine modes,
up to 2 pixels), written to an OME-Zarr store and read back one frame at a time.
``register_stack_to_store`` registers them with the built-in ``em-2d`` model (16-32-64
U-Net) onto their predecessors (``--reference previous``, composed to frame 0) and writes
the warped frames, fields, Jacobians and metrics as it goes. Each run is a fresh process
(its peak RSS is that process's; on a cluster, the client's, workers apart) with one
torch thread; cluster workers are processes with one thread each.
"""

from __future__ import annotations

import argparse
import os
import signal
import tempfile
import time
from pathlib import Path
from typing import Any

import distributed
import numpy as np

from benchmarks.common import DATA, load, run_isolated, save, start_peak, table

SIZE = 256
LENGTHS = (100, 500, 2000)
THROUGHPUT_FRAMES = 120
KILL_FRAMES = 120
MODES = ("single process", "local:1", "local:2")


def make_stack(path: Path, frames: int, size: int = SIZE) -> Path:
    """Write ``frames`` deformed copies of an ISBI section as an OME-Zarr stack."""
    import torch
    import zarr
    from PIL import Image

    from src_training.data.seriesstore import image_group
    from src_training.spatial.transforms import warp

    section = np.asarray(Image.open(DATA / "isbi2012_em" / "images" / "00.png"), np.float32)
    start = (section.shape[0] - size) // 2
    base = torch.as_tensor(section[start : start + size, start : start + size])[None, None]
    grid = np.mgrid[0:size, 0:size] * (2 * np.pi / size)
    rng = np.random.default_rng(0)
    root = zarr.open_group(str(path), mode="w", zarr_format=2)
    array = image_group(root, "stack", (frames, size, size), "tyx", (1.0, 1.0))
    for t in range(frames):
        phase, amp = rng.uniform(0, 2 * np.pi, (2, 2)), rng.uniform(-2, 2, 2)
        disp = np.stack([amp[k] * np.sin(grid[k] + phase[k, 0] + grid[1 - k]) for k in (0, 1)])
        array[t] = warp(base, torch.as_tensor(disp, dtype=torch.float32)[None])[0, 0].numpy()
    return path


def register(frames: int, cluster: str | None = None) -> dict[str, Any]:
    """Register a fresh stack of ``frames`` frames into a store (in a fresh process)."""
    import torch

    from src_training.data.lazy import open_stack
    from src_training.engine.cluster import connect
    from src_training.engine.registration import load_registration_model, run_to_end
    from src_training.engine.stored import register_stack_to_store

    torch.set_num_threads(1)
    model = load_registration_model("em-2d")
    with tempfile.TemporaryDirectory() as tmp:
        source = open_stack(make_stack(Path(tmp) / "in.zarr", frames))
        began = time.perf_counter()
        client = None if cluster is None else connect(cluster)
        startup = time.perf_counter() - began
        rss_before = start_peak()
        job = register_stack_to_store(
            model, source, "previous", Path(tmp) / "out.zarr", cluster=client, batch_size=1
        )
        result = run_to_end(job)
        if client is not None:
            client.close()
            client.cluster.close()
    return {
        "frames": frames,
        "mode": cluster or "single process",
        "startup_s": startup,
        "seconds": result.seconds,
        "frames_per_s": frames / result.seconds,
        "load": load(),
        "rss_before_mib": rss_before,
    }


def killed(frames: int = KILL_FRAMES) -> dict[str, Any]:
    """Kill one of two workers halfway; count frames lost, duplicated and recomputed."""
    import zarr

    from src_training.data.lazy import open_stack
    from src_training.engine.registration import load_registration_model, run_to_end
    from src_training.engine.stored import register_stack_to_store

    model = load_registration_model("em-2d")
    with tempfile.TemporaryDirectory() as tmp:
        source = make_stack(Path(tmp) / "in.zarr", frames)
        log = Path(tmp) / "starts.log"
        cluster = distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed.Client(cluster)
        client.register_plugin(StartLog(log))
        pids = client.run(os.getpid)
        state: dict[str, Any] = {"killed": None}

        def kill_halfway(event: Any) -> None:
            if state["killed"] is not None or event.done < frames // 2:
                return
            # a task's result waiting on its worker is lost with it, as a running task is
            held = client.has_what()
            hands = {
                w: [k for k in (*keys, *held.get(w, ())) if str(k).startswith("pair_fields")]
                for w, keys in client.processing().items()
            }
            state["killed"] = max(hands, key=lambda w: len(hands[w]))
            state["in_hand"] = len(hands[state["killed"]])
            os.kill(pids[state["killed"]], signal.SIGKILL)

        out = Path(tmp) / "out.zarr"
        rss_before = start_peak()
        job = register_stack_to_store(
            model, open_stack(source), "previous", out, cluster=client, batch_size=1
        )
        result = run_to_end(job, kill_halfway)
        client.close()
        cluster.close()
        done = zarr.open_group(str(out), mode="r")["done"][:]
        keys = [line.split()[1] for line in log.read_text().splitlines()]
    return {
        "frames": frames,
        "tasks_in_hand": state.get("in_hand", 0),
        "lost": int((done == 0).sum()),
        "duplicated": result.written - frames,
        "recomputed": len(keys) - len(set(keys)),
        "seconds": result.seconds,
        "load": load(),
        "rss_before_mib": rss_before,
    }


class StartLog(distributed.WorkerPlugin):
    """A Dask worker plugin appending ``worker key`` to a file as each task starts.

    ``pause`` seconds after each start stand for a heavier model (the tests use it so
    that a worker killed while the client writes frames has a task in its hands).
    """

    def __init__(self, path: Path, pause: float = 0.0) -> None:
        self.path = str(path)
        self.pause = pause
        self.worker = ""

    def setup(self, worker: Any) -> None:
        self.worker = worker.address

    def transition(self, key: Any, start: str, finish: str, **kwargs: Any) -> None:
        if finish == "executing":
            with open(self.path, "a") as log:
                log.write(f"{self.worker} {key}\n")
            time.sleep(self.pause)


def run() -> dict:
    target = "benchmarks.bench_bigstacks:register"
    memory = [run_isolated(target, frames=n) for n in LENGTHS]
    print(table(memory, MEMORY_COLUMNS), flush=True)
    throughput = [
        run_isolated(target, frames=THROUGHPUT_FRAMES, cluster=None if m == MODES[0] else m)
        for m in MODES
    ]
    print(table(throughput, THROUGHPUT_COLUMNS), flush=True)
    fault = [run_isolated("benchmarks.bench_bigstacks:killed")]
    print(table(fault, FAULT_COLUMNS), flush=True)
    return save("bigstacks", memory, throughput=throughput, fault=fault, size=SIZE)


MEMORY_COLUMNS = [
    ("frames", "frames"),
    ("seconds", "s"),
    ("frames_per_s", "frames/s"),
    ("peak_rss_mib", "peak RSS, MiB"),
    ("added_mib", "added, MiB"),
    ("load", "load"),
]
THROUGHPUT_COLUMNS = [
    ("mode", "path"),
    ("frames", "frames"),
    ("startup_s", "cluster start, s"),
    ("seconds", "s registering"),
    ("frames_per_s", "frames/s"),
    ("peak_rss_mib", "client peak RSS, MiB"),
    ("load", "load"),
]
FAULT_COLUMNS = [
    ("frames", "frames"),
    ("tasks_in_hand", "tasks running or held on the killed worker"),
    ("lost", "frames lost"),
    ("duplicated", "frames written twice"),
    ("recomputed", "tasks run again"),
    ("seconds", "s"),
    ("load", "load"),
]


def section(record: dict[str, Any]) -> tuple[str, list[dict[str, str]]]:
    """The page's section on big stacks, and its rows of the targets' table."""
    memory, speed, fault = record["rows"], record["throughput"], record["fault"][0]
    first, last = memory[0], memory[-1]
    growth = last["peak_rss_mib"] / first["peak_rss_mib"] - 1
    rate = {r["mode"]: r["frames_per_s"] for r in speed}
    two = rate["local:2"] / rate["local:1"]
    cost = 1 - rate["local:1"] / rate["single process"]
    text = f"""## 10. Big stacks: OME-Zarr out, resumable, on Dask

{__doc__.split(chr(10), 1)[1].strip()}

Sizes: {", ".join(str(n) for n in LENGTHS)} frames of {record["size"]}² (the issue's
target is 100, 500 and 2000 frames of 1024²; those were not measured on this shared
2-core machine, whose load average stayed far above its core count).

Peak memory against the series' length (single process):

{table(memory, MEMORY_COLUMNS)}

Throughput, {THROUGHPUT_FRAMES} frames: the single-process path, then 1 and 2 Dask
workers (the cluster's start is timed apart):

{table(speed, THROUGHPUT_COLUMNS)}

A worker killed (SIGKILL) halfway through a run on 2 workers, {fault["frames"]} frames:
Dask runs the killed worker's tasks again on the other worker (and on the one its nanny
restarts); the client writes each frame once, when its result arrives. The model
travels in a task of its own, not as scattered data: Dask's memory manager keeps one copy
of scattered data, and when the killed worker held that copy every remaining task was
cancelled (the test of this failed about 2 runs in 5 until the change; it now kills the
model's holder on purpose and passed 12 of 12).

{table([fault], FAULT_COLUMNS)}

On two cores shared with other jobs, two one-thread workers compete with the client
(which reads, warps and writes every frame) and with the machine's other load, so the
second worker's gain here says little about a machine with free cores.
"""
    targets = [
        _target(
            f"peak memory flat: {last['frames']} frames within 10 % of {first['frames']}",
            f"{growth:+.1%}",
            growth <= 0.10,
        ),
        _target("2 workers ≥ 1.7× one worker", f"{two:.2f}×", two >= 1.7),
        _target("cluster ≤ 10 % slower than one process", f"{cost:+.0%}", cost <= 0.10),
        _target(
            "a killed worker loses no frame, none written twice",
            f"{fault['lost']} lost, {fault['duplicated']} twice, {fault['recomputed']} rerun",
            fault["lost"] == fault["duplicated"] == 0,
        ),
    ]
    return text, targets


def _target(target: str, measured: str, met: bool) -> dict[str, str]:
    verdict = "**met**" if met else "**not met**"
    return {
        "benchmark": "10. big stacks",
        "target": target,
        "measured": measured,
        "verdict": verdict,
    }


if __name__ == "__main__":
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    run()
