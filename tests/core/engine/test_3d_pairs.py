"""3D pairs in physical space: orientation, voxel size, landmarks, known transformations.

Real volumes (a cropped, downsampled brain MRI from ../shared/data) are written as
NIfTI files with chosen headers, read back through the paired layout and registered;
the expectations are analytic (a reoriented copy is the same volume, a known field or
affine is recovered).
"""

import csv
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from src_training.data.datasets import load_dataset
from src_training.evaluation.landmarks import landmark_errors
from src_training.metrics import build_metric
from src_training.optimisation import OptimiseConfig, optimise_pair
from src_training.spatial.transforms import affine_displacement, identity_grid, warp

DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
BRAIN = DATA / "brain_mri_3d" / "test_scan.npz"
MARGIN = 6  # interior: voxels this far from every edge
DEEPSIM = str(Path(sys.executable).with_name("deepsim"))
needs_data = pytest.mark.skipif(not BRAIN.is_file(), reason="needs ../shared/data")
nib = pytest.importorskip("nibabel")


@pytest.fixture(autouse=True)
def _one_thread(single_thread):
    yield


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A 32x28x24 crop of a real T1 brain MRI at half resolution, values in [0, 1]."""
    vol = np.load(BRAIN)["vol"]
    return np.ascontiguousarray(vol[40:104:2, 60:116:2, 80:128:2], dtype=np.float32)


def _blob(shape: tuple[int, ...], centre: tuple[float, ...], radius: float) -> np.ndarray:
    grid = np.indices(shape, dtype=np.float64)
    distance = sum((g - c) ** 2 for g, c in zip(grid, centre, strict=True))
    return (distance <= radius**2).astype(np.uint8)


def _write_case(root: Path, role: str, image: np.ndarray, label: np.ndarray, affine) -> None:
    for kind, array in (("images", image), ("labels", label)):
        folder = root / f"{role}_{kind}"
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(array, affine), folder / "case.nii.gz")


def _interior_error(found: torch.Tensor, truth: torch.Tensor) -> float:
    inner = (slice(MARGIN, -MARGIN),) * (found.dim() - 2)
    return float(torch.linalg.vector_norm(found - truth, dim=1)[0][inner].mean())


@needs_data
def test_a_flipped_anisotropic_copy_is_the_same_volume_and_registers_to_the_identity(
    volume, tmp_path
):
    label = _blob(volume.shape, (12.0, 15.0, 10.0), 5.0)
    affine = np.diag([0.8, 0.5, 1.2, 1.0])
    affine[:3, 3] = (-10.0, 4.0, 7.0)
    _write_case(tmp_path, "fixed", volume, label, affine)
    # the same volume stored with its first axis reversed; the affine says so
    flip = np.eye(4)
    flip[0, 0], flip[0, 3] = -1.0, volume.shape[0] - 1
    _write_case(tmp_path, "moving", volume[::-1].copy(), label[::-1].copy(), affine @ flip)
    data = load_dataset(tmp_path)
    assert data.spacing == (0.8, 0.5, 1.2) and "centres aligned" in data.source
    np.testing.assert_allclose(data.images[0], data.images[1], atol=1e-6)
    np.testing.assert_array_equal(data.labels[0], data.labels[1])
    fixed, moving = (torch.from_numpy(data.images[i : i + 1]) for i in (1, 0))
    config = OptimiseConfig(levels=2, iterations=(20, 20), grid_spacing=4)
    result = optimise_pair(fixed, moving, build_metric("nmi"), config)
    assert _interior_error(result.displacement, torch.zeros_like(result.displacement)) < 0.1


@needs_data
def test_a_coarser_moving_volume_keeps_its_physical_size(volume, tmp_path):
    label = _blob(volume.shape, (14.0, 13.0, 11.0), 6.0)
    _write_case(tmp_path, "fixed", volume, label, np.diag([0.5, 0.5, 0.5, 1.0]))
    # the moving volume: every second slice along axis 0 (1 mm) and 4 more voxels of
    # field of view along axis 2, centred: the same anatomy on another grid
    padded = np.pad(volume[::2], ((0, 0), (0, 0), (2, 2)))
    moving_label = np.pad(label[::2], ((0, 0), (0, 0), (2, 2)))
    _write_case(tmp_path, "moving", padded, moving_label, np.diag([1.0, 0.5, 0.5, 1.0]))
    data = load_dataset(tmp_path)
    placed, fixed = data.labels[0], data.labels[1]
    centroid = [np.argwhere(m == 1).mean(axis=0) for m in (placed, fixed)]
    assert np.abs(centroid[0] - centroid[1]).max() < 0.6
    dice = 2 * ((placed == 1) & (fixed == 1)).sum() / ((placed == 1).sum() + (fixed == 1).sum())
    assert dice > 0.9
    # a corner-to-corner stretch would have scaled the blob along axis 2 by 24/28
    assert abs((placed == 1).sum() / (fixed == 1).sum() - 1) < 0.15


def test_landmark_error_is_the_centroid_distance_mapped_by_the_field():
    shape = (20, 18, 16)
    fixed = _blob(shape, (8.0, 9.0, 7.0), 2.0).astype(np.int64)
    moving = _blob(shape, (11.0, 7.0, 7.0), 2.0).astype(np.int64)
    spacing = (0.5, 2.0, 1.0)
    zero = torch.zeros(1, 3, *shape)
    expected = math.hypot(3.0 * 0.5, 2.0 * 2.0)
    assert landmark_errors(zero, moving, fixed, [1], spacing)[1] == pytest.approx(expected)
    shift = torch.tensor([3.0, -2.0, 0.0]).view(1, 3, 1, 1, 1).expand(1, 3, *shape)
    assert landmark_errors(shift, moving, fixed, [1], spacing)[1] == pytest.approx(0, abs=1e-6)
    assert landmark_errors(zero, moving, np.zeros_like(fixed), [1], spacing) == {}


@needs_data
def test_a_known_smooth_deformation_of_a_real_volume_is_recovered(volume):
    moving = torch.from_numpy(volume)[None, None]
    shape = tuple(volume.shape)
    grid = identity_grid(shape)
    truth = torch.stack(
        [
            1.5 * torch.sin(2 * math.pi * grid[(axis + 1) % 3] / shape[(axis + 1) % 3])
            for axis in range(3)
        ]
    )[None]
    fixed = warp(moving, truth)
    config = OptimiseConfig(levels=2, iterations=(60, 60), lam=0.05, grid_spacing=4)
    result = optimise_pair(fixed, moving, build_metric("ncc"), config)
    assert _interior_error(result.displacement, truth) < 0.5


@needs_data
def test_a_known_affine_of_a_real_volume_is_recovered(volume):
    moving = torch.from_numpy(volume)[None, None]
    shape = tuple(volume.shape)
    angle = math.radians(5.0)
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[cos, -sin, 0.0], [sin, cos, 0.0], [0.0, 0.0, 1.0]])
    matrix = rotation @ torch.diag(torch.tensor([1.04, 0.97, 1.0]))
    truth = affine_displacement(matrix, torch.tensor([1.5, -1.0, 0.5]), shape)
    fixed = warp(moving, truth)
    config = OptimiseConfig(transform="none", affine="affine", levels=2)
    result = optimise_pair(fixed, moving, build_metric("ncc"), config)
    assert _interior_error(result.displacement, truth) < 0.5


def test_evaluate_landmarks_gives_the_centroid_distance_in_mm(tmp_path):
    shape = (16, 14, 12)
    rng = np.random.default_rng(0)
    affine = np.diag([0.5, 1.0, 2.0, 1.0])
    for role, centre in (("fixed", (6.0, 7.0, 5.0)), ("moving", (9.0, 5.0, 5.0))):
        masks = np.stack([_blob(shape, (8.0, 7.0, 6.0), 5.0), _blob(shape, centre, 1.5)], -1)
        _write_case(tmp_path / "data", role, rng.random(shape).astype(np.float32), masks, affine)
    out = tmp_path / "eval"
    command = [DEEPSIM, "evaluate", str(tmp_path / "data"), "--baseline", "identity"]
    done = subprocess.run(
        [*command, "--landmarks", "2", "--device", "cpu", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    summary = next(csv.DictReader((out / "summary.csv").open()))
    assert float(summary["tre"]) == pytest.approx(math.hypot(3 * 0.5, 2 * 1.0), abs=1e-6)
    assert float(summary["tre_2"]) == float(summary["tre"])
    assert " tre" in done.stdout.splitlines()[-3]


def _register(
    files: dict[str, Path], point: Path, tmp_path: Path, iterations: int
) -> subprocess.CompletedProcess:
    """``deepsim register`` the pair by MSE, with its labels and a point; check it ran."""
    done = subprocess.run(
        [DEEPSIM, "register", files["fixed"], files["moving"], "--optimise", "--metric", "mse",
         "--iterations", str(iterations), "--labels", files["moving_labels"], "--fixed-labels",
         files["fixed_labels"], "--points", point, "--out", tmp_path / "out", "--device", "cpu"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_register_places_a_finer_moving_volume_by_voxel_size_not_corner_to_corner(tmp_path):
    # one ball of radius 4 mm: 10 voxels of 0.4 mm in the moving file, 5 of 0.8 mm in the fixed
    moving = _blob((40, 40, 40), (19.5, 19.5, 19.5), 10.0)
    fixed = _blob((24, 24, 24), (11.5, 11.5, 11.5), 5.0)
    files = {}
    for name, array, size in (("moving", moving, 0.4), ("fixed", fixed, 0.8)):
        affine = np.diag([size, size, size, 1.0])
        for kind, data in (("", array.astype(np.float32)), ("_labels", array)):
            files[name + kind] = tmp_path / f"{name}{kind}.nii.gz"
            nib.save(nib.Nifti1Image(data, affine), files[name + kind])
    point = tmp_path / "point.csv"
    point.write_text("axis-0,axis-1,axis-2\n29.5,19.5,19.5\n")  # 4 mm off centre
    done = _register(files, point, tmp_path, iterations=1)
    assert "by voxel size, centres aligned" in done.stdout
    said = done.stdout.split("Dice (moving_labels.nii.gz vs fixed_labels.nii.gz): ")[1]
    before = float(said.split()[0])
    assert before > 0.9  # corner to corner would blow the ball up to 4.8 mm: Dice about 0.7
    with open(tmp_path / "out" / "moved_point.csv") as handle:
        moved = [float(v) for v in next(iter(csv.DictReader(handle))).values()]
    np.testing.assert_allclose(moved, [16.5, 11.5, 11.5], atol=0.3)  # corners: 17.4


@needs_data
@pytest.mark.slow
def test_register_reads_a_moving_volume_stored_in_another_voxel_order_in_the_fixed_order(
    volume, tmp_path
):
    # the moving file stores the fixed volume with its first axis reversed and the other
    # two swapped; its affine says so, so both are one volume at one place
    n0 = volume.shape[0]
    affine = np.diag([0.8, 0.5, 1.2, 1.0])
    affine[:3, 3] = (-10.0, 4.0, 7.0)
    swap = np.array([[-1, 0, 0, n0 - 1], [0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], float)
    label = _blob(volume.shape, (12.0, 15.0, 10.0), 5.0)
    files = {}
    for role, image, seg, matrix in (
        ("fixed", volume, label, affine),
        ("moving", volume[::-1].transpose(0, 2, 1), label[::-1].transpose(0, 2, 1), affine @ swap),
    ):
        for kind, data in (("", image.astype(np.float32)), ("_labels", seg)):
            files[role + kind] = tmp_path / f"{role}{kind}.nii.gz"
            nib.save(nib.Nifti1Image(np.ascontiguousarray(data), matrix), files[role + kind])
    point = tmp_path / "point.csv"  # the ball's centre, in the moving file's voxels
    point.write_text(f"axis-0,axis-1,axis-2\n{n0 - 1 - 12},10,15\n")
    done = _register(files, point, tmp_path, iterations=5)
    assert "voxel axes LSA) in the fixed volume's voxel order (RAS)" in done.stdout
    said = done.stdout.split("Dice (moving_labels.nii.gz vs fixed_labels.nii.gz): ")[1]
    assert float(said.split()[0]) == pytest.approx(1.0)  # read as stored: about 0.1
    warped = nib.load(tmp_path / "out" / "warped.nii.gz").get_fdata()
    np.testing.assert_allclose(warped, volume, atol=0.02)  # the identity in physical space
    with open(tmp_path / "out" / "moved_point.csv") as handle:
        moved = [float(v) for v in next(iter(csv.DictReader(handle))).values()]
    np.testing.assert_allclose(moved, [12.0, 15.0, 10.0], atol=0.2)
