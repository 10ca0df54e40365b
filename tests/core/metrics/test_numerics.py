"""Numerical safety: every metric trains on pure noise and on constant images without NaN."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from src_training.data.datasets import Dataset
from src_training.data.normalise import normalise_intensity
from src_training.metrics import METRICS, Similarity, get_metric, metric_names
from src_training.metrics.vgg16 import VGG16Features
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.training.trainer import StepEvent, TrainConfig
from src_training.training.trainers import RegistrationTrainer

pytestmark = pytest.mark.usefixtures("single_thread")
SHAPES = {2: (32, 32), 3: (12, 12, 12)}


def _metric(name: str, ndim: int) -> torch.nn.Module:
    torch.manual_seed(0)
    if METRICS[name].needs_weights:  # random VGG16 weights: no download
        return get_metric(name, network=VGG16Features())
    if METRICS[name].needs_extractor:
        kind = "autoencoder" if name == "deepsim-ae" else "segmentation"
        return get_metric(name, extractor=FeatureExtractor(ndim, 1, 2, (4, 8), kind=kind))
    return get_metric(name)


def _data(kind: str, ndim: int) -> Dataset:
    rng = np.random.default_rng(1)
    shape = (4, *SHAPES[ndim])
    raw = rng.normal(size=shape) if kind == "noise" else np.full(shape, 3.0)
    images = np.stack([normalise_intensity(image) for image in raw])[:, None]
    labels = np.zeros(shape, np.int64)  # two classes, so that ncc-sup has something to match
    labels[(slice(None), slice(shape[1] // 2, None))] = 1
    return Dataset(images, labels, [str(i) for i in range(4)], [0, 1], None, kind)


@pytest.mark.parametrize("ndim", [2, 3])
@pytest.mark.parametrize("kind", ["noise", "constant"])
@pytest.mark.parametrize("name", metric_names())
def test_every_metric_trains_on_noise_and_constant_images_without_nan(name, kind, ndim):
    data = _data(kind, ndim)
    assert (kind == "constant") == (not data.images.any())  # a constant image becomes zeros
    torch.manual_seed(0)
    network = RegistrationNet(ndim, 1, (4, 8))
    trainer = RegistrationTrainer(
        network,
        TrainConfig(steps=3, batch_size=2, lr=1e-2, seed=0),
        data,
        metric=Similarity(METRICS[name], _metric(name, ndim)),
        lam=METRICS[name].default_lambda,
    )
    events = [event for event in trainer.run() if isinstance(event, StepEvent)]
    assert len(events) == 3
    for event in events:
        assert np.isfinite([event.loss, *event.terms.values()]).all(), event
    assert all(torch.isfinite(p).all() for p in network.parameters())
    moved = network(torch.from_numpy(data.images[:1]), torch.from_numpy(data.images[1:2]))
    assert torch.isfinite(moved).all()
