"""The engine for front ends holding arrays: datasets, fields applied, stacks, pyramid plans."""

import numpy as np
import pytest
import torch

from src_training.engine.arrays import (
    dataset_from_arrays,
    identity_dice,
    normalised_frames,
    planned_levels,
    register_frames,
    warp_with_field,
)
from src_training.engine.metrics import registration_metric
from src_training.engine.optimisation import Optimisation, optimisation_config
from src_training.engine.series import register_stack
from src_training.networks.modelio import load_model, save_model
from src_training.networks.models import RegistrationNet
from src_training.optimisation.pyramid import MIN_LEVEL_SIZE


def test_a_dataset_from_arrays_numbers_label_values_in_order_and_keeps_painted_frames():
    rng = np.random.default_rng(0)
    images = rng.normal(5.0, 2.0, (4, 16, 16)).astype(np.float32)
    labels = np.zeros((4, 16, 16), np.uint8)
    labels[1, :4] = 7
    labels[3, 4:8] = 3
    data = dataset_from_arrays(images, labels, "test", labelled_only=True)
    assert data.images.shape == (2, 1, 16, 16)
    assert data.class_values == [0, 3, 7]
    assert set(np.unique(data.labels[0])) == {0, 2} and set(np.unique(data.labels[1])) == {0, 1}
    np.testing.assert_allclose(data.images[0, 0], normalised_frames(images[1:2])[0, 0], atol=1e-6)
    with pytest.raises(ValueError, match="labels have shape"):
        dataset_from_arrays(images, labels[:2], "test")


def test_the_identity_scores_one_on_unmoving_labels():
    labels = np.zeros((3, 8, 8), np.int64)
    labels[:, 2:5, 2:5] = 1
    data = dataset_from_arrays(np.ones((3, 8, 8)), labels, "test")
    assert identity_dice(data) == pytest.approx(1.0)
    assert identity_dice(None) is None


def test_a_field_moves_images_and_labels_and_a_stack_frame_by_frame():
    image = np.zeros((12, 12), np.float32)
    image[4:8, 4:8] = 1
    shift = np.zeros((2, 12, 12), np.float32)
    shift[1] = 2.0  # warped(x) = moving(x + u): content moves 2 columns left
    np.testing.assert_allclose(warp_with_field(image, shift), np.roll(image, -2, axis=1), atol=1e-6)
    labels = image.astype(np.uint16) * 5
    moved = warp_with_field(labels, shift, labels=True)
    assert moved.dtype == np.uint16
    np.testing.assert_array_equal(moved, np.roll(labels, -2, axis=1))
    stack = np.stack([image, image])
    fields = np.stack([np.zeros_like(shift), shift])
    warped = warp_with_field(stack, fields, stack=True)
    np.testing.assert_allclose(warped[0], image, atol=1e-6)
    np.testing.assert_allclose(warped[1], np.roll(image, -2, axis=1), atol=1e-6)


def test_frames_as_read_register_as_their_normalised_frames_do(single_thread, tmp_path):
    torch.manual_seed(0)
    model = load_model(save_model(tmp_path / "r.pt", RegistrationNet(2, channels=(4, 8)), {}))
    rng = np.random.default_rng(1)
    frames = rng.uniform(0, 4000, (3, 32, 32)).astype(np.float32)

    def finish(events):
        while True:
            try:
                next(events)
            except StopIteration as end:
                return end.value

    mine = finish(register_frames(model, frames, 0))
    raw = frames[:, None]
    theirs = finish(register_stack(model, normalised_frames(frames), 0, raw_frames=raw))
    np.testing.assert_allclose(mine.fields, theirs.fields, atol=1e-5)
    np.testing.assert_allclose(mine.warped, theirs.warped, rtol=1e-5, atol=1e-2)
    assert mine.warped.max() > 100  # the original intensities are warped, not the normalised


def test_the_planned_levels_follow_the_settings_and_the_image_size():
    metric = registration_metric("ncc", ndim=2, channels=1)
    shape = (MIN_LEVEL_SIZE * 4, MIN_LEVEL_SIZE * 8)
    chosen = Optimisation(metric, optimisation_config(levels=2))
    assert planned_levels(chosen, shape) == 2
    wanted = Optimisation(metric, optimisation_config(iterations="10,10,10,10,10,10,10"))
    assert planned_levels(wanted, shape) == 3  # the shorter side allows three levels


def test_validation_frames_without_labels_score_the_loss_and_no_dice(single_thread):
    from src_training.engine.training import registration_trainer
    from src_training.training.events import TrainConfig

    rng = np.random.default_rng(0)
    images = rng.normal(0.0, 1.0, (6, 16, 16)).astype(np.float32)
    labels = np.zeros((6, 16, 16), np.uint8)
    labels[:4, 4:10, 4:10] = 1  # painted on the training frames only, as a napari user might
    data = dataset_from_arrays(images, labels, "test")
    train, val = data.subset(range(4)), data.subset(range(4, 6))
    assert train.labelled and not val.labelled
    assert identity_dice(val) is None  # no line to beat: a Dice of 1 whatever the field
    metric = registration_metric("ncc", ndim=2, channels=1)
    trainer = registration_trainer(
        train, val, metric, TrainConfig(steps=1, crop=16), channels=(4, 8)
    )
    assert set(trainer.validate()) == {"loss"}
    trainer = registration_trainer(
        train, train, metric, TrainConfig(steps=1, crop=16), channels=(4, 8)
    )
    assert set(trainer.validate()) == {"loss", "dice"}
