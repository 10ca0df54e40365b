"""Field files with their grid and provenance, and the ITK export applied by ITK itself.

The ITK tests warp real images (an ISBI EM section, a slab of the MNI152 template) with
a smooth field through ``itk.DisplacementFieldTransform`` and ``itk.resample_image_filter``
and compare with the project's own warp. Both interpolate linearly at the same points
(ITK's transform maps fixed physical points to moving ones, as ``x + u(x)`` does in
voxels), so away from the border, where ITK fills 0 and the project repeats the edge,
they differ only by float32 rounding of the physical coordinates: the bound, a mean
absolute difference below 1e-4 of the intensity range [0, 1] (and a maximum below
1e-3), is far below what a wrong sign (about 0.1), a swapped axis or a unit error makes.
"""

import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from src_training.engine.fields import export_itk, file_grid
from src_training.spatial.fieldio import FieldFile, load_field, provenance, save_field
from src_training.spatial.transforms import identity_grid, warp

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
ISBI = DATA / "isbi2012_em" / "images" / "25.png"
MNI = DATA / "mni152_2009" / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def _smooth_field(shape, amplitude=3.0):
    grid = identity_grid(shape, dtype=torch.float64).numpy()
    n = len(shape)
    waves = [
        amplitude * np.sin(2 * np.pi * grid[(a + 1) % n] / shape[(a + 1) % n] + a) for a in range(n)
    ]
    return np.stack(waves).astype(np.float32)


def test_a_field_file_keeps_its_grid_and_provenance(tmp_path):
    field = _smooth_field((12, 10))
    made = provenance("ncc-isbi", "25.png", "26.png", metric="ncc")
    saved = save_field(
        tmp_path / "field", FieldFile(field, (0.5, 2.0), (3.0, -1.0), provenance=made)
    )
    assert saved == tmp_path / "field.npz"
    loaded = load_field(saved)
    np.testing.assert_array_equal(loaded.displacement, field)
    assert (loaded.spacing, loaded.origin, loaded.axes) == ((0.5, 2.0), (3.0, -1.0), "yx")
    assert loaded.provenance == made and made["version"] and made["date"].endswith("+00:00")
    assert not loaded.stack and loaded.grid == (12, 10)
    stack = FieldFile(np.zeros((3, 2, 4, 5), np.float32), stack=True)
    assert load_field(save_field(tmp_path / "s.npz", stack), allow_stack=True).stack


def test_old_bare_npy_fields_still_load_with_a_unit_grid(tmp_path):
    np.save(tmp_path / "old.npy", _smooth_field((6, 7, 8)))
    old = load_field(tmp_path / "old.npy")
    assert old.spacing == (1.0, 1.0, 1.0) and old.origin == (0.0,) * 3 and old.axes == "zyx"
    assert old.provenance == {} and old.ndim == 3


def test_other_archives_and_stacks_are_refused(tmp_path):
    np.savez(tmp_path / "images.npz", images=np.zeros((2, 8, 8)))
    with pytest.raises(ValueError, match="is not a displacement field file"):
        load_field(tmp_path / "images.npz")
    stack = save_field(tmp_path / "s.npz", FieldFile(np.zeros((3, 2, 4, 5)), stack=True))
    with pytest.raises(ValueError, match="not a displacement field"):
        load_field(stack)
    np.savez(
        tmp_path / "bent.npz",
        displacement=np.zeros((2, 4, 4), np.float32),
        spacing=np.ones(2),
        origin=np.zeros(2),
        direction=np.eye(2),
        meta=np.asarray('{"format": "deepsim-displacement-field", "version": 1, "axes": "ab"}'),
    )
    with pytest.raises(ValueError, match=r"bent\.npz is a damaged displacement field file"):
        load_field(tmp_path / "bent.npz")
    with pytest.raises(ValueError, match="register one pair of frames and export its field"):
        export_itk(stack, tmp_path / "s.mha")
    with pytest.raises(ValueError, match=r"save it as \.nii\.gz or \.mha"):
        export_itk(FieldFile(np.zeros((2, 4, 4))), tmp_path / "f.tif")


