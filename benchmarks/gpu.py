"""The prepared GPU check: ``python -m benchmarks.gpu`` on a machine with one GPU.

One command, about 6 minutes on one GPU (under 8 with elastix and the data loading),
that records in ``benchmarks/results/gpu.json`` (and ``results/history.jsonl``), with
the device's name:

1. inference seconds per pair (host images in, field and warped image back on the
   host) at 512² (ISBI 2012 EM), 1022×1024 (T98G) and 160×192×224 (brain → MNI152),
   in fp32 and bf16, U-Net channels 64,128,256 (untrained: the time does not depend
   on the weights), beside elastix's default B-spline on the CPU on the same pairs;
2. series frames per second (``register_series`` of the 24 T98G frames, batches of 8);
3. a 3D training step at 160×192×224, batch 1, channels 64,128,256, with its peak GPU
   memory, in fp32, bf16, with activation checkpointing, and both;
4. the share of a 2D training step (ISBI, batch 4, crop 256) spent waiting for data;
5. a time-boxed training on ISBI sections 0-24 at the paper's channels: a feature
   extractor, then a DeepSim and an NCC model, scored by validation Dice on sections
   25-29 (consecutive pairs), beside the identity.

``--smoke`` runs every measurement at tiny sizes on the built-in synthetic sample (no
data needed, no elastix) in well under a minute on a CPU; the test suite runs it.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from benchmarks import gpu_checks as checks
from benchmarks.common import RESULTS, machine
from src_training.data.datasets import Dataset
from src_training.networks.models import RegistrationNet
from src_training.runtime.devices import resolve_device

PAPER_CHANNELS = (64, 128, 256)
VARIANTS_3D = ("fp32", "bf16", "checkpointing", "checkpointing+bf16")


def _full_inputs() -> dict[str, Any]:
    """The real data of the full check (``../shared/data``)."""
    from benchmarks import data

    isbi, t98g = data.isbi(), data.t98g()
    return {
        "pairs": {
            "2D 512² isbi2012_em": (isbi.images[26:27], isbi.images[25:26]),
            "2D 1022×1024 t98g_phase": (t98g.images[21:22], t98g.images[20:21]),
            "3D 160×192×224 brain_mri_3d → MNI152": data.brain_pair(),
        },
        "series": t98g.images,
        "train": isbi.subset(range(25)),
        "val": isbi.subset(range(25, 30)),
        "channels": PAPER_CHANNELS,
        "crop": 256,
        "repeats": 5,
        "steps": 20,
    }


def _smoke_inputs() -> dict[str, Any]:
    """Tiny inputs from the built-in sample: no data folder needed."""
    from src_training.engine.demo import sample_dataset

    sample = sample_dataset()
    generator = np.random.default_rng(0)
    volume = ndimage.gaussian_filter(generator.random((2, 16, 20, 24)), 2).astype(np.float32)
    volume = (volume - volume.mean()) / volume.std()
    images = sample.images
    return {
        "pairs": {
            "2D 64² sample": (images[1:2, :, :64, :64], images[0:1, :, :64, :64]),
            "2D 64×72 sample": (images[1:2, :, :64, :72], images[0:1, :, :64, :72]),
            "3D 16×20×24 synthetic": (volume[None, 0:1], volume[None, 1:2]),
        },
        "series": images[:, :, :64, :64],
        "train": sample.subset(range(6)),
        "val": sample.subset(range(5, 8)),
        "channels": (4, 8),
        "crop": 32,
        "repeats": 2,
        "steps": 2,
    }


def run(
    smoke: bool, device: torch.device, boxes: tuple[float, float], echo: Any = print
) -> dict[str, Any]:
    """Run every measurement and return the record (see the module docstring)."""
    begin = time.perf_counter()
    inputs = _smoke_inputs() if smoke else _full_inputs()
    channels = inputs["channels"]
    record: dict[str, Any] = {
        "benchmark": "gpu_smoke" if smoke else "gpu",
        "machine": machine(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "smoke": smoke,
        "inference": [],
        "train3d": [],
    }
    for case, (moving, fixed) in inputs["pairs"].items():
        torch.manual_seed(0)
        network = RegistrationNet(moving.ndim - 2, channels=channels)
        row = {
            "case": case,
            "elastix_cpu_s": None if smoke else checks.elastix_seconds(moving, fixed),
        }
        for precision in ("fp32", "bf16"):
            row[f"{precision}_s"] = checks.inference(
                network, moving, fixed, device, precision, inputs["repeats"]
            )
        record["inference"].append(row)
        echo(f"inference {case}: {row}")
    torch.manual_seed(0)
    network = RegistrationNet(2, channels=channels)
    record["series"] = {
        "frames": len(inputs["series"]),
        "frames_per_s": checks.series_frames_per_second(network, inputs["series"], device, "auto"),
    }
    echo(f"series: {record['series']}")
    volume = checks.pair_dataset(*list(inputs["pairs"].values())[-1])
    for variant in VARIANTS_3D:
        row = checks.training_step_3d(volume, channels, device, variant, steps=2)
        record["train3d"].append({"size": "×".join(map(str, volume.images.shape[2:])), **row})
        echo(f"3D training step: {record['train3d'][-1]}")
    train: Dataset = inputs["train"]
    record["data_wait"] = checks.data_wait(train, channels, inputs["crop"], device, inputs["steps"])
    echo(f"data wait: {record['data_wait']}")
    record["training"] = checks.time_boxed_models(
        train, inputs["val"], channels, inputs["crop"], device, boxes
    )
    echo(f"time-boxed training: {record['training']}")
    record["seconds"] = time.perf_counter() - begin
    return record


def main(argv: list[str] | None = None) -> Path:
    """Run the check from the command line and write its record; return the file."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.gpu", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, any device")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder of the record")
    parser.add_argument(
        "--seconds",
        type=float,
        nargs=2,
        metavar=("FEATURES", "MODEL"),
        help="time boxes of the extractor and of each registration model (default 60 100)",
    )
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    boxes = tuple(args.seconds) if args.seconds else ((1.0, 1.5) if args.smoke else (60.0, 100.0))
    record = run(args.smoke, device, boxes)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"{record['benchmark']}.json"
    path.write_text(json.dumps(record, indent=1) + "\n")
    if not args.smoke:
        with open(args.out / "history.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
    print(f"{record['device']}: {record['seconds']:.0f} s; wrote {path}")
    return path


if __name__ == "__main__":
    main()
