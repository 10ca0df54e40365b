"""The self-supervised feature extractor: a denoising autoencoder trained without labels.

It learns from two noisy views of each crop (Noise2Noise) on real images, its file
records how it was trained and loads wherever DeepSim-AE takes an extractor, and the
installed ``deepsim`` command trains it and optimises a pair with it end to end.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch

from src_training.data.augment import AugmentConfig
from src_training.data.datasets import Dataset, load_dataset
from src_training.engine.metrics import load_extractor, registration_metric
from src_training.engine.training import (
    SELF_SUPERVISED_NOISE,
    features_trainer,
)
from src_training.networks.modelio import load_model
from src_training.training.trainer import TrainConfig
from src_training.training.trainers import DenoisingTrainer

ISBI = Path(__file__).resolve().parents[4] / "shared" / "data" / "isbi2012_em"
DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
SMALL = (8, 16)
pytestmark = pytest.mark.usefixtures("single_thread")


def _isbi_crop():
    """Two real ISBI sections, cut to their top-left 128 × 128 pixels."""
    if not ISBI.is_dir():
        pytest.skip("the shared ISBI data is not beside the project")
    data = load_dataset(ISBI, frames=slice(0, 2))
    images = np.ascontiguousarray(data.images[..., :128, :128])
    return Dataset(**{**data.__dict__, "images": images, "labels": None, "class_values": []})


def _config(steps, noise=SELF_SUPERVISED_NOISE, **extra):
    augment = AugmentConfig(noise=noise)
    return TrainConfig(
        steps=steps, batch_size=4, crop=64, lr=2e-3, seed=0, augment=augment, **extra
    )


def test_the_two_views_are_one_crop_with_independent_noise():
    data = _isbi_crop()
    trainer = features_trainer(data, None, _config(1), channels=SMALL, self_supervised=True)
    assert isinstance(trainer, DenoisingTrainer)
    images, _ = trainer._batch(next(trainer.sampler.batches()))
    difference = images[0] - images[1]
    # independent noise of std s in each view: their difference has std s * sqrt(2)
    assert float(difference.std()) == pytest.approx(SELF_SUPERVISED_NOISE * 2**0.5, rel=0.05)
    # and no structure: the crop itself is the same in both views
    assert (
        abs(float(torch.corrcoef(torch.stack([difference.flatten(), images[0].flatten()]))[0, 1]))
        < 0.8
    )


def test_the_denoising_loss_falls_on_real_images():
    events = list(
        features_trainer(
            _isbi_crop(), None, _config(80), channels=SMALL, self_supervised=True
        ).run()
    )
    losses = [e.loss for e in events]
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10])
    # Noise2Noise: the second view's own noise stays in the loss, so it cannot go below σ²
    assert np.mean(losses[-10:]) > 0.8 * SELF_SUPERVISED_NOISE**2


def test_the_file_records_its_training_and_loads_as_an_extractor(tmp_path):
    out = tmp_path / "selfsup.pt"
    trainer = features_trainer(
        _isbi_crop(), None, _config(3), channels=SMALL, self_supervised=True, out=out
    )
    list(trainer.run())
    model = load_model(out)
    assert model.metadata["self_supervised"]["noise"] == SELF_SUPERVISED_NOISE
    assert "no labels" in model.metadata["self_supervised"]["objective"]
    assert model.metadata["network"]["kind"] == "autoencoder"
    network = load_extractor(out, "deepsim-ae", 2, 1)
    image = torch.rand(1, 1, 40, 48)
    for saved, trained in zip(
        network.features(image), trainer.network.features(image), strict=True
    ):
        torch.testing.assert_close(saved, trained, rtol=1e-5, atol=1e-6)
    metric = registration_metric("deepsim-ae", ndim=2, channels=1, features=out)
    assert float(metric(image, image)) == pytest.approx(0.0, abs=1e-5)
    assert float(metric(image, torch.rand(1, 1, 40, 48))) > 0.01
    with pytest.raises(ValueError, match="use --metric deepsim-ae"):
        load_extractor(out, "deepsim", 2, 1)


@pytest.mark.slow
def test_the_installed_command_trains_it_and_registers_with_it(tmp_path):
    rng = np.random.default_rng(0)
    frames = rng.random((3, 40, 40)).astype(np.float32)
    frames[1] = np.roll(frames[0], 2, axis=1)
    tifffile.imwrite(tmp_path / "frames.tif", frames, photometric="minisblack")
    for name, frame in (("fixed", frames[0]), ("moving", frames[1])):
        tifffile.imwrite(tmp_path / f"{name}.tif", frame)
    tiny = ["--channels", "4,8", "--crop", "32", "--batch-size", "2", "--device", "cpu"]
    features = tmp_path / "selfsup.pt"

    def deepsim(*args):
        proc = subprocess.run([DEEPSIM, *map(str, args)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    deepsim("train-features", tmp_path / "frames.tif", "--self-supervised", "--steps", "3",
            *tiny, "--out", features)  # fmt: skip
    shown = deepsim("info", features)
    assert "self_supervised" in shown and "labels=none" in shown
    deepsim("register", "--optimise", "--metric", "deepsim-ae", "--features", features,
            "--iterations", "3", "--levels", "1", tmp_path / "fixed.tif", tmp_path / "moving.tif",
            "--out", tmp_path / "result")  # fmt: skip
    assert (tmp_path / "result").is_dir() and any((tmp_path / "result").iterdir())
    deepsim("train", tmp_path / "frames.tif", "--metric", "deepsim-ae", "--features", features,
            "--steps", "2", *tiny, "--out", tmp_path / "r.pt")  # fmt: skip
    assert load_model(tmp_path / "r.pt").metadata["features"] == str(features.resolve())
