"""Reading NIfTI volumes for a viewer: RAS+ order, voxel size, origin, labels, refusals."""

import nibabel
import numpy as np
import pytest

from src_training.engine.volumes import is_volume_file, read_volume


def _save(path, array, affine):
    nibabel.save(nibabel.Nifti1Image(array, affine), path)
    return path


def _world(volume, index):
    return np.asarray(volume.origin) + np.asarray(index) * np.asarray(volume.spacing)


def test_a_flipped_and_permuted_copy_reads_as_the_same_volume_at_the_same_place(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.random((6, 7, 8)).astype(np.float32)
    affine = np.diag([0.5, 1.0, 2.0, 1.0])
    affine[:3, 3] = (10.0, -20.0, 5.0)
    ras = read_volume(_save(tmp_path / "ras.nii.gz", data, affine))
    # the same voxels stored with the first axis flipped (L to R) and the last two swapped
    stored = np.transpose(data[::-1], (0, 2, 1))
    other = np.zeros((4, 4))
    other[0, 0], other[1, 2], other[2, 1], other[3, 3] = -0.5, 1.0, 2.0, 1.0
    other[:3, 3] = (10.0 + 0.5 * 5, -20.0, 5.0)  # the first stored voxel is the last in R
    flipped = read_volume(_save(tmp_path / "lsa.nii", stored, other))
    np.testing.assert_array_equal(flipped.data, ras.data)
    assert flipped.spacing == ras.spacing == (0.5, 1.0, 2.0)
    np.testing.assert_allclose(flipped.origin, (10.0, -20.0, 5.0))
    np.testing.assert_allclose(_world(flipped, (5, 6, 7)), _world(ras, (5, 6, 7)))
    assert not flipped.labels and flipped.grid["axes"] == "xyz"
    # the grid a field records: LPS, so x and y change sign (ITK's convention)
    np.testing.assert_allclose(ras.grid["origin"], (-10.0, 20.0, 5.0))


def test_label_files_become_class_ids(tmp_path):
    masks = np.zeros((5, 5, 5, 2), np.float32)
    masks[1:4, 1:4, 1:4, 0] = 1.0  # a gland
    masks[2, 2, 2, 1] = 1.0  # a landmark inside it: the later channel wins
    read = read_volume(_save(tmp_path / "case_labels.nii.gz", masks, np.eye(4)))
    assert read.labels and read.data.dtype == np.int64
    assert read.data[2, 2, 2] == 2 and read.data[1, 1, 1] == 1 and read.data[0, 0, 0] == 0
    ids = np.arange(125, dtype=np.int16).reshape(5, 5, 5) % 3
    assert read_volume(_save(tmp_path / "aseg.nii.gz", ids, np.eye(4))).labels
    assert not read_volume(_save(tmp_path / "t1.nii.gz", ids, np.eye(4))).labels


def test_what_is_not_a_volume_is_one_clear_error(tmp_path):
    field = np.zeros((4, 4, 4, 1, 3), np.float32)  # an ITK displacement field
    with pytest.raises(ValueError, match="not a 3D volume or a 4D file of label masks"):
        read_volume(_save(tmp_path / "field.nii.gz", field, np.eye(4)))
    bad = np.full((3, 3, 3), np.nan, np.float32)
    with pytest.raises(ValueError, match="NaN or inf"):
        read_volume(_save(tmp_path / "nan.nii.gz", bad, np.eye(4)))
    assert is_volume_file("a.nii.gz") and is_volume_file("B.NII") and not is_volume_file("a.npz")
