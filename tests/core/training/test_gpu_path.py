"""The device-side training path: batches, deferred losses, precision, compile, checkpointing.

Everything here runs on the CPU: the device-side code is device-agnostic, so the same
code that a GPU runs is exercised with ``device="cpu"``.
"""

import contextlib
import csv

import numpy as np
import pytest
import torch

from src_training.cli import main
from src_training.data import batches as batches_module
from src_training.data.augment import AugmentConfig, augment_pair, crop_window, pair_generator
from src_training.data.batches import TrainingBatches, noise_seed
from src_training.engine.demo import sample_dataset
from src_training.metrics import METRICS, Similarity, build_metric
from src_training.metrics.dice import batch_mean_dice, mean_dice
from src_training.networks.modelio import load_model
from src_training.networks.models import FeatureExtractor, RegistrationNet
from src_training.runtime import compiling
from src_training.runtime.precision import resolve_precision
from src_training.training.trainer import StepEvent, TrainConfig, last_checkpoint_path, log_path
from src_training.training.trainers import FeatureTrainer, RegistrationTrainer

pytestmark = pytest.mark.usefixtures("single_thread")
SMALL = (4, 8)
CROP = 32


def _data(frames=range(6)):
    return sample_dataset().subset(list(frames))


def _cpu_path(data, pair, index, step, config, seed=7, crop=CROP):
    """The per-pair CPU path the trainer used before (crop, ``augment_pair``, centre crop)."""
    generator = pair_generator(seed, step, index)
    margin = crop // 4 if config.geometric else 0
    outer = crop_window(data.images.shape[2:], crop + 2 * margin, generator)
    idx = list(pair)
    images = torch.from_numpy(np.ascontiguousarray(data.images[(idx, slice(None), *outer)]))
    labels = torch.from_numpy(np.ascontiguousarray(data.labels[(idx, *outer)]))[:, None]
    images, labels = augment_pair(images, labels, config, generator)
    inner = tuple(slice((n - crop) // 2, (n - crop) // 2 + crop) for n in images.shape[2:])
    return images[(slice(None), slice(None), *inner)], labels[(slice(None), slice(None), *inner)]


def test_device_batches_warp_like_the_per_pair_cpu_path():
    data = _data()
    config = AugmentConfig(rotation=20, scale=0.2, shear=0.1, flip=True)
    batches = TrainingBatches(data, CROP, config, 7, "cpu")
    pairs, indices = [(1, 0), (3, 4), (5, 3), (2, 2)], [0, 1, 2, 3]
    images, labels = batches(pairs, indices, 5, 2)
    assert images.shape == (2, 4, 1, CROP, CROP) and images.dtype == torch.float32
    assert labels.shape == (2, 4, 1, CROP, CROP) and labels.dtype == torch.int64
    for b, (pair, index) in enumerate(zip(pairs, indices, strict=True)):
        old_images, old_labels = _cpu_path(data, pair, index, 5, config)
        torch.testing.assert_close(images[:, b], old_images, rtol=0, atol=1e-4)
        assert (labels[:, b] != old_labels).float().mean() < 1e-3


def test_augmentation_statistics_match_the_cpu_path_for_a_seed():
    """Over 64 pairs: equal crops and transforms, and noise of the same distribution."""
    data = _data()
    config = AugmentConfig(noise=0.1)
    clean = AugmentConfig(noise=0.0)
    batches = TrainingBatches(data, CROP, config, 7, "cpu")
    no_noise = TrainingBatches(data, CROP, clean, 7, "cpu")
    new, new_noise, old, old_noise = [], [], [], []
    for step in range(16):
        pairs, indices = [(1, 0), (2, 3), (4, 5), (5, 4)], [0, 1, 2, 3]
        images, _ = batches(pairs, indices, step, 2)
        noiseless, _ = no_noise(pairs, indices, step, 2)
        new.append(images)
        new_noise.append(images - noiseless)
        for b, (pair, index) in enumerate(zip(pairs, indices, strict=True)):
            noisy, _ = _cpu_path(data, pair, index, step, config)
            plain, _ = _cpu_path(data, pair, index, step, clean)
            torch.testing.assert_close(noiseless[:, b], plain, rtol=0, atol=1e-4)
            old.append(noisy)
            old_noise.append(noisy - plain)
    new, old = torch.cat([x.flatten() for x in new]), torch.cat([x.flatten() for x in old])
    new_noise = torch.cat([x.flatten() for x in new_noise])
    old_noise = torch.cat([x.flatten() for x in old_noise])
    assert new.numel() == old.numel()
    assert abs(float(new.mean() - old.mean())) < 0.01
    assert float(new.std() / old.std()) == pytest.approx(1.0, abs=0.01)
    assert float(new_noise.std()) == pytest.approx(0.1, rel=0.02)
    assert float(old_noise.std()) == pytest.approx(0.1, rel=0.02)
    assert abs(float(new_noise.mean())) < 0.003
    assert not torch.equal(new_noise, old_noise)  # a new draw, documented as such


def test_noise_is_deterministic_per_pair_and_independent_between_images():
    data = _data()
    batches = TrainingBatches(data, CROP, AugmentConfig(noise=0.1), 3, "cpu")
    plain = TrainingBatches(data, CROP, AugmentConfig(noise=0.0), 3, "cpu")
    a, _ = batches([(1, 0), (2, 1)], [0, 1], 4, 2)
    b, _ = batches([(1, 0), (2, 1)], [0, 1], 4, 2)
    lone, _ = batches([(2, 1)], [1], 4, 2)  # pair 1 alone, as another rank draws it
    noise = a - plain([(1, 0), (2, 1)], [0, 1], 4, 2)[0]
    assert torch.equal(a, b)  # the same batch drawn twice: the same arithmetic
    # alone, the pair is resampled through another batch shape: equal to rounding (a few
    # 1e-6 on some CPUs), while another draw (a wrong index or seed) or pair differs by ~0.1
    torch.testing.assert_close(a[:, 1], lone[:, 0], rtol=0, atol=1e-4)
    wrong_index, _ = batches([(2, 1)], [0], 4, 2)
    wrong_seed, _ = TrainingBatches(data, CROP, AugmentConfig(noise=0.1), 4, "cpu")(
        [(2, 1)], [1], 4, 2
    )
    swapped, _ = batches([(1, 0)], [1], 4, 2)
    for other in (wrong_index, wrong_seed, swapped):
        assert (other[:, 0] - a[:, 1]).abs().max() > 100 * 1e-4
    assert not torch.allclose(noise[0], noise[1])
    assert noise_seed(3, 4, 0) != noise_seed(3, 4, 1) and noise_seed(3, 4, 1) < 2**63


def test_streamed_batches_equal_resident_ones(monkeypatch):
    data = _data()
    config = AugmentConfig(noise=0.05)
    resident = TrainingBatches(data, CROP, config, 1, "cpu")
    monkeypatch.setattr(batches_module, "fits_on_device", lambda *_: False)
    streamed = TrainingBatches(data, CROP, config, 1, "cpu")
    assert resident.resident and not streamed.resident
    for got, want in zip(
        streamed([(1, 0), (4, 3)], [0, 1], 2, 2),
        resident([(1, 0), (4, 3)], [0, 1], 2, 2),
        strict=True,
    ):
        # the same crops and affines from host slices or resident tensors: equal to rounding
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_whole_images_without_augmentation_are_the_data():
    data = _data()
    batches = TrainingBatches(
        data, None, AugmentConfig(flip=False, rotation=0, scale=0, shear=0), 0, "cpu"
    )
    images, labels = batches([(1, 0)], [0], 0, 2)
    assert torch.equal(images[:, 0], torch.from_numpy(data.images[[1, 0]]))
    assert torch.equal(labels[:, 0, 0], torch.from_numpy(data.labels[[1, 0]]))


def _trainer(out=None, steps=6, log_every=None, metric="ncc", precision="fp32", **config):
    torch.manual_seed(0)
    network = RegistrationNet(2, channels=SMALL)
    cfg = TrainConfig(
        steps=steps,
        batch_size=2,
        crop=CROP,
        lr=1e-3,
        seed=7,
        log_every=log_every,
        precision=precision,
        **config,
    )
    return RegistrationTrainer(network, cfg, _data(), metric=build_metric(metric), lam=0.5, out=out)


def test_losses_read_every_n_steps_keep_every_step_and_resume_exactly(tmp_path):
    full = _trainer(tmp_path / "full.pt", steps=9, log_every=4, checkpoint_every=100)
    events = list(full.run())
    reads = [e.history for e in events if e.history]
    assert [[s for s, _ in h] for h in reads] == [[1], [2, 3, 4], [5, 6, 7, 8], [9]]
    assert all(e.loss == reads[0][0][1] for e in events[:3])  # the last read value
    with open(log_path(tmp_path / "full.pt")) as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == list(range(1, 10))
    assert [float(r["loss"]) for r in rows] == pytest.approx([x for h in reads for _, x in h])
    every = _trainer(tmp_path / "every.pt", steps=9, log_every=1, checkpoint_every=100)
    list(every.run())
    part = _trainer(tmp_path / "part.pt", steps=9, log_every=4, checkpoint_every=100)
    list(part.run(stop=lambda: part.step >= 6))
    resumed = _trainer(tmp_path / "part.pt", steps=9, log_every=4, checkpoint_every=100)
    resumed.resume()
    list(resumed.run())
    for a, b, c in zip(
        full.network.state_dict().values(),
        every.network.state_dict().values(),
        resumed.network.state_dict().values(),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=1e-6)


def test_a_late_read_still_names_the_first_non_finite_step_and_saves_nothing_after_it(tmp_path):
    class Poisoned(torch.nn.Module):
        calls = 0

        def forward(self, warped, fixed):
            Poisoned.calls += 1
            loss = (warped - fixed).pow(2).mean()
            return loss * float("nan") if Poisoned.calls > 5 else loss

    torch.manual_seed(0)
    trainer = RegistrationTrainer(
        RegistrationNet(2, channels=SMALL),
        TrainConfig(steps=20, batch_size=2, crop=CROP, checkpoint_every=4, log_every=8),
        _data(),
        metric=Similarity(METRICS["mse"], Poisoned()),
        lam=0.1,
        out=tmp_path / "r.pt",
    )
    with pytest.raises(FloatingPointError, match="loss became nan at step 6; lower --lr"):
        list(trainer.run())
    kept = load_model(last_checkpoint_path(tmp_path / "r.pt"))
    assert kept.training_state["step"] == 4
    with open(log_path(tmp_path / "r.pt")) as handle:
        assert [int(r["step"]) for r in csv.DictReader(handle)] == [1, 2, 3, 4, 5]


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_half_precision_runs_the_network_in_it_and_keeps_metrics_in_float32(precision, tmp_path):
    trainer = _trainer(tmp_path / "r.pt", steps=3, precision=precision)
    seen = []
    trainer.network.unet.head.register_forward_hook(lambda _m, _a, out: seen.append(out.dtype))
    events = [e for e in trainer.run() if isinstance(e, StepEvent)]
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    assert set(seen) == {dtype}
    assert all(np.isfinite(e.loss) for e in events)
    assert all(p.dtype == torch.float32 for p in trainer.network.parameters())
    saved = load_model(tmp_path / "r.pt")
    assert saved.metadata["precision"] == precision
    scaler = load_model(last_checkpoint_path(tmp_path / "r.pt")).training_state["scaler"]
    assert bool(scaler) == (precision == "fp16")  # the fp16 loss scale is resumable


def test_bf16_stays_close_to_fp32_on_the_same_steps():
    losses = {}
    for precision in ("fp32", "bf16"):
        trainer = _trainer(steps=4, precision=precision)
        losses[precision] = [e.loss for e in trainer.run()]
    np.testing.assert_allclose(losses["bf16"], losses["fp32"], rtol=0.02)


def test_precision_is_resolved_per_device_and_bad_names_are_refused():
    assert resolve_precision("auto", "cpu") == "fp32"
    assert resolve_precision("bf16", "cpu") == "bf16"
    with pytest.raises(ValueError, match="--precision must be one of auto, fp32, bf16, fp16"):
        resolve_precision("fp8", "cpu")
    with pytest.raises(ValueError, match="--precision must be one of"):
        TrainConfig(precision="half")
    with pytest.raises(ValueError, match="--log-every must be at least 1"):
        TrainConfig(log_every=0)


def test_a_compiler_failure_is_one_sentence(monkeypatch):
    from torch._dynamo.exc import BackendCompilerFailed

    class Broken(torch.nn.Module):
        """What torch.compile returns when the toolchain fails at the first call."""

        def __init__(self, module):
            super().__init__()
            self.module = module

        def forward(self, *_args):
            raise BackendCompilerFailed.__new__(BackendCompilerFailed)

    assert compiling.compile_failure(RuntimeError("not the compiler")) is None
    monkeypatch.setattr("src_training.training.trainer.compile_network", Broken)
    trainer = _trainer(steps=2, compile=True)
    with pytest.raises(ValueError, match=r"^--compile failed: .*; train without --compile"):
        list(trainer.run())


def test_feature_extractor_trains_with_checkpointing_in_bf16():
    data = _data()
    network = FeatureExtractor(2, 1, 3, SMALL, activation_checkpointing=True)
    assert "activation_checkpointing" not in network.config()
    config = TrainConfig(steps=2, batch_size=2, crop=CROP, precision="bf16", val_every=2)
    trainer = FeatureTrainer(network, config, data, val=sample_dataset().subset([6, 7]))
    events = list(trainer.run())
    assert 0 <= events[-1].scores["dice"] <= 1


def test_batch_dice_is_the_mean_dice_of_each_pair():
    generator = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (3, 9, 11), generator=generator)
    target = torch.randint(0, 3, (3, 9, 11), generator=generator)
    target[2] = pred[2]
    got = batch_mean_dice(pred, target, 4)
    want = [mean_dice(p, t) for p, t in zip(pred, target, strict=True)]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)
    assert got[2] == 1.0


