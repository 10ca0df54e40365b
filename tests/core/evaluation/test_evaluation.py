"""Dice and transformation statistics; the sample generator; normalisation."""

import numpy as np
import pytest
import torch

from src_training.data.normalise import normalise_intensity
from src_training.data.samples import noisy_cell_sequence
from src_training.evaluation.scoring import (
    Registered,
    add_noise,
    field_regularity,
    hausdorff95,
    hd95_per_class,
    identity_method,
    score_pairs,
    summarise,
)
from src_training.metrics.dice import dice_per_class, mean_dice
from src_training.spatial.transforms import warp_labels


def test_dice_by_hand():
    a = np.array([[0, 0, 1, 1], [0, 2, 2, 1]])
    b = np.array([[0, 1, 1, 1], [0, 2, 2, 2]])
    scores = dice_per_class(a, b)
    assert scores == pytest.approx({0: 2 * 2 / (3 + 2), 1: 2 * 2 / (3 + 3), 2: 2 * 2 / (2 + 3)})
    assert mean_dice(a, a) == 1.0


def test_absent_classes_are_skipped_not_scored_zero():
    a = np.array([0, 0, 5, 5])
    assert dice_per_class(a, a) == {0: 1.0, 5: 1.0}
    assert 3 not in dice_per_class(a, np.array([0, 0, 5, 0]))


def test_dice_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="differ in shape"):
        dice_per_class(np.zeros((3, 3)), np.zeros((3, 4)))


def test_field_regularity_reports_percent():
    disp = torch.zeros(1, 2, 20, 20)
    disp[0, 1, :, 10:] = -3.0
    stats = field_regularity(disp)
    assert stats["folding_percent"] == pytest.approx(10.0)
    assert stats["sdlogj"] > 1


def test_sample_is_deterministic_and_its_true_motion_aligns_the_labels():
    seq = noisy_cell_sequence(n_frames=3, size=96, seed=4)
    again = noisy_cell_sequence(n_frames=3, size=96, seed=4)
    assert np.array_equal(seq.images, again.images)
    assert not np.array_equal(seq.images, noisy_cell_sequence(n_frames=3, size=96, seed=5).images)
    assert set(np.unique(seq.labels)) == {0, 1, 2}
    # frame t samples the base scene at x + d_t; so frame 0 sampled at x + (d_1 - d_0)
    # is approximately frame 1 when d_0 = 0 (frame 0 is the base scene)
    assert np.abs(seq.displacements[0]).max() == 0
    moved = warp_labels(
        torch.from_numpy(seq.labels[0:1, None].astype(np.int64)),
        torch.from_numpy(seq.displacements[1:2]),
    )
    assert mean_dice(moved[0, 0], seq.labels[1]) > 0.99
    assert mean_dice(seq.labels[0], seq.labels[1]) < 0.95
    rows, cols = seq.noisy_patch
    assert seq.images[0][rows, cols].std() > 2 * seq.images[0][:20, :20].std()


def test_normalise_maps_percentiles_to_unit_range():
    image = np.arange(1001, dtype=np.uint16).reshape(7, 143)
    out = normalise_intensity(image)
    assert out.dtype == np.float32
    assert np.percentile(out, 1) == pytest.approx(0.0, abs=1e-6)
    assert np.percentile(out, 99) == pytest.approx(1.0, abs=1e-6)
    assert out.min() < 0 and out.max() > 1  # not clipped
    assert not normalise_intensity(np.full((4, 4), 7.0)).any()
    with pytest.raises(ValueError, match="no finite"):
        normalise_intensity(np.full((2, 2), np.nan))


@pytest.mark.parametrize("k", [1, 3, 7])
def test_hd95_of_squares_shifted_by_k_pixels_is_k(k):
    a = np.zeros((64, 64), bool)
    a[10:40, 12:42] = True
    b = np.roll(a, k, axis=1)
    assert hausdorff95(a, b) == pytest.approx(k)
    assert hausdorff95(b, a) == pytest.approx(k)
    assert hausdorff95(a, a) == 0.0
    assert hausdorff95(a, np.roll(a, k, axis=0)) == pytest.approx(k)


def test_hd95_in_3d_and_per_class():
    a = np.zeros((20, 24, 24), np.int64)
    a[4:14, 5:15, 5:15] = 1
    b = np.roll(a, 2, axis=0)
    assert hausdorff95(a == 1, b == 1) == pytest.approx(2)
    scores = hd95_per_class(a, b)
    assert list(scores) == [0, 1] and scores[1] == pytest.approx(2)


def test_hd95_skips_a_class_missing_from_one_map():
    a = np.zeros((16, 16), np.int64)
    a[2:8, 2:8] = 1
    b = a.copy()
    a[10:14, 10:14] = 2  # only in a
    assert list(hd95_per_class(a, b)) == [0, 1]
    assert hd95_per_class(np.zeros((4, 4)), np.ones((4, 4))) == {}
    with pytest.raises(ValueError, match="differ in shape"):
        hd95_per_class(np.zeros((3, 3)), np.zeros((3, 4)))


def _shifted_pair():
    images = np.zeros((2, 1, 32, 32), np.float32)
    images[0, 0, 8:20, 8:20] = 1
    images[1, 0, 8:20, 11:23] = 1  # moving = fixed shifted by +3 columns
    return images, images[:, 0].astype(np.int64)


def test_score_pairs_scores_a_method_and_keeps_the_asked_pair():
    images, labels = _shifted_pair()

    def shift(moving, fixed, moving_labels):
        disp = torch.zeros(1, 2, 32, 32)
        disp[0, 1] = 3.0
        return Registered(disp, 0.25)

    scored = score_pairs(images, labels, [(1, 0), (0, 1)], shift, [0, 1], hd95=True, keep=(1, 0))
    first, second = scored.rows
    assert first["dice"] == pytest.approx(1.0) and first["hd95"] == 0.0
    assert second["dice"] < 0.9 and second["hd95"] > 3  # shifted 6 pixels the wrong way
    assert first["seconds"] == 0.25 and first["folding_percent"] == 0.0
    assert scored.kept is not None and scored.kept.disp[0, 1].eq(3).all()
    identity = score_pairs(images, labels, [(1, 0)], identity_method, [0, 1], hd95=True).rows
    assert identity[0]["hd95"] == pytest.approx(3.0)
    assert summarise(identity)["hd95"] == pytest.approx(3.0)
    assert "hd95" not in summarise(score_pairs(images, labels, [(1, 0)], shift, [0, 1]).rows)


def test_score_pairs_uses_labels_the_method_warped_itself():
    images, labels = _shifted_pair()

    def own_labels(moving, fixed, moving_labels):
        return Registered(torch.zeros(1, 2, 32, 32), 0.0, warped_labels=labels[0])

    assert score_pairs(images, labels, [(1, 0)], own_labels, [0, 1]).rows[0]["dice"] == 1.0


def test_noise_is_seeded_and_added_to_every_image():
    images = np.zeros((3, 1, 50, 50), np.float32)
    noisy = add_noise(images, 0.1, seed=2)
    assert noisy.dtype == np.float32 and noisy.shape == images.shape
    assert noisy.std() == pytest.approx(0.1, rel=0.05)
    assert np.array_equal(noisy, add_noise(images, 0.1, seed=2))
    assert not np.array_equal(noisy, add_noise(images, 0.1, seed=3))
    assert not np.array_equal(noisy[0], noisy[1])
    assert add_noise(images, 0.0) is images
