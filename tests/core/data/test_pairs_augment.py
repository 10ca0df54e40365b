"""Pair lists, the training sampler and pair augmentation."""

import numpy as np
import pytest
import torch

from src_training.data.augment import (
    NO_AUGMENTATION,
    AugmentConfig,
    augment_pair,
    crop_window,
    pair_generator,
    random_affine,
)
from src_training.data.pairs import (
    PairSampler,
    atlas_pairs,
    consecutive_pairs,
    neighbour_epoch,
    read_pairs_csv,
)


def test_consecutive_and_atlas_pairs():
    assert consecutive_pairs(4) == [(1, 0), (2, 1), (3, 2)]
    assert atlas_pairs(3, 1) == [(0, 1), (2, 1)]
    with pytest.raises(ValueError, match="atlas index 5"):
        atlas_pairs(3, 5)


def test_pairs_csv_by_name_and_index(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text("moving,fixed\nb,a\n2,0\n")
    assert read_pairs_csv(path, ["a", "b", "c"]) == [(1, 0), (2, 0)]
    path.write_text("moving,fixed\nz,a\n")
    with pytest.raises(ValueError, match="line 2: 'z' is neither"):
        read_pairs_csv(path, ["a", "b"])
    path.write_text("source,target\na,b\n")
    with pytest.raises(ValueError, match="'moving' and 'fixed'"):
        read_pairs_csv(path, ["a", "b"])


def test_neighbour_epoch_covers_every_frame_within_the_offset():
    gen = torch.Generator().manual_seed(0)
    pairs = neighbour_epoch(10, 2, gen)
    assert sorted(f for _, f in pairs) == list(range(10))
    assert all(m != f and abs(m - f) <= 2 for m, f in pairs)
    again = neighbour_epoch(10, 2, torch.Generator().manual_seed(0))
    assert pairs == again
    offsets = {m - f for _ in range(20) for m, f in neighbour_epoch(10, 2, gen)}
    assert offsets == {-2, -1, 1, 2}


def test_sampler_redraws_partners_each_epoch_and_resumes_exactly():
    sampler = PairSampler(6, batch_size=4, seed=1)
    assert sampler.epoch(0) != sampler.epoch(1)
    run = sampler.batches()
    first = [next(run) for _ in range(7)]
    assert next(sampler.batches(start_step=4)) == first[4]
    assert all(len(b) == 4 for b in first)


def test_ranks_together_see_the_single_process_batches():
    single = PairSampler(8, batch_size=4, seed=3).batches()
    ranks = [PairSampler(8, 2, 3, rank=r, world_size=2).batches() for r in range(2)]
    for _ in range(6):
        merged = next(ranks[0]) + next(ranks[1])
        assert sorted(merged) == sorted(next(single))


def test_fixed_pairs_are_shuffled_not_changed():
    fixed = [(1, 0), (3, 2), (5, 4)]
    sampler = PairSampler(6, batch_size=3, fixed_pairs=fixed)
    assert sorted(sampler.epoch(0)) == fixed
    assert sorted(sampler.epoch(1)) == fixed


def _blob_pair():
    grid = torch.meshgrid(torch.arange(40.0), torch.arange(48.0), indexing="ij")
    image = torch.exp(-((grid[0] - 15) ** 2 + (grid[1] - 28) ** 2) / 60.0)
    images = image[None, None].repeat(2, 1, 1, 1)
    labels = (images > 0.5).long()
    return images, labels


def test_augmentation_applies_one_affine_to_both_images_and_labels():
    images, labels = _blob_pair()
    config = AugmentConfig(rotation=20, scale=0.2, shear=0.1, flip=True)
    out, out_labels = augment_pair(images, labels, config, pair_generator(0, 5, 1))
    assert not torch.allclose(out, images)  # it did something
    torch.testing.assert_close(out[0], out[1])  # the same transform for both
    assert torch.equal(out_labels[0], out_labels[1])
    # labels moved with the image: thresholding the warped image gives the warped labels
    agreement = ((out > 0.5).long() == out_labels).float().mean()
    assert agreement > 0.99
    again, _ = augment_pair(images, labels, config, pair_generator(0, 5, 1))
    assert torch.equal(out, again)
    other, _ = augment_pair(images, labels, config, pair_generator(0, 5, 2))
    assert not torch.equal(out, other)


def test_noise_is_independent_per_image_and_off_by_default():
    images, labels = _blob_pair()
    noisy, _ = augment_pair(
        images,
        None,
        AugmentConfig(flip=False, rotation=0, scale=0, shear=0, noise=0.1),
        pair_generator(0, 0, 0),
    )
    assert not torch.allclose(noisy[0], noisy[1])
    assert (noisy - images).std() == pytest.approx(0.1, rel=0.1)
    same, _ = augment_pair(images, labels, NO_AUGMENTATION, pair_generator(0, 0, 0))
    assert torch.equal(same, images)


@pytest.mark.parametrize("ndim", [2, 3])
def test_random_affine_ranges(ndim):
    gen = torch.Generator().manual_seed(0)
    rotation_only = AugmentConfig(rotation=30, scale=0, shear=0, flip=False)
    m = random_affine(ndim, rotation_only, gen)
    torch.testing.assert_close(m @ m.T, torch.eye(ndim, dtype=torch.float64))
    assert torch.linalg.det(m) == pytest.approx(1.0)
    scaled = random_affine(ndim, AugmentConfig(rotation=0, scale=0.1, shear=0, flip=False), gen)
    assert torch.all((scaled.diagonal() >= 0.9) & (scaled.diagonal() <= 1.1))


def test_crop_window_stays_inside_and_keeps_short_axes():
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):
        rows, cols = crop_window((50, 20), 32, gen)
        assert rows.start >= 0 and rows.stop <= 50 and rows.stop - rows.start == 32
        assert (cols.start, cols.stop) == (0, 20)
    assert crop_window((5, 6), None, gen) == (slice(0, 5), slice(0, 6))
    assert np.unique([crop_window((100,), 10, gen)[0].start for _ in range(30)]).size > 5