def _itk_warp(itk, moving, field_path, reference):
    """Resample ``moving`` (an ITK image) with the exported field, the way ITK users do."""
    field = itk.imread(str(field_path))
    n = field.GetImageDimension()
    # ITK Python wraps the transform for double vectors, read files hold float ones
    as_double = itk.image_from_array(itk.array_from_image(field).astype(np.float64), is_vector=True)
    as_double.CopyInformation(field)
    transform = itk.DisplacementFieldTransform[itk.D, n].New()
    transform.SetDisplacementField(as_double)
    warped = itk.resample_image_filter(
        moving, transform=transform, use_reference_image=True, reference_image=reference
    )
    return itk.array_from_image(warped)


def _interior(field, margin):
    """Voxels whose sampling position lies at least ``margin`` voxels inside the grid."""
    shape = np.array(field.shape[1:]).reshape(-1, *[1] * (field.ndim - 1))
    position = identity_grid(field.shape[1:]).numpy() + field
    return np.all((position >= margin) & (position <= shape - 1 - margin), axis=0)


def _compare(ours, theirs, inside):
    difference = np.abs(ours - theirs)[inside]
    assert inside.mean() > 0.5
    assert difference.mean() < 1e-4, difference.mean()
    assert difference.max() < 1e-3, difference.max()


@pytest.mark.parametrize("suffix", [".mha", ".nii.gz"])
def test_itk_applies_the_exported_field_of_a_2d_image_like_the_project(tmp_path, suffix):
    itk = pytest.importorskip("itk")
    image = np.asarray(Image.open(ISBI), np.float32)[100:260, 150:330] / 255.0
    field = _smooth_field(image.shape)
    spacing, origin = (0.004, 0.0035), (1.0, -2.5)  # micrometres, not isotropic
    path = export_itk(FieldFile(field, spacing, origin), tmp_path / f"field{suffix}")
    moving = itk.image_from_array(image)
    moving.SetSpacing(spacing[::-1])  # ITK orders axes x (columns) first
    moving.SetOrigin(origin[::-1])
    theirs = _itk_warp(itk, moving, path, moving)
    ours = warp(torch.as_tensor(image)[None, None], torch.as_tensor(field)[None])[0, 0].numpy()
    _compare(ours, theirs, _interior(field, 1))


def test_itk_applies_the_field_of_an_oblique_nifti_volume_like_the_project(tmp_path):
    itk = pytest.importorskip("itk")
    volume = np.asarray(nib.load(MNI).dataobj, np.float32)[60:108, 70:126, 60:100] / 255.0
    angle = math.radians(20)
    affine = np.eye(4)
    affine[:3, :3] = [
        [math.cos(angle), -math.sin(angle), 0],
        [math.sin(angle), math.cos(angle), 0],
        [0, 0, 1],
    ]
    affine[:3, :3] *= [1.2, 0.9, 1.5]
    affine[:3, 3] = (-30.0, 12.0, 5.0)
    fixed_path = tmp_path / "fixed.nii.gz"
    nib.save(nib.Nifti1Image(volume, affine), fixed_path)
    field = _smooth_field(volume.shape, 2.0)
    grid = file_grid(fixed_path, 3, None)
    assert grid["axes"] == "xyz" and np.allclose(grid["spacing"], (1.2, 0.9, 1.5))
    path = export_itk(FieldFile(field, **grid), tmp_path / "field.nii.gz")
    reference = itk.imread(str(fixed_path), itk.F)  # the user's own fixed and moving file
    theirs = _itk_warp(itk, reference, path, reference)
    ours = warp(torch.as_tensor(volume)[None, None], torch.as_tensor(field)[None])[0, 0].numpy()
    _compare(ours, np.transpose(theirs, (2, 1, 0)), _interior(field, 1))
