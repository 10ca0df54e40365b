"""Dice and transformation statistics; the sample generator; normalisation."""

import numpy as np
import pytest
import torch

from src_training.data import normalise_intensity
from src_training.evaluation import dice_per_class, field_regularity, mean_dice
from src_training.samples import noisy_cell_sequence
from src_training.spatial import warp_labels


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