def test_cli_routes_precision_checkpointing_and_log_every(tmp_path):
    data = sample_dataset()
    stack = tmp_path / "cells.npz"
    np.savez(stack, images=data.images[:6, 0], labels=data.labels[:6])
    out = tmp_path / "r.pt"
    argv = ["train", str(stack), "--metric", "ncc", "--steps", "3", "--channels", "4,8"]
    argv += ["--crop", "32", "--batch-size", "2", "--device", "cpu", "--out", str(out)]
    argv += ["--precision", "bf16", "--checkpointing", "--log-every", "2"]
    assert main(argv) == 0
    saved = load_model(out)
    assert saved.metadata["precision"] == "bf16"
    assert saved.metadata["train_config"]["log_every"] == 2
    image = tmp_path / "frame.npy"
    np.save(image, data.images[0, 0])
    register = ["register", "--model", str(out), str(image), str(image), "--device", "cpu"]
    assert main([*register, "--precision", "bf16", "--out", str(tmp_path / "reg")]) == 0


def test_non_finite_displacements_warp_to_nan_instead_of_reading_outside_memory():
    from src_training.spatial.transforms import warp

    image = torch.rand(2, 1, 40, 48, requires_grad=True)
    disp = torch.zeros(2, 2, 40, 48)
    disp[0, 0, 3, 4] = float("nan")
    disp[1, 1, 5, 5] = float("inf")
    disp.requires_grad_()
    for padding in ("border", "zeros"):
        out = warp(image, disp, padding=padding)
        assert out.isnan().sum() == 2 and out.isfinite().sum() == out.numel() - 2
        out.nan_to_num().sum().backward()
    assert image.grad.isfinite().all()


