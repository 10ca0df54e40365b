"""Trainers: outputs, resume, stopping, NaN handling, validation."""

import csv

import numpy as np
import pytest
import torch

from src_training.data.augment import AugmentConfig
from src_training.data.datasets import Dataset
from src_training.engine.demo import sample_dataset
from src_training.metrics import METRICS, Similarity, build_metric
from src_training.networks.modelio import load_model
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.runtime import memory
from src_training.runtime.memory import training_memory, training_values_per_voxel
from src_training.training.trainer import (
    StepEvent,
    TrainConfig,
    ValidationEvent,
    last_checkpoint_path,
    log_path,
)
from src_training.training.trainers import FeatureTrainer, RegistrationTrainer

SMALL = (4, 8)


def _data(frames=range(6)):
    return sample_dataset().subset(list(frames))


def _reg_trainer(out=None, steps=6, val=None, metric="ncc", data=None, **config):
    torch.manual_seed(0)
    net = RegistrationNet(2, channels=SMALL)
    cfg = TrainConfig(steps=steps, batch_size=2, crop=32, lr=1e-3, seed=7, **config)
    return RegistrationTrainer(
        net,
        cfg,
        data or _data(),
        metric=build_metric(metric),
        lam=0.5,
        val=val,
        out=out,
    )


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(tmp_path):
    full = _reg_trainer(tmp_path / "full.pt", checkpoint_every=100)
    list(full.run())
    part = _reg_trainer(tmp_path / "part.pt", checkpoint_every=100)
    list(part.run(stop=lambda: part.step >= 3))
    assert load_model(last_checkpoint_path(tmp_path / "part.pt")).training_state["step"] == 3
    resumed = _reg_trainer(tmp_path / "part.pt", checkpoint_every=100)
    resumed.resume()
    assert resumed.step == 3
    list(resumed.run())
    for a, b in zip(
        full.network.state_dict().values(), resumed.network.state_dict().values(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    with open(log_path(tmp_path / "part.pt")) as handle:
        steps = [int(r["step"]) for r in csv.DictReader(handle)]
    assert steps == [1, 2, 3, 4, 5, 6]


def test_stop_takes_effect_before_the_next_step_and_saves(tmp_path):
    trainer = _reg_trainer(tmp_path / "r.pt", steps=50)
    events = list(trainer.run(stop=lambda: trainer.step >= 2))
    assert [e.step for e in events] == [1, 2]
    assert load_model(tmp_path / "r.pt").metadata["steps_trained"] == 2
    assert load_model(last_checkpoint_path(tmp_path / "r.pt")).training_state["step"] == 2


def test_validation_events_and_best_model(tmp_path):
    val = sample_dataset().subset([5, 6, 7])
    trainer = _reg_trainer(tmp_path / "r.pt", steps=4, val=val, val_every=2)
    events = list(trainer.run())
    validations = [e for e in events if isinstance(e, ValidationEvent)]
    assert [e.step for e in validations] == [2, 4]
    assert 0.5 < validations[0].scores["dice"] <= 1.0
    assert validations[0].best
    saved = load_model(tmp_path / "r.pt").metadata
    assert saved["best_validation"] == max(e.scores["dice"] for e in validations)
    assert saved["class_values"] == [0, 1, 2] and saved["metric"] == "ncc"
    assert all(isinstance(e, StepEvent) for e in events if e not in validations)


def test_nan_loss_stops_with_a_clear_message_and_keeps_the_good_checkpoint(tmp_path):
    class Poisoned(torch.nn.Module):
        calls = 0

        def forward(self, warped, fixed):
            Poisoned.calls += 1
            loss = (warped - fixed).pow(2).mean()
            return loss * float("nan") if Poisoned.calls > 3 else loss

    torch.manual_seed(0)
    trainer = RegistrationTrainer(
        RegistrationNet(2, channels=SMALL),
        TrainConfig(steps=10, batch_size=2, crop=32, checkpoint_every=1),
        _data(),
        metric=Similarity(METRICS["mse"], Poisoned()),
        lam=0.1,
        out=tmp_path / "r.pt",
    )
    with pytest.raises(FloatingPointError, match="loss became nan at step 4; lower --lr"):
        list(trainer.run())
    kept = load_model(last_checkpoint_path(tmp_path / "r.pt"))
    assert kept.training_state["step"] == 3
    assert all(torch.isfinite(p).all() for p in kept.network.parameters())


def test_label_metric_without_labels_is_refused():
    data = _data()
    unlabelled = Dataset(**{**data.__dict__, "labels": None, "class_values": []})
    with pytest.raises(ValueError, match="ncc-sup metric needs label images"):
        _reg_trainer(data=unlabelled, metric="ncc-sup")


def test_ncc_sup_trains_with_labels():
    trainer = _reg_trainer(steps=2, metric="ncc-sup")
    events = list(trainer.run())
    assert np.isfinite(events[-1].loss)


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="--steps must be at least 1"):
        TrainConfig(steps=0)
    with pytest.raises(ValueError, match="--lam must be a finite number"):
        _reg_trainer(steps=1).__class__(
            RegistrationNet(2, channels=SMALL),
            TrainConfig(steps=1),
            _data(),
            metric=build_metric("mse"),
            lam=float("nan"),
        )


def test_segmentation_extractor_learns_the_sample():
    """40 steps take the training loss well below its start and validation Dice up."""
    torch.manual_seed(0)
    net = FeatureExtractor(2, 1, 3, (8, 16))
    config = TrainConfig(
        steps=40, batch_size=2, crop=64, lr=3e-3, seed=0, augment=AugmentConfig(), val_every=40
    )
    trainer = FeatureTrainer(net, config, _data(), val=sample_dataset().subset([6, 7]))
    events = list(trainer.run())
    losses = [e.loss for e in events if isinstance(e, StepEvent)]
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    (validation,) = [e for e in events if isinstance(e, ValidationEvent)]
    assert validation.scores["dice"] > 0.5


def test_autoencoder_trains_without_labels():
    data = _data()
    unlabelled = Dataset(**{**data.__dict__, "labels": None, "class_values": []})
    net = FeatureExtractor(2, 1, 2, SMALL, kind="autoencoder")
    events = list(
        FeatureTrainer(net, TrainConfig(steps=2, batch_size=2, crop=32), unlabelled).run()
    )
    assert len(events) == 2


def test_ctrl_c_inside_a_step_waits_until_the_step_is_applied_and_logged():
    import os
    import signal

    from src_training.training.events import interrupts_deferred as _interrupts_deferred

    done = []
    inherited = signal.signal(signal.SIGINT, signal.default_int_handler)  # e.g. ignored in `&`
    try:
        with pytest.raises(KeyboardInterrupt), _interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("after the signal")  # still runs: the interrupt is held
        assert done == ["after the signal"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job's Ctrl-C stays ignored
        with _interrupts_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            done.append("ignored")
        assert done[-1] == "ignored" and signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, inherited)


def _saved_for_backward(trainer):
    """Bytes of the tensors a training step's forward pass keeps for backward (not weights)."""
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    images, labels = trainer._batch(next(trainer.sampler.batches(start_step=0)))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        trainer._loss(images, labels)
    weights = {p.untyped_storage().data_ptr() for p in trainer.network.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in weights)


@pytest.mark.parametrize(("channels", "crop", "batch"), [((4, 8), 32, 2), ((8, 16, 32), 64, 1)])
def test_the_step_memory_estimate_counts_what_autograd_keeps(channels, crop, batch):
    network = RegistrationNet(2, channels=channels)
    config = TrainConfig(steps=1, batch_size=batch, crop=crop)
    trainer = RegistrationTrainer(network, config, _data(), metric=build_metric("mse"), lam=0.5)
    saved = _saved_for_backward(trainer)
    counted = training_values_per_voxel(network.unet) * crop**2 * batch * 4
    assert saved <= counted <= 1.5 * saved  # the rest is the gradients alive in backward


def test_the_step_memory_estimate_grows_with_crop_batch_channels_and_precision():
    small, wide = RegistrationNet(2, channels=SMALL), RegistrationNet(2, channels=(16, 32))
    fixed = training_memory(small, (32, 32), 0)  # no activations: workspaces and weights
    one, two = training_memory(small, (32, 32), 1), training_memory(small, (32, 32), 2)
    assert two - one == one - fixed > 0
    assert training_memory(small, (64, 64), 1) - fixed == 4 * (one - fixed)
    assert training_memory(small, (30, 29), 1) == one  # padded to the U-Net's multiple
    assert training_memory(wide, (32, 32), 1) > one
    assert training_memory(small, (32, 32), 2, bytes_per_value=2) - fixed == (two - fixed) // 2
    volume = RegistrationNet(3, channels=SMALL)
    assert training_memory(volume, (32, 32, 32), 1) > training_memory(volume, (16, 16, 16), 1)


def test_training_that_would_not_fit_is_refused_before_the_first_step(tmp_path, monkeypatch):
    network = RegistrationNet(2, channels=SMALL)
    one = training_memory(network, (32, 32), 1)

    def free(nbytes):
        monkeypatch.setattr(memory, "available_memory", lambda device="cpu": nbytes)

    free(one)
    with pytest.raises(
        ValueError,
        match=r"^a training step \(batch 2, 32x32 voxels\) needs about \d+\.\d MiB but only "
        r"\d+\.\d MiB of cpu memory is free; lower --batch-size to 1, or use a device with more",
    ):
        _reg_trainer(tmp_path / "r.pt")
    free(one - 1)
    with pytest.raises(
        ValueError, match=r"lower --crop \(now 32\) or use fewer --channels \(now 4,8\)"
    ):
        _reg_trainer(tmp_path / "r.pt")
    features = FeatureExtractor(2, 1, 3, channels=SMALL)
    with pytest.raises(
        ValueError, match=r"\(batch 1, 128x128 voxels\).*train on crops with --crop"
    ):
        FeatureTrainer(features, TrainConfig(steps=1, batch_size=1), _data(), out=tmp_path / "f.pt")
    assert list(tmp_path.iterdir()) == []
    free(None)  # where free memory cannot be known, nothing is refused
    assert list(_reg_trainer(tmp_path / "r.pt", steps=1).run())


def test_the_memory_check_counts_half_precision_activations_as_two_bytes(monkeypatch):
    network = RegistrationNet(2, channels=SMALL)
    fp32 = training_memory(network, (32, 32), 2)
    assert training_memory(network, (32, 32), 2, bytes_per_value=2) < fp32
    monkeypatch.setattr(memory, "available_memory", lambda device="cpu": fp32 - 1)
    with pytest.raises(ValueError, match=r"^a training step \(batch 2, 32x32 voxels\) needs"):
        _reg_trainer()
    assert _reg_trainer(precision="bf16").precision == "bf16"  # fits in bf16
