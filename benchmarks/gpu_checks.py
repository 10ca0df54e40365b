"""The measurements of the GPU check (:mod:`benchmarks.gpu`); every one runs on any device.

Times on a GPU are wall times between :func:`torch.cuda.synchronize` calls, so that
queued kernels are counted; peak memory is ``torch.cuda.max_memory_allocated`` since a
reset just before the measured work (on the CPU it is not measured here).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch

from src_training.data.datasets import Dataset
from src_training.engine.metrics import registration_metric
from src_training.engine.training import features_trainer, registration_trainer
from src_training.metrics import build_metric
from src_training.metrics.dice import mean_dice
from src_training.networks.models import RegistrationNet
from src_training.registration.inference import register_series
from src_training.runtime.precision import autocast
from src_training.spatial.transforms import warp
from src_training.training.trainer import StepEvent, TrainConfig, Trainer
from src_training.training.trainers import RegistrationTrainer

NEVER = 10**9  # a validation or checkpoint interval that never comes


def sync(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_peak(device: torch.device) -> None:
    """Start a peak-memory measurement (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_mib(device: torch.device) -> float | None:
    """Peak allocated device memory since :func:`reset_peak`, in MiB (None on the CPU)."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**20


def median_seconds(fn: Callable[[], object], device: torch.device, repeats: int) -> float:
    """Median wall time of ``repeats`` calls of ``fn`` after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def pair_dataset(moving: np.ndarray, fixed: np.ndarray) -> Dataset:
    """A one-pair data set of two ``(1, C, *spatial)`` images (no labels)."""
    return Dataset(
        images=np.concatenate([moving, fixed]).astype(np.float32),
        labels=None,
        names=["moving", "fixed"],
        class_values=[],
        pairs=[(0, 1)],
        source="GPU check pair",
    )


def inference(
    network: RegistrationNet,
    moving: np.ndarray,
    fixed: np.ndarray,
    device: torch.device,
    precision: str,
    repeats: int,
) -> float:
    """Seconds from two host images to the field and the warped image back on the host."""
    network.to(device).eval()

    def register() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            m = torch.from_numpy(moving).to(device)
            f = torch.from_numpy(fixed).to(device)
            with autocast(device, precision):
                disp = network(m, f).float()
            return disp.cpu(), warp(m, disp).cpu()

    return median_seconds(register, device, repeats)


def elastix_seconds(moving: np.ndarray, fixed: np.ndarray) -> float | None:
    """Seconds of elastix's default B-spline registration of the pair (CPU), or None."""
    from src_training.evaluation.baselines import ElastixBSpline

    try:
        method = ElastixBSpline()
    except ValueError:  # itk-elastix is not installed
        return None
    labels = np.zeros(moving.shape[2:], np.int64)
    return float(method(moving[0], fixed[0], labels).seconds)


def series_frames_per_second(
    network: RegistrationNet, frames: np.ndarray, device: torch.device, precision: str
) -> float:
    """Frames per second of ``register_series`` (every frame to frame 0, batches of 8)."""
    register_series(network, frames[:2], 0, device, 8, precision=precision)  # warm-up
    sync(device)
    start = time.perf_counter()
    register_series(network, frames, 0, device, 8, precision=precision)
    sync(device)
    return len(frames) / (time.perf_counter() - start)


def _steps(trainer: Trainer, stop: Callable[[], bool] | None = None) -> Iterator[StepEvent]:
    for event in trainer.run(stop=stop):
        if isinstance(event, StepEvent):
            yield event


def training_step_3d(
    pair: Dataset, channels: tuple[int, ...], device: torch.device, variant: str, steps: int
) -> dict[str, Any]:
    """One registration training step on a 3D pair, batch 1: seconds and peak memory.

    ``variant``: ``fp32``, ``bf16``, ``checkpointing`` or ``checkpointing+bf16``. The
    first step is a warm-up; the others are timed and their peak memory is reported.
    """
    torch.manual_seed(0)
    network = RegistrationNet(
        pair.ndim, channels=channels, activation_checkpointing="checkpointing" in variant
    )
    precision = "bf16" if "bf16" in variant else "fp32"
    config = TrainConfig(
        steps=steps + 1,
        batch_size=1,
        val_every=NEVER,
        checkpoint_every=NEVER,
        precision=precision,
    )
    trainer = RegistrationTrainer(
        network, config, pair, metric=build_metric("ncc"), lam=0.5, device=device
    )
    events = _steps(trainer)
    next(events)  # warm-up
    sync(device)
    reset_peak(device)
    start = time.perf_counter()
    for _ in events:
        pass
    sync(device)
    return {
        "variant": variant,
        "step_s": (time.perf_counter() - start) / steps,
        "peak_mib": peak_mib(device),
    }


def data_wait(
    train: Dataset,
    channels: tuple[int, ...],
    crop: int,
    device: torch.device,
    steps: int,
) -> dict[str, Any]:
    """The share of a 2D training step (batch 4) spent waiting for its batch.

    The same trainer runs ``steps`` steps with its real batches, then ``steps`` steps
    that reuse one prepared batch; the difference of their times is the wait.
    """
    torch.manual_seed(0)
    config = TrainConfig(
        steps=2 * steps + 2, batch_size=4, crop=crop, val_every=NEVER, checkpoint_every=NEVER
    )
    trainer = RegistrationTrainer(
        RegistrationNet(2, channels=channels),
        config,
        train,
        metric=build_metric("ncc"),
        lam=0.5,
        device=device,
    )
    events = _steps(trainer)
    next(events), next(events)  # warm-up
    timings = []
    for constant in (False, True):
        if constant:
            ready = trainer._batch(next(trainer.sampler.batches()))
            trainer._batch = lambda _pairs, ready=ready: ready  # type: ignore[method-assign]
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            next(events)
        sync(device)
        timings.append((time.perf_counter() - start) / steps)
    real, prepared = timings
    return {
        "step_s": real,
        "step_with_ready_batch_s": prepared,
        "data_wait_fraction": max(0.0, 1.0 - prepared / real),
        "resident": trainer.batches.resident,
    }


def time_boxed_models(
    train: Dataset,
    val: Dataset,
    channels: tuple[int, ...],
    crop: int,
    device: torch.device,
    seconds: tuple[float, float],
) -> list[dict[str, Any]]:
    """Train a feature extractor, then DeepSim and NCC models, each for a fixed time.

    ``seconds``: the extractor's and each registration model's time box. Each model
    is scored by its trainer's validation (mean Dice over the consecutive pairs of
    ``val``); the identity row is the Dice before registration.
    """

    def config() -> TrainConfig:
        return TrainConfig(
            steps=NEVER, batch_size=4, crop=crop, val_every=NEVER, checkpoint_every=NEVER
        )

    def run(trainer: Trainer, box: float) -> dict[str, Any]:
        start = time.perf_counter()
        steps = sum(1 for _ in _steps(trainer, lambda: time.perf_counter() - start > box))
        sync(device)
        return {"steps": steps, "seconds": time.perf_counter() - start}

    torch.manual_seed(0)
    extractor = features_trainer(train, None, config(), channels=channels, device=device)
    rows = [{"model": "feature extractor (segmentation)", **run(extractor, seconds[0])}]
    features = extractor.model_file()
    for name in ("deepsim", "ncc"):
        metric = registration_metric(
            name, ndim=train.ndim, channels=train.channels, features=features
        )
        trainer = registration_trainer(
            train, val, metric, config(), channels=channels, device=device
        )
        row = {"model": name, "precision": trainer.precision, **run(trainer, seconds[1])}
        rows.append({**row, "dice": trainer.validate()["dice"]})
    assert val.labels is not None
    identity = [mean_dice(val.labels[t + 1], val.labels[t]) for t in range(len(val) - 1)]
    rows.append({"model": "identity", "dice": float(np.mean(identity))})
    return rows