@pytest.mark.slow
def test_the_prepared_gpu_check_runs_at_tiny_sizes_on_the_cpu(tmp_path):
    import json

    from benchmarks import gpu

    path = gpu.main(["--smoke", "--device", "cpu", "--out", str(tmp_path)])
    record = json.loads(path.read_text())
    assert record["smoke"] and record["device"] == "cpu" and record["machine"]["cpu"]
    assert len(record["inference"]) == 3
    assert all(row["fp32_s"] > 0 and row["bf16_s"] > 0 for row in record["inference"])
    assert record["series"]["frames_per_s"] > 0
    assert [row["variant"] for row in record["train3d"]] == list(gpu.VARIANTS_3D)
    assert 0 <= record["data_wait"]["data_wait_fraction"] < 1
    models = {row["model"]: row for row in record["training"]}
    assert set(models) == {"feature extractor (segmentation)", "deepsim", "ncc", "identity"}
    assert all(0 < models[name]["dice"] <= 1 for name in ("deepsim", "ncc", "identity"))
    assert record["seconds"] < 60


def test_training_inside_a_callers_autocast_region_uses_the_current_weights(monkeypatch):
    """Autocast keeps its weight casts until its outermost region ends: not a whole run."""

    def weights(outer):
        trainer = _trainer(steps=3, precision="bf16")
        with outer:
            list(trainer.run())
        return list(trainer.network.state_dict().values())

    plain = weights(torch.autocast("cpu", enabled=False))
    for a, b in zip(weights(contextlib.nullcontext()), plain, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    monkeypatch.setattr(torch, "clear_autocast_cache", lambda: None)  # the bug it prevents
    stale = weights(torch.autocast("cpu", enabled=False))
    assert any(not torch.equal(a, b) for a, b in zip(stale, plain, strict=True))


def test_the_predictions_that_refinements_start_from_run_in_the_chosen_precision(monkeypatch):
    from src_training.engine import optimisation, registration, series
    from src_training.networks.modelio import ModelFile
    from src_training.optimisation import OptimiseConfig
    from src_training.registration import inference

    seen = []

    def spy(*args, precision="fp32", **kwargs):
        seen.append(precision)
        return inference.predict(*args, precision=precision, **kwargs)

    for module in (optimisation, registration, series):
        monkeypatch.setattr(module, "predict", spy)
    network = RegistrationNet(2, channels=SMALL)
    model = ModelFile(network, {"kind": "registration", "network": network.config()})
    frames = _data(range(3)).images[:, :, :32, :32]
    refine = optimisation.Optimisation(build_metric("mse"), OptimiseConfig(iterations=(2,)))
    pair = registration.register_pair(
        model, frames[0], frames[1], optimisation=refine, precision="bf16"
    )
    registration.run_to_end(pair)
    stack = series.register_stack(model, frames, 0, optimisation=refine, precision="bf16")
    registration.run_to_end(stack)
    method = optimisation.optimisation_method(refine, model, precision="bf16")
    method(frames[1], frames[0], _data(range(1)).labels[0, :32, :32])
    assert seen == ["bf16"] * 4  # the pair, the stack's two other frames, the evaluation row
