"""The main job on the built-in default: register the synthetic noisy cell sample."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch

from src_training.data import normalise_intensity
from src_training.devices import resolve_device
from src_training.evaluation import field_regularity, mean_dice
from src_training.metrics import METRICS, get_metric
from src_training.networks import RegistrationNet
from src_training.samples import noisy_cell_sequence
from src_training.spatial import warp_labels
from src_training.training import register, train_registration

TRAIN_FRAMES = slice(0, 6)
TEST_PAIRS = ((6, 5), (7, 6))  # (moving, fixed): frames 6 and 7 are never trained on
DEMO_CHANNELS = (16, 32, 64)


def run_demo(
    steps: int = 400,
    metric: str = "ncc",
    device: str = "auto",
    seed: int = 0,
    echo: Callable[[str], None] = print,
) -> list[dict[str, float]]:
    """Train a small registration model on the sample and evaluate it on held-out pairs.

    Parameters
    ----------
    steps : int
        Training steps (batch of 4 pairs of frames at most 2 apart).
    metric : str
        A metric that needs neither a feature extractor nor weights.
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``.
    seed : int
        Random seed of the sample-independent parts (network, pairs).
    echo : callable
        Receives each line of the report.

    Returns
    -------
    list of dict
        Per test pair: Dice before and after, folding percentage, seconds.
    """
    spec = METRICS.get(metric)
    if spec is None:
        raise ValueError(f"unknown metric {metric!r}; `deepsim metrics` lists them")
    if spec.needs_extractor or spec.needs_weights:
        raise ValueError(
            f"the demo trains no feature extractor; pick a metric such as ncc, mse, nmi or mind "
            f"(got {metric!r})"
        )
    dev = resolve_device(device)
    seq = noisy_cell_sequence()
    frames = torch.from_numpy(np.stack([normalise_intensity(f) for f in seq.images]))[:, None]
    labels = torch.from_numpy(seq.labels.astype(np.int64))[:, None]
    torch.manual_seed(seed)
    model = RegistrationNet(2, channels=DEMO_CHANNELS)
    echo(
        f"training a {metric} registration model on frames 0-5 of the noisy cell sample "
        f"({steps} steps, lambda {spec.default_lambda:g}, device {dev})"
    )
    events = train_registration(
        model,
        get_metric(metric),
        metric,
        frames[TRAIN_FRAMES],
        labels=labels[TRAIN_FRAMES],
        lam=spec.default_lambda,
        steps=steps,
        lr=1e-3,
        seed=seed,
        device=dev,
    )
    for event in events:
        if event.step % max(1, steps // 10) == 0 or event.step == steps:
            echo(f"  step {event.step:>5}/{steps}  loss {event.loss:.4f}  {event.seconds:6.1f} s")
    echo("held-out pairs (moving -> fixed): Dice before -> after, folding, time")
    rows = []
    for moving, fixed in TEST_PAIRS:
        start = time.perf_counter()
        disp = register(model, frames[moving : moving + 1], frames[fixed : fixed + 1], dev)
        seconds = time.perf_counter() - start
        warped = warp_labels(labels[moving : moving + 1], disp)
        row = {
            "dice_before": mean_dice(labels[moving], labels[fixed]),
            "dice_after": mean_dice(warped[0], labels[fixed]),
            "seconds": seconds,
            **field_regularity(disp),
        }
        rows.append(row)
        echo(
            f"  {moving} -> {fixed}: Dice {row['dice_before']:.3f} -> {row['dice_after']:.3f}, "
            f"folding {row['folding_percent']:.2f} %, {seconds * 1000:.0f} ms"
        )
    return rows
