"""Measured work that runs in a fresh process (see ``common.run_isolated``).

Each function builds what it needs, records the resident size just before the
measured work, runs it and returns a dict of plain values.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from contextlib import nullcontext

import numpy as np
import torch
from scipy import ndimage

from benchmarks import data
from benchmarks.common import load, start_peak, timeit
from benchmarks.reference import without_inplace_activations
from src_training.data.datasets import Dataset
from src_training.metrics import METRICS, Similarity, get_metric
from src_training.metrics.vgg16 import VGG16Features
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.registration.inference import predict
from src_training.spatial.transforms import warp
from src_training.training.trainer import TrainConfig
from src_training.training.trainers import RegistrationTrainer

PAPER_CHANNELS = (64, 128, 256)  # also the CLI default of --channels


def _resized(volume: np.ndarray, size: tuple[int, ...]) -> np.ndarray:
    """Resample a ``(1, 1, *spatial)`` array to ``size`` (linear), keeping its dtype."""
    zoom = [1, 1] + [n / m for n, m in zip(size, volume.shape[2:], strict=True)]
    return ndimage.zoom(volume, zoom, order=1, grid_mode=True, mode="nearest").astype(volume.dtype)


def pair_dataset(ndim: int, size: tuple[int, ...] | None) -> Dataset:
    """A two-image data set of real images: t98g frames t01, t02 (2D) or the brain pair (3D).

    ``size`` resamples them; None keeps 1022x1024 and 160x192x224.
    """
    if ndim == 2:
        images = data.t98g().images[0:2]
        pair = [images[0:1], images[1:2]]
    else:
        pair = list(data.brain_pair())
    if size is not None:
        pair = [_resized(image, tuple(size)) for image in pair]
    return Dataset(
        images=np.concatenate(pair),
        labels=None,
        names=["moving", "fixed"],
        class_values=[],
        pairs=[(0, 1)],
        source="benchmark pair",
    )


def _metric(name: str, ndim: int) -> torch.nn.Module:
    """A metric as training builds it; VGG and DeepSim hold networks with random weights."""
    if name == "vgg":
        return get_metric("vgg", network=VGG16Features())
    if name == "deepsim":
        return get_metric("deepsim", extractor=FeatureExtractor(ndim, channels=PAPER_CHANNELS))
    return get_metric(name)


def training_step(
    metric: str,
    ndim: int,
    batch: int,
    channels: list[int],
    steps: int,
    crop: int | None = None,
    size: list[int] | None = None,
    variant: str = "default",
) -> dict:
    """Time ``steps`` training steps of ``RegistrationTrainer`` (the first is a warm-up).

    2D at ``crop`` uses random crops of ISBI sections 0-24 as training does; otherwise
    the pair of :func:`pair_dataset` at ``size``. ``variant``: ``default``,
    ``out-of-place`` (LeakyReLU as before its in-place change), ``checkpointing``,
    ``bf16`` (``--precision bf16``: CPU autocast) or ``checkpointing+bf16``.
    """
    torch.manual_seed(0)
    network = RegistrationNet(
        ndim, channels=channels, activation_checkpointing="checkpointing" in variant
    )
    if variant == "out-of-place":
        without_inplace_activations(network)
    if crop is not None:
        train = data.isbi().subset(range(25))
    else:
        train = pair_dataset(ndim, None if size is None else tuple(size))
    precision = "bf16" if "bf16" in variant else "fp32"
    config = TrainConfig(
        steps=steps,
        batch_size=batch,
        crop=crop,
        val_every=10**9,
        checkpoint_every=10**9,
        precision=precision,
    )
    trainer = RegistrationTrainer(
        network,
        config,
        train,
        metric=Similarity(METRICS[metric], _metric(metric, ndim)),
        lam=METRICS[metric].default_lambda,
    )
    autocast = torch.autocast("cpu", dtype=torch.bfloat16) if "bf16" in variant else nullcontext()
    with autocast:  # start the libraries on a tiny pair: then the memory added is the step's
        tiny = torch.rand(2, 1, 1, *[16] * ndim, generator=torch.Generator().manual_seed(0))
        trainer.pair_loss(tiny[0], tiny[1], None, None)[0].backward()
    network.zero_grad(set_to_none=True)
    rss_before = start_peak()
    ends = []
    losses = []
    for event in trainer.run():
        ends.append(event.seconds)
        losses.append(event.loss)
    times = np.diff([0.0, *ends]).tolist()
    timed = times[1:] or times  # a single step is timed with its warm-up costs
    result = {
        "step_s": statistics.median(timed),
        "step_min_s": min(timed),
        "timed_steps": len(timed),
        "first_loss": losses[0],
        "load": load(),
        "rss_before_mib": rss_before,
    }
    if crop is None:
        with autocast:
            result["saved_mib"] = _saved_activations(trainer)
    return result


def _saved_activations(trainer: RegistrationTrainer) -> float:
    """MiB of the distinct tensors autograd keeps for the backward pass of the pair's loss.

    Counted with ``saved_tensors_hooks`` at the end of the forward pass: what a device
    must hold between forward and backward whatever its allocator (tensors saved inside
    checkpointed stages are recomputed, not kept, and do not count).
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    images = torch.from_numpy(trainer.train_data.images)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        trainer.pair_loss(images[0:1], images[1:2], None, None)
    return sum(storages.values()) / 2**20


def inference(ndim: int, size: list[int], channels: list[int], repeats: int) -> dict:
    """Time registering one pair (network forward pass and warp) at ``size``.

    A warm-up pair of 32 voxels per side starts the thread pool and the libraries
    first, so that large sizes can be timed once.
    """
    torch.manual_seed(0)
    network = RegistrationNet(ndim, channels=channels).eval()
    pair = torch.from_numpy(pair_dataset(ndim, tuple(size)).images)
    warm_up = torch.rand(2, 1, *([32] * ndim))
    register_pair(network, warm_up[0:1], warm_up[1:2])
    rss_before = start_peak()
    timing = timeit(lambda: register_pair(network, pair[0:1], pair[1:2]), repeats, warmup=0)
    return {**timing, "rss_before_mib": rss_before}


def register_pair(
    network: RegistrationNet,
    moving: torch.Tensor,
    fixed: torch.Tensor,
    predictor: Callable[..., torch.Tensor] = predict,
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a user waits for: the displacement and the warped moving image."""
    disp = predictor(network, moving, fixed)
    return disp, warp(moving, disp)
